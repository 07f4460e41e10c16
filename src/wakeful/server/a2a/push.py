"""Push notifications: configs kept in the store, delivered with retries.

A caller registers a URL for a task (``CreateTaskPushNotificationConfig`` or with its
``SendMessage``). Whenever the task's A2A state changes, the deliverer POSTs the task
(an A2A ``StreamResponse`` with ``task``) to every URL, with the caller's token in
``X-A2A-Notification-Token`` and its credentials in ``Authorization``. A delivery that
fails is retried with backoff; the last state delivered is recorded per config, so a
state change that a crash kept from being delivered is delivered at the next start.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from urllib.parse import urlparse

import httpx
import structlog
from a2a.types import (
    InvalidParamsError,
    StreamResponse,
    Task,
    TaskNotFoundError,
    TaskPushNotificationConfig,
)
from google.protobuf.json_format import MessageToDict, ParseDict

from wakeful.core.records import Event
from wakeful.core.scope import TaskScope
from wakeful.observe.events import EventLog
from wakeful.server.a2a.convert import state_name
from wakeful.store.a2a import A2AStore

log = structlog.get_logger("wakeful.a2a.push")

TaskView = Callable[[str], Awaitable[Task | None]]
RETRY_DELAYS_S = (0.2, 1.0, 5.0, 15.0)


def _check_url(url: str) -> None:
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise InvalidParamsError(message=f"push notification url {url!r}: use an http:// or "
                                 "https:// URL")


class PushConfigs:
    """The configs (durable) and, once :meth:`begin` is called, their delivery."""

    def __init__(self, records: A2AStore, *, retry_delays_s: tuple[float, ...] =
                 RETRY_DELAYS_S) -> None:
        self.records = records
        self.retry_delays_s = retry_delays_s
        self.delivering = False
        self.delivered = 0
        self.failed = 0
        self._scope = TaskScope("a2a-push")
        self._watched: set[str] = set()
        self._client: httpx.AsyncClient | None = None
        self._view: TaskView | None = None
        self._locks: dict[str, asyncio.Lock] = {}

    # configs -------------------------------------------------------------------
    async def create(self, config: TaskPushNotificationConfig) -> TaskPushNotificationConfig:
        _check_url(config.url)
        saved = TaskPushNotificationConfig()
        saved.CopyFrom(config)
        saved.tenant = ""
        saved.id = saved.id or str(uuid.uuid4())
        await self.records.save_push(saved.task_id, saved.id, MessageToDict(saved))
        self._watched.add(saved.task_id)
        if self.delivering:  # the task may already have moved on: send its state now
            self._scope.spawn(self._deliver(saved.task_id), name=f"a2a-push:{saved.task_id}")
        return saved

    async def configs(self, task_id: str) -> list[TaskPushNotificationConfig]:
        return [ParseDict(c, TaskPushNotificationConfig(), ignore_unknown_fields=True)
                for _, c, _ in await self.records.pushes(task_id)]

    async def get(self, task_id: str, config_id: str) -> TaskPushNotificationConfig:
        for config in await self.configs(task_id):
            if config.id == config_id:
                return config
        raise TaskNotFoundError(message=f"task {task_id} has no push notification config "
                                f"{config_id!r}")

    async def delete(self, task_id: str, config_id: str) -> bool:
        """Remove a config; deleting one already gone is no error (spec 3.1.10: delete
        MUST be idempotent). Returns whether there was one."""
        return await self.records.delete_push(task_id, config_id)

    # delivery ------------------------------------------------------------------
    async def begin(self, events: EventLog, view: TaskView) -> None:
        """Start delivering: what a crash left undelivered, then every change."""
        self._view = view
        self._client = httpx.AsyncClient(timeout=10.0)
        self.delivering = True
        pending = await self.records.undelivered_pushes()
        self._watched.update(task_id for task_id, _ in pending)
        for task_id in {t for t, _ in pending}:
            self._scope.spawn(self._deliver(task_id), name=f"a2a-push:{task_id}")
        self._scope.spawn(self._watch(events), name="a2a-push:watch")

    async def close(self) -> None:
        self.delivering = False
        await self._scope.aclose()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _watch(self, events: EventLog) -> None:
        def wanted(event: Event) -> bool:
            return event.task_id in self._watched and event.type in (
                "task.state", "mail.sent", "a2a.message")

        with events.subscribe(wanted, maxsize=10_000) as feed:
            async for event in feed:
                assert event.task_id is not None
                self._scope.spawn(self._deliver(event.task_id),
                                  name=f"a2a-push:{event.task_id}")

    async def _deliver(self, task_id: str) -> None:
        """Send the task's state to each config that has not had it yet (one delivery
        per task at a time, so states arrive in order)."""
        lock = self._locks.setdefault(task_id, asyncio.Lock())
        async with lock:
            assert self._view is not None
            task = await self._view(task_id)
            if task is None:
                return
            state = state_name(task.status.state)
            body = MessageToDict(StreamResponse(task=task))
            for config_id, raw, delivered in await self.records.pushes(task_id):
                if delivered == state:
                    continue
                config = ParseDict(raw, TaskPushNotificationConfig(),
                                   ignore_unknown_fields=True)
                if await self._post(config, body):
                    await self.records.mark_pushed(task_id, config_id, state)

    async def _post(self, config: TaskPushNotificationConfig, body: dict[str, object]
                    ) -> bool:
        assert self._client is not None
        headers = {}
        if config.token:
            headers["X-A2A-Notification-Token"] = config.token
        if config.HasField("authentication") and config.authentication.credentials:
            auth = config.authentication
            headers["Authorization"] = f"{auth.scheme or 'Bearer'} {auth.credentials}"
        for attempt, delay in enumerate((0.0, *self.retry_delays_s)):
            if delay:
                await asyncio.sleep(delay)
            try:
                response = await self._client.post(config.url, json=body, headers=headers)
                if response.status_code < 300:
                    self.delivered += 1
                    return True
                error = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            log.warning("a2a push notification failed", url=config.url, attempt=attempt + 1,
                        task=config.task_id, error=error)
        self.failed += 1
        return False
