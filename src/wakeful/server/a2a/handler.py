"""The A2A request handler, written on Wakeful's store and event log.

The SDK's transports (JSON-RPC, HTTP+JSON) parse and answer requests; this class does
the work. There is no in-memory A2A task store: a task is a Wakeful task plus its row
in ``a2a_tasks`` (see :mod:`.records`), so it is durable on return of ``SendMessage``
and carries on after a restart like any other task. Streams are built from the live
event log: state changes become status updates, streamed model tokens become chunks of
a ``stream`` artifact, and the task's result is the ``result`` artifact.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from a2a.server.context import ServerCallContext
from a2a.server.events.event_queue import Event
from a2a.server.request_handlers.request_handler import RequestHandler
from a2a.types import (
    AgentCard,
    Artifact,
    CancelTaskRequest,
    DeleteTaskPushNotificationConfigRequest,
    GetExtendedAgentCardRequest,
    GetTaskPushNotificationConfigRequest,
    GetTaskRequest,
    InvalidParamsError,
    ListTaskPushNotificationConfigsRequest,
    ListTaskPushNotificationConfigsResponse,
    ListTasksRequest,
    ListTasksResponse,
    Message,
    Part,
    Role,
    SendMessageRequest,
    SubscribeToTaskRequest,
    Task,
    TaskArtifactUpdateEvent,
    TaskNotCancelableError,
    TaskNotFoundError,
    TaskPushNotificationConfig,
    TaskStatusUpdateEvent,
    UnsupportedOperationError,
)
from google.protobuf.json_format import MessageToDict

from wakeful.core.a2a import A2ATaskRow
from wakeful.core.records import Event as WEvent
from wakeful.core.records import TaskRecord
from wakeful.core.states import TaskState as WState
from wakeful.errors import IllegalTransitionError
from wakeful.interop.caller import caller_address
from wakeful.observe.events import Subscription
from wakeful.runtime.runtime import Runtime
from wakeful.server.a2a import convert
from wakeful.server.a2a.convert import INTERRUPTED, TERMINAL
from wakeful.server.a2a.push import PushConfigs
from wakeful.store.a2a import A2AStore

MAX_PAGE = 100
DEFAULT_PAGE = 50


@dataclass(slots=True)
class _Accepted:
    row: A2ATaskRow
    message: Message
    text: str
    new_task: TaskRecord | None  # to store and launch; None: an existing task


class WakefulRequestHandler(RequestHandler):
    """Serves every exposed agent; the agent comes from the route (``/a2a/{agent}``)."""

    def __init__(self, runtime: Runtime, records: A2AStore, push: PushConfigs) -> None:
        self.runtime = runtime
        self.records = records
        self.push = push

    # helpers -------------------------------------------------------------------
    @staticmethod
    def agent_of(context: ServerCallContext) -> str:
        agent: str = context.state["agent"]
        return agent

    async def _row(self, task_id: str, context: ServerCallContext) -> A2ATaskRow:
        row = await self.records.get(task_id) if task_id else None
        if row is None or row.agent != self.agent_of(context):
            raise TaskNotFoundError(message=f"no task {task_id!r} at agent "
                                    f"{self.agent_of(context)!r}")
        return row

    async def question(self, record: TaskRecord) -> str | None:
        """The task's open question to its caller, if it is waiting on one."""
        if record.state is not WState.WAITING:
            return None
        caller = caller_address(record.id)
        for status in ("pending", "delivered"):
            found = await self.runtime.mailbox.list_mail(owner=caller, status=status, limit=1)
            if found:
                return found[0].body
        return None

    async def task_view(self, row: A2ATaskRow, history_length: int | None = None,
                        include_artifacts: bool = True) -> Task:
        record = await self.runtime.get_task(row.task_id)
        return convert.build_task(row, record, finished=self.runtime.finished(record),
                                  question=await self.question(record),
                                  history_length=history_length,
                                  include_artifacts=include_artifacts)

    def _feed(self, task_id: str) -> Subscription:
        def about(event: WEvent) -> bool:
            return event.task_id == task_id

        return self.runtime.events.subscribe(about, maxsize=10_000)

    async def _next(self, feed: Subscription) -> WEvent | None:
        """The task's next event here, or None after the poll interval: a task whose
        agent another worker owns changes state in the store, not in this event log."""
        try:
            async with asyncio.timeout(self.runtime.poll_interval_s):
                return await feed.get()
        except TimeoutError:
            return None

    # sending ---------------------------------------------------------------------
    async def _accept(self, params: SendMessageRequest, context: ServerCallContext
                      ) -> _Accepted:
        if not params.HasField("message"):
            raise InvalidParamsError(message="params.message is required")
        message = Message()
        message.CopyFrom(params.message)
        if not message.message_id:
            raise InvalidParamsError(message="message.messageId is required")
        if message.role != Role.ROLE_USER:
            raise InvalidParamsError(message="message.role must be ROLE_USER")
        if params.configuration.history_length < 0:
            raise InvalidParamsError(message="configuration.historyLength must be >= 0")
        text = convert.message_text(message)
        agent = self.agent_of(context)
        if message.task_id:
            row = await self._row(message.task_id, context)
            if message.context_id and message.context_id != row.context_id:
                raise InvalidParamsError(message=f"message.contextId {message.context_id!r} "
                                         f"is not the context of task {row.task_id} "
                                         f"({row.context_id!r})")
            message.context_id = row.context_id
            record = await self.runtime.get_task(row.task_id)
            if self.runtime.finished(record):
                raise UnsupportedOperationError(
                    message=f"task {row.task_id} is {record.state.value} (a terminal "
                    "state); send the message without taskId (same contextId) to start "
                    "a new task")
            return _Accepted(row, message, text, None)
        context_id = message.context_id or str(uuid.uuid4())
        metadata = MessageToDict(message.metadata) if message.metadata else {}
        if params.metadata:
            metadata = {**MessageToDict(params.metadata), **metadata}
        record = self.runtime.new_task(agent, text, created_by=f"a2a:{context_id}"[:200])
        message.task_id = record.id
        message.context_id = context_id
        row = A2ATaskRow(task_id=record.id, agent=agent, context_id=context_id,
                         message_id=message.message_id, metadata=metadata,
                         history=[convert.dump_message(message)])
        earlier = await self._earlier(agent, message.context_id) if params.message.context_id \
            else []
        record.instruction = convert.instruction(text, row, earlier)
        return _Accepted(row, message, text, record)

    async def _earlier(self, agent: str, context_id: str) -> list[str]:
        """The last few tasks of the context, so a new task in it knows what came
        before (their A2A ids and an excerpt of their outcome)."""
        lines = []
        for row in reversed((await self.records.for_agent(agent, context_id))[:3]):
            found = await self.runtime.store.get_task(row.task_id)
            if found is not None:
                outcome = (found.result or found.error or found.state.value)[:300]
                lines.append(f"task {found.id} ({found.state.value}): {outcome}")
        return lines

    async def _commit(self, accepted: _Accepted, params: SendMessageRequest) -> None:
        if accepted.new_task is not None:
            await self.records.create(accepted.row, accepted.new_task)
            self.runtime.launch_task(accepted.new_task)
            self.runtime.events.emit("a2a.task.created", agent=accepted.row.agent,
                                     task_id=accepted.row.task_id, data={
                                         "context_id": accepted.row.context_id,
                                         "message_id": accepted.row.message_id})
        else:
            await self._continue(accepted)
        if params.configuration.HasField("task_push_notification_config"):
            config = TaskPushNotificationConfig()
            config.CopyFrom(params.configuration.task_push_notification_config)
            config.task_id = accepted.row.task_id
            await self.push.create(config)

    async def _continue(self, accepted: _Accepted) -> None:
        """A message on an existing task: the answer to its open question, or else
        mail to the task (it reads it with check_mail)."""
        row = accepted.row
        entry = convert.dump_message(accepted.message)
        await self.records.append_history(row.task_id, entry)
        row.history.append(entry)
        caller = caller_address(row.task_id)
        mailbox = self.runtime.mailbox
        open_question = None
        for status in ("pending", "delivered"):
            found = await mailbox.list_mail(owner=caller, status=status, limit=1)
            if found:
                open_question = found[0]
                break
        if open_question is not None:
            question = await mailbox.read(caller, open_question.id)  # handled by the caller
            await mailbox.reply(caller, question, accepted.text)
        else:
            await mailbox.send(caller, f"{row.agent}/{row.task_id}",
                               "message from the A2A caller", accepted.text)
        self.runtime.events.emit("a2a.message", agent=row.agent, task_id=row.task_id,
                                 data={"message_id": accepted.message.message_id,
                                       "answer": open_question is not None})

    async def on_message_send(self, params: SendMessageRequest, context: ServerCallContext
                              ) -> Task | Message:
        accepted = await self._accept(params, context)
        history = (params.configuration.history_length
                   if params.configuration.HasField("history_length") else None)
        with self._feed(accepted.row.task_id) as feed:
            await self._commit(accepted, params)
            if params.configuration.return_immediately:
                return await self.task_view(accepted.row, history)
            while True:
                task = await self.task_view(accepted.row, history)
                if task.status.state in TERMINAL | INTERRUPTED:
                    return task
                await self._next(feed)

    async def on_message_send_stream(self, params: SendMessageRequest,
                                     context: ServerCallContext) -> AsyncGenerator[Event]:
        accepted = await self._accept(params, context)
        with self._feed(accepted.row.task_id) as feed:
            await self._commit(accepted, params)
            async for event in self._follow(accepted.row, feed):
                yield event

    async def _follow(self, row: A2ATaskRow, feed: Subscription) -> AsyncGenerator[Event]:
        """The task now, then its changes, until it ends or needs input."""
        task = await self.task_view(row)
        yield task
        last = task.status.state
        streamed = False
        while last not in TERMINAL | INTERRUPTED:
            event = await self._next(feed)
            if event is not None and event.type == "model.token":
                text = str(event.data.get("text", ""))
                if text:
                    yield TaskArtifactUpdateEvent(
                        task_id=row.task_id, context_id=row.context_id, append=streamed,
                        artifact=Artifact(artifact_id=convert.STREAM_ARTIFACT,
                                          name="streamed reply", parts=[Part(text=text)]))
                    streamed = True
                continue
            task = await self.task_view(row)
            state = task.status.state
            if state == last:
                continue
            last = state
            for artifact in task.artifacts:
                yield TaskArtifactUpdateEvent(task_id=row.task_id, context_id=row.context_id,
                                              artifact=artifact, last_chunk=True)
            yield TaskStatusUpdateEvent(task_id=row.task_id, context_id=row.context_id,
                                        status=task.status)

    async def on_subscribe_to_task(self, params: SubscribeToTaskRequest,
                                   context: ServerCallContext) -> AsyncGenerator[Event]:
        row = await self._row(params.id, context)
        with self._feed(row.task_id) as feed:
            task = await self.task_view(row)
            if task.status.state in TERMINAL:
                raise UnsupportedOperationError(
                    message=f"task {row.task_id} is in a terminal state "
                    f"({convert.state_name(task.status.state)}); nothing more will happen")
            async for event in self._follow(row, feed):
                yield event

    # reading and cancelling ---------------------------------------------------------
    async def on_get_task(self, params: GetTaskRequest, context: ServerCallContext
                          ) -> Task | None:
        if params.HasField("history_length") and params.history_length < 0:
            raise InvalidParamsError(message="historyLength must be >= 0")
        row = await self._row(params.id, context)
        history = params.history_length if params.HasField("history_length") else None
        return await self.task_view(row, history)

    async def on_list_tasks(self, params: ListTasksRequest, context: ServerCallContext
                            ) -> ListTasksResponse:
        size = params.page_size if params.HasField("page_size") else DEFAULT_PAGE
        if not 1 <= size <= MAX_PAGE:
            raise InvalidParamsError(message=f"pageSize must be 1..{MAX_PAGE}, got {size}")
        try:
            start = int(params.page_token or "0")
        except ValueError:
            raise InvalidParamsError(message=f"pageToken {params.page_token!r} is not one "
                                     "this server gave out") from None
        history = params.history_length if params.HasField("history_length") else None
        if history is not None and history < 0:
            raise InvalidParamsError(message="historyLength must be >= 0")
        after = (params.status_timestamp_after.ToNanoseconds() / 1e9
                 if params.HasField("status_timestamp_after") else None)
        tasks: list[Task] = []
        for row in await self.records.for_agent(self.agent_of(context), params.context_id or None):
            task = await self.task_view(row, history, include_artifacts=True)
            if params.status and task.status.state != params.status:
                continue
            if after is not None and task.status.timestamp.ToNanoseconds() / 1e9 < after:
                continue
            tasks.append(task)
        page = tasks[start:start + size]
        following = start + size
        return ListTasksResponse(tasks=page, page_size=size, total_size=len(tasks),
                                 next_page_token=str(following) if following < len(tasks)
                                 else "")

    async def on_cancel_task(self, params: CancelTaskRequest, context: ServerCallContext
                             ) -> Task | None:
        row = await self._row(params.id, context)
        task = await self.task_view(row)
        if task.status.state in TERMINAL:
            raise TaskNotCancelableError(message=f"task {row.task_id} is already "
                                         f"{convert.state_name(task.status.state)}")
        try:
            await self.runtime.cancel_task(row.task_id)
        except IllegalTransitionError as exc:
            raise TaskNotCancelableError(message=str(exc)) from None
        self.runtime.events.emit("a2a.task.cancelled", agent=row.agent, task_id=row.task_id)
        return await self.task_view(row)

    # push notifications -----------------------------------------------------------
    async def on_create_task_push_notification_config(
            self, params: TaskPushNotificationConfig, context: ServerCallContext
    ) -> TaskPushNotificationConfig:
        await self._row(params.task_id, context)
        return await self.push.create(params)

    async def on_get_task_push_notification_config(
            self, params: GetTaskPushNotificationConfigRequest, context: ServerCallContext
    ) -> TaskPushNotificationConfig:
        await self._row(params.task_id, context)
        return await self.push.get(params.task_id, params.id)

    async def on_list_task_push_notification_configs(
            self, params: ListTaskPushNotificationConfigsRequest, context: ServerCallContext
    ) -> ListTaskPushNotificationConfigsResponse:
        await self._row(params.task_id, context)
        return ListTaskPushNotificationConfigsResponse(
            configs=await self.push.configs(params.task_id))

    async def on_delete_task_push_notification_config(
            self, params: DeleteTaskPushNotificationConfigRequest, context: ServerCallContext
    ) -> None:
        await self._row(params.task_id, context)
        await self.push.delete(params.task_id, params.id)

    async def on_get_extended_agent_card(self, params: GetExtendedAgentCardRequest,
                                         context: ServerCallContext) -> AgentCard:
        # The card does not declare capabilities.extendedAgentCard, so the spec (3.3.4)
        # wants UnsupportedOperationError, not ExtendedAgentCardNotConfiguredError.
        raise UnsupportedOperationError(
            message="this agent has no extended card (its card does not declare "
                    "capabilities.extendedAgentCard); its public card says everything")
