"""A cycle of lock waits that spans two workers (two runtimes on one store, as two
processes would be) is caught as it forms, from the wait graph in the store: the
youngest task gives up with a deadlock error and its locks go, and the older one gets
what it waited for."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest

from polling import until
from resources_support import call, context, ok
from wakeful.models.registry import ModelRegistry
from wakeful.project.definitions import ResourcesConfig
from wakeful.resources.manager import ResourceManager
from wakeful.runtime.runtime import Runtime
from wakeful.store import open_store


@asynccontextmanager
async def worker(url: str, root: Path) -> AsyncIterator[Runtime]:
    runtime = Runtime(store=open_store(url), models=ModelRegistry(root / "scripts"),
                      agents=[], resources=ResourceManager(
                          root / "workspace", ResourcesConfig(poll_interval_s=0.05)))
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_a_deadlock_across_two_workers_is_broken(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = (str(tmp_path / "wakeful.db") if backend == "sqlite"
           else request.getfixturevalue("pg_url"))
    async with AsyncExitStack() as stack:
        one = await stack.enter_async_context(worker(url, tmp_path))
        two = await stack.enter_async_context(worker(url, tmp_path))
        older, younger = context(one, "t_1", "one"), context(two, "t_2", "two")
        await ok(one, older, "acquire_lock", resource="file:a.md")
        await ok(two, younger, "acquire_lock", resource="file:b.md")
        first = asyncio.create_task(call(one, older, "acquire_lock", resource="file:b.md",
                                         wait_s=30))

        async def waiting() -> bool:  # t_1 waits in line for file:b.md
            return any(w.owner.task_id == "t_1" for w in (await one.store.locks().snapshot())[2])

        await until(waiting, what="t_1 waiting for file:b.md")
        second = await call(two, younger, "acquire_lock", resource="file:a.md", wait_s=30)
        assert not second.ok
        assert "deadlock across workers: t_2 -> t_1 -> t_2" in second.content
        assert "its lock on file:b.md" in second.content and "was released" in second.content
        granted = await asyncio.wait_for(first, 30)
        assert granted.ok and '"acquired": true' in granted.content
