"""Names of resources and which of them overlap.

A resource is named ``kind:name``:

* ``file:PATH`` — a file or folder of the project's workspace. PATH is relative to the
  workspace and canonical (symlinks inside the workspace resolved, ``/`` separators),
  so two spellings of one file are one resource. ``file:.`` is the whole workspace.
  File resources nest: ``file:docs`` covers ``file:docs/a.md``, so a lock on a folder
  excludes writes to every file in it.
* ``kv:KEY`` — one entry of the shared scratchpad.
* ``custom:NAME`` — anything else a team shares (a printer, an API quota, a branch);
  user-defined tools declare these.

Further kinds can be registered (:meth:`ResourceKinds.register`). Only ``file`` is
hierarchical; other kinds overlap only with themselves.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from wakeful.errors import ResourceError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/@+-]{0,199}$")
_KIND = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
ROOT = "."


class Mode(StrEnum):
    """``read`` is shared with other readers; ``write`` excludes everyone else."""

    READ = "read"
    WRITE = "write"


@dataclass(frozen=True, slots=True, order=True)
class Resource:
    kind: str
    name: str
    hierarchical: bool = False

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"

    def ancestors(self) -> list[Resource]:
        """Resources that cover this one (for ``file``: the folders above it)."""
        if not self.hierarchical or self.name == ROOT:
            return []
        parts = self.name.split("/")
        above = [Resource(self.kind, ROOT, True)]
        above += [Resource(self.kind, "/".join(parts[:i]), True) for i in range(1, len(parts))]
        return above

    def covers(self, other: Resource) -> bool:
        """Is ``other`` this resource or inside it?"""
        return other == self or self in other.ancestors()

    def overlaps(self, other: Resource) -> bool:
        return self.covers(other) or other.covers(self)

    def descendant_range(self) -> tuple[str, str] | None:
        """Bounds (exclusive) of the names of resources inside this one, for range
        queries: every ``file:a/...`` sorts strictly between ``file:a/`` and ``file:a0``
        (``0`` follows ``/`` in code-point order)."""
        if not self.hierarchical:
            return None
        if self.name == ROOT:
            return f"{self.kind}:", f"{self.kind};"  # ';' follows ':'
        return f"{self}/", f"{self}0"


def conflicts(a: Mode, b: Mode) -> bool:
    return a is Mode.WRITE or b is Mode.WRITE


Normalizer = Callable[[str], str]


@dataclass(frozen=True, slots=True)
class ResourceKind:
    name: str
    description: str
    normalize: Normalizer
    hierarchical: bool = False


def _plain_name(kind: str) -> Normalizer:
    def normalize(name: str) -> str:
        if not _NAME.match(name):
            raise ResourceError(
                f"resource '{kind}:{name}': the name must be 1-200 characters of letters, "
                "digits and _ . : / @ + -, starting with a letter or digit")
        return name
    return normalize


class ResourceKinds:
    """The kinds of resource this runtime knows, and how to make their names canonical."""

    def __init__(self) -> None:
        self._kinds: dict[str, ResourceKind] = {}
        self.register("kv", "an entry of the shared scratchpad (kv_get / kv_set)")
        self.register("custom", "anything else a team shares, declared by its tools")

    def register(self, kind: str, description: str, normalize: Normalizer | None = None,
                 hierarchical: bool = False) -> None:
        if not _KIND.match(kind):
            raise ResourceError(f"resource kind {kind!r}: use lower case letters, digits, "
                                "_ and -, starting with a letter")
        self._kinds[kind] = ResourceKind(kind, description, normalize or _plain_name(kind),
                                         hierarchical)

    def known(self) -> list[str]:
        return sorted(self._kinds)

    def canonical(self, text: str) -> Resource:
        """A name that is already canonical (as stored): no checks, no file system."""
        kind, _, name = text.partition(":")
        found = self._kinds.get(kind)
        return Resource(kind, name, found.hierarchical if found else False)

    def parse(self, text: str) -> Resource:
        """``"kv:plan"`` -> Resource; a clear error for anything malformed."""
        if not isinstance(text, str) or ":" not in text:
            raise ResourceError(
                f"resource {text!r} is not of the form kind:name; kinds: "
                f"{', '.join(self.known())} (e.g. 'file:notes.md', 'kv:plan', "
                "'custom:printer')")
        kind, _, name = text.partition(":")
        found = self._kinds.get(kind)
        if found is None:
            raise ResourceError(f"resource {text!r}: unknown kind {kind!r} (known kinds: "
                                f"{', '.join(self.known())})")
        return Resource(kind, found.normalize(name), found.hierarchical)


@dataclass(frozen=True, slots=True)
class Access:
    """One resource a tool call touches, and how: what a tool declares (``@tool(
    resources=...)``) so that the runtime can auto-pause it. ``resource`` is a name as
    an agent would write it (``"file:" + path``); the runtime makes it canonical.
    ``token`` is a fencing token the call presents, if any."""

    resource: str
    mode: Mode = Mode.WRITE
    token: int | None = None

    @classmethod
    def read(cls, resource: str, token: int | None = None) -> Access:
        return cls(resource, Mode.READ, token)

    @classmethod
    def write(cls, resource: str, token: int | None = None) -> Access:
        return cls(resource, Mode.WRITE, token)


@dataclass(frozen=True, slots=True, order=True)
class Owner:
    """Who holds or waits: a task (and, for people reading logs, its agent)."""

    task_id: str
    agent: str

    def __str__(self) -> str:
        return f"task {self.task_id} (agent {self.agent})"
