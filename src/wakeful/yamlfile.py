"""Reading the YAML files people write (project, agents, scripts), safely and quickly.

``yaml.safe_load`` builds no arbitrary objects, but it still lets a small file expand
without bound: nine levels of anchors and aliases ("billion laughs") make a value of
10**9 strings that share memory until something walks it, and then validation (or an
error message that shows the input) runs for minutes. Deep nesting exhausts the
recursion limit; a file that is not UTF-8 fails in the decoder. Each of these is turned
into a one-line :class:`ConfigError` naming the file, before any of it is used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from wakeful.errors import ConfigError
from wakeful.text import unstorable

MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_EXPANDED_NODES = 100_000
"""How many values a document may hold once aliases are expanded: far above any real
configuration, far below what makes walking it slow."""


def _expanded_size(root: yaml.Node, path: Path) -> int:
    """The number of nodes the document has with every alias expanded (each shared node
    counted once per use), computed in linear time, stopping at the bound."""
    sizes: dict[int, int] = {}
    # Iterative post-order walk: deep documents must not exhaust the recursion limit.
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in sizes and not children_done:
            continue
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        if not children_done:
            sizes[key] = -1  # in progress: met again below it, it is a cycle
            stack.append((node, True))
            for child in children:
                if sizes.get(id(child)) == -1:
                    raise ConfigError(f"{path}: a YAML alias refers to its own anchor "
                                      "(a recursive value); write the value out")
                stack.append((child, False))
            continue
        total = 1 + sum(sizes[id(child)] for child in children)
        if total > MAX_EXPANDED_NODES:
            raise ConfigError(
                f"{path}: the YAML expands to more than {MAX_EXPANDED_NODES:,} values "
                "through anchors and aliases (&name / *name); refused (is it a "
                "'billion laughs' file?)")
        sizes[key] = total
    return sizes[id(root)]


def _mark(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""


def parse_yaml(text: str, path: Path | str) -> Any:
    """Parse YAML ``text`` (from ``path``, for messages); ConfigError if it is malformed,
    expands too far or nests too deep."""
    where = Path(path)
    try:
        loader = yaml.SafeLoader(text)  # checks the characters: may raise already
        try:
            node = loader.get_single_node()
            data = None
            if node is not None:
                _expanded_size(node, where)
                data = loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}: invalid YAML{_mark(exc)}: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{where}: the YAML is nested too deeply to read") from None
    bad = unstorable(data)
    if bad is not None:
        raise ConfigError(f"{where}: {bad}")
    return data


def read_text(path: Path, what: str) -> str:
    """A configuration file as UTF-8 text, or a ConfigError saying why it cannot be."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what}: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(f"{path}: {what} is larger than {MAX_FILE_BYTES:,} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}: {what} is not UTF-8 text (byte {exc.start}, line "
                          f"{line}); save it as UTF-8") from None


def read_yaml(path: Path, what: str) -> Any:
    """Read and parse a YAML file in one step (see :func:`parse_yaml`)."""
    return parse_yaml(read_text(path, what), path)
