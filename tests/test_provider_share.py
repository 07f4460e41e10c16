"""Provider limits divided among live workers: each worker applies its share of the
configured concurrency and rates, and takes the whole again when it is alone."""

from __future__ import annotations

import asyncio
from pathlib import Path

from polling import until
from wakeful.models.config import ProviderConfig
from wakeful.models.limits import ProviderLimits
from wakeful.models.registry import ModelRegistry
from wakeful.project.definitions import AgentDefinition
from wakeful.runtime.runtime import Runtime
from wakeful.store.sqlite import SQLiteStore
from wakeful.tools.builtin import default_tools


async def _holders(limits: ProviderLimits, n: int, release: asyncio.Event,
                   inside: list[int]) -> list[asyncio.Task[None]]:
    async def hold() -> None:
        async with limits.slot(1):
            inside.append(1)
            await release.wait()
            inside.pop()

    tasks = [asyncio.create_task(hold()) for _ in range(n)]
    for _ in range(5):
        await asyncio.sleep(0)
    return tasks


async def test_a_share_caps_calls_in_flight_and_a_larger_share_lets_waiters_in() -> None:
    limits = ProviderLimits(concurrency=6)
    limits.share(3)
    assert limits.allowed == 2
    release, inside = asyncio.Event(), []
    tasks = await _holders(limits, 5, release, inside)
    assert len(inside) == 2  # two in flight, three wait their turn
    limits.share(1)  # the other workers left: the whole limit is this worker's again
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(inside) == 5
    release.set()
    await asyncio.gather(*tasks)
    assert limits.in_flight == 0 and limits.peak_in_flight == 5


async def test_a_smaller_share_holds_new_calls_until_enough_have_ended() -> None:
    limits = ProviderLimits(concurrency=4)
    release, inside = asyncio.Event(), []
    tasks = await _holders(limits, 4, release, inside)
    assert len(inside) == 4
    limits.share(4)  # four workers now: one call at a time here
    late_release, late_inside = asyncio.Event(), []
    late = await _holders(limits, 1, late_release, late_inside)
    assert late_inside == []  # four still in flight, over the new share of one
    release.set()
    await asyncio.gather(*tasks)
    await until(lambda: late_inside == [1], 5, "the waiting call let in")
    late_release.set()
    await asyncio.gather(*late)


async def test_a_waiter_cancelled_in_line_leaves_no_slot_taken() -> None:
    limits = ProviderLimits(concurrency=1)
    release, inside = asyncio.Event(), []
    first = await _holders(limits, 1, release, inside)
    waiting = await _holders(limits, 1, asyncio.Event(), [])
    waiting[0].cancel()
    await asyncio.gather(*waiting, return_exceptions=True)
    release.set()
    await asyncio.gather(*first)
    after = await _holders(limits, 1, release, inside)  # the slot is free again
    await asyncio.gather(*after)
    assert limits.in_flight == 0


def test_rates_are_divided_too() -> None:
    limits = ProviderLimits(concurrency=8, requests_per_minute=1200, tokens_per_minute=60_000)
    limits.share(4)
    assert limits.requests is not None and limits.tokens is not None
    assert limits.requests.rate == 1200 / 4 / 60
    assert limits.tokens.rate == 60_000 / 4 / 60


async def test_two_workers_each_apply_half_and_one_alone_applies_all(tmp_path: Path) -> None:
    config = ProviderConfig(base_url="http://127.0.0.1:9/v1", api_key_required=False,
                            concurrency=8, requests_per_minute=600)

    def make() -> Runtime:
        models = ModelRegistry(tmp_path / "scripts", providers={"local": config})
        return Runtime(store=SQLiteStore(tmp_path / "wakeful.db"), models=models,
                       tools=default_tools(), poll_interval_s=0.02, lease_s=1.0,
                       agents=[AgentDefinition(name=n, model="local:m") for n in "ab"])

    first, second = make(), make()
    await first.start()
    await second.start()
    try:
        one, two = (r.models.provider("local").limits for r in (first, second))
        await until(lambda: one.allowed == 4 and two.allowed == 4, 20,
                    "both workers applying half the concurrency")
        assert one.requests is not None and one.requests.rate == 300 / 60
        await second.stop()
        await until(lambda: one.allowed == 8, 20, "the worker left alone applying it all")
    finally:
        await first.stop()
        await second.stop()
