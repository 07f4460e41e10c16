"""Remote A2A agents as teammates.

A ``remote_agents:`` entry becomes a Wakeful agent of that name whose "model" is the
remote agent: each task of it is forwarded as A2A ``SendMessage`` calls (streaming),
with the Wakeful task id as the A2A context id. So a remote agent is addressed like
any other (``delegate_task``, ``request``, ``send_mail`` to NAME), its streamed answer
shows up as the task's tokens, and its final artifacts are the task's result, which
reaches whoever delegated it as the usual result mail. When the remote task needs
input, the forwarding task asks whoever waits for its outcome (``remote_input``, see
:mod:`.a2a_input`) and sends the answer as the next message on the same remote task.
Mail from other tasks to a remote agent is forwarded by :mod:`.a2a_mail`. Cancelling
the forwarding task cancels the remote task. Connection failures and timeouts are
retried like a model provider's; every call is an event (``a2a.remote.call`` /
``a2a.remote.result``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import httpx
from a2a.client import A2AClientError, Client, ClientConfig, create_client
from a2a.types import (
    CancelTaskRequest,
    ListTasksRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    StreamResponse,
    TaskState,
)
from a2a.utils.constants import AGENT_CARD_WELL_KNOWN_PATH
from a2a.utils.errors import A2AError

from wakeful.core.context import CURRENT_TASK
from wakeful.errors import ConfigError, ModelError
from wakeful.interop.a2a_input import TOOL_NAME as INPUT_TOOL
from wakeful.interop.a2a_input import find_asker
from wakeful.models.base import (
    Completed,
    Model,
    ModelResponse,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolSpec,
    Usage,
)
from wakeful.models.base import (
    Message as WMessage,
)
from wakeful.project.definitions import AgentDefinition, RestartPolicy
from wakeful.project.interop import RemoteAgentConfig

if TYPE_CHECKING:
    from wakeful.runtime.runtime import Runtime

RETRY_BACKOFF_S = (0.5, 2.0, 5.0)
_FAILED = {TaskState.TASK_STATE_FAILED: "failed", TaskState.TASK_STATE_CANCELED: "canceled",
           TaskState.TASK_STATE_REJECTED: "rejected"}


def model_spec(name: str) -> str:
    return f"a2a:{name}"


def proxy_definition(config: RemoteAgentConfig) -> AgentDefinition:
    """The local agent that stands for a remote one."""
    return AgentDefinition(
        name=config.name, role=f"a remote A2A agent at {config.url}",
        model=model_spec(config.name), tools=[INPUT_TOOL], max_concurrent_tasks=16,
        max_steps=20, restart=RestartPolicy(policy="never"))


def split_card_url(url: str) -> tuple[str, str | None]:
    """A base URL, or a card's URL split into base and card path."""
    if url.endswith(".json"):
        base, _, name = url.rpartition("/.well-known/")
        if base:
            return base, f"/.well-known/{name}"
    return url.rstrip("/"), None


def _text(parts: Any) -> str:
    chunks = []
    for part in parts:
        kind = part.WhichOneof("content")
        if kind == "text":
            chunks.append(part.text)
        elif kind == "data":
            from google.protobuf.json_format import MessageToDict

            chunks.append(json.dumps(MessageToDict(part.data)))
        elif kind == "url":
            chunks.append(f"[file: {part.url}]")
    return "\n".join(chunks)


def _answer(messages: list[WMessage]) -> tuple[str | None, str]:
    """(remote task, answer) when the conversation ends with the answer to a remote
    task's question (a ``remote_input`` call and its result), else (None, "")."""
    if len(messages) < 2 or messages[-1].role != "tool":
        return None, ""
    calls = [c for c in messages[-2].tool_calls if c.name == INPUT_TOOL]
    if not calls:
        return None, ""
    try:
        remote = str(json.loads(calls[-1].arguments)["remote_task"])
    except (ValueError, KeyError, TypeError):
        return None, ""
    content = messages[-1].content or ""
    with contextlib.suppress(ValueError):
        result = json.loads(content)
        if isinstance(result, dict) and result.get("answer") is not None:
            return remote, str(result["answer"])
    raise ModelError(f"the question of remote task {remote} got no answer: {content[:300]}")


