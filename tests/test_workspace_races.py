"""File confinement that holds against a racing process, hard links and FIFOs.

The workspace check and the write used to be separate system calls by path: swapping a
folder for a symlink to the outside between the two let writes land outside (33 of
400). Now each operation walks the checked path from a descriptor of the workspace
with O_NOFOLLOW on every component, so a swap makes it fail, never escape.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

from resources_support import call, context, ok, open_runtime
from wakeful.runtime.runtime import Runtime


def _swapper(workspace: Path, outside: Path, stop: threading.Event,
             swaps: list[int]) -> None:
    """Swap workspace/sub for a symlink to ``outside`` and back, as fast as it can."""
    sub, held = workspace / "sub", workspace / "held"
    def aside() -> None:  # a write made a new 'sub' meanwhile: put it aside
        os.rename(sub, workspace / f"made-{swaps[0]}-{time.monotonic_ns()}")

    while not stop.is_set():
        os.rename(sub, held)
        while True:
            try:
                os.symlink(outside, sub)
                break
            except FileExistsError:
                aside()
        stop.wait(0.0002)
        os.unlink(sub)
        while True:
            try:
                os.rename(held, sub)
                break
            except OSError:
                aside()
        swaps[0] += 1
        stop.wait(0.0002)


async def _race(runtime: Runtime, tool: str, count: int, **args: str) -> list[str]:
    async def one(i: int) -> str:
        ctx = context(runtime, f"t_{tool}_{i}")
        fields = {k: v.format(i=i) for k, v in args.items()}
        outcome = await call(runtime, ctx, tool, **fields)
        return "ok: " + outcome.content if outcome.ok else outcome.content

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def test_a_folder_swapped_for_a_symlink_never_lets_a_write_out(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "log.txt").write_text("outside log\n")
    async with open_runtime(tmp_path) as runtime:
        workspace = tmp_path / "workspace"
        (workspace / "sub").mkdir()
        (workspace / "sub" / "log.txt").write_text("inside log\n")
        stop, swaps = threading.Event(), [0]
        thread = threading.Thread(target=_swapper, args=(workspace, outside, stop, swaps))
        thread.start()
        try:
            results = await _race(runtime, "write_file", 400, path="sub/f{i}.txt",
                                  content="written {i}")
            results += await _race(runtime, "append_file", 200, path="sub/log.txt",
                                   text="line {i}")
            results += await _race(runtime, "read_file", 100, path="sub/log.txt")
        finally:
            stop.set()
            thread.join()
    assert swaps[0] > 10
    assert sorted(p.name for p in outside.iterdir()) == ["log.txt"]
    assert (outside / "log.txt").read_text() == "outside log\n"
    assert not any("outside log" in r for r in results)
    refused = [r for r in results if not r.startswith("ok: ")]
    assert len(refused) < len(results)  # the race did not stop every write
    for message in refused:
        assert str(tmp_path) not in message, message
        assert any(why in message for why in ("symbolic link", "not a folder",
                                              "disappeared", "no file")), message


async def test_hard_links_fifos_and_devices_are_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("do not read\n")
    async with open_runtime(tmp_path) as runtime:
        workspace = tmp_path / "workspace"
        os.link(secret, workspace / "planted.txt")
        os.mkfifo(workspace / "pipe")
        os.symlink("/dev/zero", workspace / "zero-link")  # refused: leads outside
        ctx = context(runtime, "t_1")
        outcome = await call(runtime, ctx, "read_file", path="planted.txt")
        assert not outcome.ok and "hard links" in outcome.content
        outcome = await call(runtime, ctx, "append_file", path="planted.txt", text="pwned")
        assert not outcome.ok and "hard links" in outcome.content
        outcome = await call(runtime, ctx, "edit_file", path="planted.txt", old="do",
                             new="did")
        assert not outcome.ok and "hard links" in outcome.content
        assert secret.read_text() == "do not read\n"
        # Replacing the planted link writes a new file in the workspace only.
        await ok(runtime, ctx, "write_file", path="planted.txt", content="mine")
        assert secret.read_text() == "do not read\n"
        assert (workspace / "planted.txt").read_text() == "mine"
        # A FIFO neither blocks a read (nobody writes to it here) nor takes an append.
        for tool, args in (("read_file", {}), ("append_file", {"text": "x"}),
                           ("write_file", {"content": "x"})):
            outcome = await call(runtime, ctx, tool, path="pipe", **args)
            assert not outcome.ok and "not a regular file" in outcome.content, tool
        outcome = await call(runtime, ctx, "read_file", path="zero-link")
        assert not outcome.ok and "symbolic link" in outcome.content


async def test_os_errors_never_show_the_machine_path(tmp_path: Path) -> None:
    async with open_runtime(tmp_path) as runtime:
        ctx = context(runtime, "t_1")
        (tmp_path / "workspace" / "a-file").write_text("x")
        for tool, args in (
                ("write_file", {"path": "d/" + "n" * 300, "content": "x"}),
                ("read_file", {"path": "n" * 300}),
                ("append_file", {"path": "a-file/below.txt", "text": "x"}),
                ("list_files", {"path": "a-file"}),
                ("read_file", {"path": "."})):
            outcome = await call(runtime, ctx, tool, **args)
            assert not outcome.ok, tool
            assert str(tmp_path) not in outcome.content, outcome.content
            assert "Errno" not in outcome.content, outcome.content