class RemoteA2AModel(Model):
    """Forwards a task to a remote A2A agent (see the module docstring)."""

    def __init__(self, config: RemoteAgentConfig, runtime: Runtime) -> None:
        self.config = config
        self.runtime = runtime
        self.name = model_spec(config.name)
        self._client: Client | None = None
        self._http: httpx.AsyncClient | None = None
        self._lock = asyncio.Lock()

    async def _connect(self) -> Client:
        async with self._lock:
            if self._client is not None:
                return self._client
            headers = {}
            if self.config.token_env:
                token = os.environ.get(self.config.token_env)
                if not token:
                    raise ModelError(f"remote agent {self.config.name!r}: the environment "
                                     f"variable {self.config.token_env} is not set")
                headers["Authorization"] = f"Bearer {token}"
            self._http = httpx.AsyncClient(headers=headers, timeout=self.config.timeout_s)
            base, card_path = split_card_url(self.config.url)
            self._client = await create_client(
                base, client_config=ClientConfig(streaming=True, httpx_client=self._http,
                                                 supported_protocol_bindings=[
                                                     "JSONRPC", "HTTP+JSON"]),
                relative_card_path=card_path or AGENT_CARD_WELL_KNOWN_PATH)
            return self._client

    async def complete(self, messages: list[WMessage], tools: list[ToolSpec]) -> ModelResponse:
        response = None
        async for event in self.stream(messages, tools):
            if isinstance(event, Completed):
                response = event.response
        assert response is not None
        return response

    def _outgoing(self, task_id: str, messages: list[WMessage]) -> Message:
        """The next message to the remote agent: the task's instruction, or the answer
        to the remote task's question (on that remote task, named in the question's
        tool call, which the task's stored conversation keeps across restarts)."""
        remote, text = _answer(messages)
        if remote is None:
            text = next((m.content or "" for m in messages if m.role == "user"), "")
        return Message(message_id=f"{task_id}-{len(messages)}", role=Role.ROLE_USER,
                       context_id=task_id, task_id=remote or "", parts=[Part(text=text)])

    async def stream(self, messages: list[WMessage], tools: list[ToolSpec]
                     ) -> AsyncIterator[StreamEvent]:
        task_id = CURRENT_TASK.get() or "no-task"
        outgoing = self._outgoing(task_id, messages)
        events = self.runtime.events
        events.emit("a2a.remote.call", agent=self.config.name, task_id=task_id,
                    data={"url": self.config.url, "continues": outgoing.task_id or None})
        outcome: dict[str, Any] = {}
        for attempt in range(self.config.retries + 1):
            try:
                async with asyncio.timeout(self.config.timeout_s):
                    async for delta in self._exchange(outgoing, outcome):
                        yield delta
                break
            except (A2AClientError, httpx.HTTPError, TimeoutError) as exc:
                if outcome.get("remote_id") or attempt == self.config.retries:
                    raise ModelError(f"remote A2A agent {self.config.name!r} "
                                     f"({self.config.url}): {type(exc).__name__}: {exc}"
                                     ) from None
                await asyncio.sleep(RETRY_BACKOFF_S[min(attempt, len(RETRY_BACKOFF_S) - 1)])
            except A2AError as exc:
                raise ModelError(f"remote A2A agent {self.config.name!r} refused the "
                                 f"message: {exc}") from None
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(self._cancel(
                        task_id, outcome.get("remote_id"))), 5)
                raise
        yield Completed(await self._finish(task_id, outcome))

    async def _exchange(self, outgoing: Message, outcome: dict[str, Any]
                        ) -> AsyncIterator[StreamEvent]:
        client = await self._connect()
        streamed: list[str] = []
        async for response in client.send_message(SendMessageRequest(message=outgoing)):
            self._absorb(response, outcome)
            if response.HasField("artifact_update"):
                text = _text(response.artifact_update.artifact.parts)
                if text:
                    streamed.append(text)
                    yield TextDelta(text)
        outcome["streamed"] = "".join(streamed)

    @staticmethod
    def _absorb(response: StreamResponse, outcome: dict[str, Any]) -> None:
        if response.HasField("message"):
            outcome["state"] = TaskState.TASK_STATE_COMPLETED
            outcome["text"] = _text(response.message.parts)
            return
        if response.HasField("task"):
            task = response.task
            outcome["remote_id"] = task.id
            outcome["state"] = task.status.state
            if task.status.HasField("message"):
                outcome["text"] = _text(task.status.message.parts)
            if task.artifacts:
                outcome["artifacts"] = {a.artifact_id: _text(a.parts) for a in task.artifacts}
        elif response.HasField("status_update"):
            status = response.status_update.status
            outcome["remote_id"] = response.status_update.task_id
            outcome["state"] = status.state
            if status.HasField("message"):
                outcome["text"] = _text(status.message.parts)
        elif response.HasField("artifact_update"):
            update = response.artifact_update
            outcome["remote_id"] = update.task_id
            artifacts = outcome.setdefault("artifacts", {})
            key = update.artifact.artifact_id
            text = _text(update.artifact.parts)
            artifacts[key] = artifacts.get(key, "") + text if update.append else text

    async def _finish(self, task_id: str, outcome: dict[str, Any]) -> ModelResponse:
        state = outcome.get("state")
        remote_id = outcome.get("remote_id")
        self.runtime.events.emit("a2a.remote.result", agent=self.config.name,
                                 task_id=task_id, data={
                                     "remote_task": remote_id,
                                     "state": TaskState.Name(state) if state else None})
        if state == TaskState.TASK_STATE_INPUT_REQUIRED and remote_id:
            question = outcome.get("text") or "the remote agent needs more input"
            if await find_asker(self.runtime.mailbox, self.runtime.get_task, task_id) is None:
                return self._reply(f"The remote agent needs input: {question}")
            call = ToolCall(id=f"ask_{remote_id}_{task_id}", name=INPUT_TOOL,
                            arguments=json.dumps({"question": question,
                                                  "remote_task": remote_id}))
            return ModelResponse(WMessage(role="assistant", content=None,
                                          tool_calls=(call,)), Usage(), "tool_calls",
                                 self.name)
        if state in _FAILED:
            raise ModelError(f"remote A2A agent {self.config.name!r}: its task {remote_id} "
                             f"{_FAILED[state]}: {outcome.get('text') or 'no reason given'}")
        artifacts: dict[str, str] = outcome.get("artifacts") or {}
        final = {k: v for k, v in artifacts.items() if k != "stream"} or artifacts
        text = "\n\n".join(v for v in final.values() if v) or outcome.get("text") \
            or outcome.get("streamed") or ""
        return self._reply(text)

    def _reply(self, text: str) -> ModelResponse:
        return ModelResponse(WMessage(role="assistant", content=text), Usage(), "stop",
                             self.name)

    async def _cancel(self, context_id: str, remote_id: str | None) -> None:
        """Cancel the remote task; if its id has not arrived yet, every open task in
        the context (the context id is the Wakeful task's)."""
        client = await self._connect()
        ids = [remote_id] if remote_id else [
            t.id for t in (await client.list_tasks(ListTasksRequest(
                context_id=context_id))).tasks
            if t.status.state not in _FAILED and t.status.state != TaskState.TASK_STATE_COMPLETED]
        for found in ids:
            await client.cancel_task(CancelTaskRequest(id=found))
            self.runtime.events.emit("a2a.remote.cancelled", agent=self.config.name,
                                     task_id=context_id, data={"remote_task": found})

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
        if self._http is not None:
            await self._http.aclose()
            self._http = None


def check_names(configs: list[RemoteAgentConfig], local: set[str]) -> None:
    clash = sorted({c.name for c in configs} & local)
    if clash:
        raise ConfigError(f"remote_agents: {', '.join(clash)} is also a local agent; give "
                          "the remote agent another name")
