"""Wakeful tasks as A2A tasks, and A2A messages as text a model reads.

State map (the issue's contract): queued -> submitted, running -> working,
waiting -> input-required when the task has asked its caller a question (an open mail
to the caller's address) and working otherwise, done -> completed, failed -> failed
(working while a retry is still to come), cancelled -> canceled.
"""

from __future__ import annotations

import json
from typing import Any

from a2a.types import (
    Artifact,
    InvalidParamsError,
    Message,
    Part,
    Role,
    Task,
    TaskState,
    TaskStatus,
)
from google.protobuf.json_format import MessageToDict, ParseDict
from google.protobuf.timestamp_pb2 import Timestamp

from wakeful.core.a2a import A2ATaskRow
from wakeful.core.records import TaskRecord
from wakeful.core.states import TaskState as WState
from wakeful.interop.caller import caller_address

RESULT_ARTIFACT = "result"
STREAM_ARTIFACT = "stream"
MAX_TEXT_CHARS = 100_000

TERMINAL = frozenset({TaskState.TASK_STATE_COMPLETED, TaskState.TASK_STATE_FAILED,
                      TaskState.TASK_STATE_CANCELED, TaskState.TASK_STATE_REJECTED})
INTERRUPTED = frozenset({TaskState.TASK_STATE_INPUT_REQUIRED,
                         TaskState.TASK_STATE_AUTH_REQUIRED})


def a2a_state(record: TaskRecord, finished: bool, asking: bool) -> TaskState:
    state = record.state
    if state is WState.QUEUED:
        return TaskState.TASK_STATE_SUBMITTED
    if state is WState.WAITING:
        return TaskState.TASK_STATE_INPUT_REQUIRED if asking else TaskState.TASK_STATE_WORKING
    if state is WState.DONE:
        return TaskState.TASK_STATE_COMPLETED
    if state is WState.CANCELLED:
        return TaskState.TASK_STATE_CANCELED
    if state is WState.FAILED:
        return TaskState.TASK_STATE_FAILED if finished else TaskState.TASK_STATE_WORKING
    return TaskState.TASK_STATE_WORKING


def state_name(state: int) -> str:
    return TaskState.Name(state).removeprefix("TASK_STATE_").lower().replace("_", "-")


def timestamp(ts: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(int(ts * 1e9))
    return stamp


def agent_message(task_id: str, context_id: str, text: str, message_id: str) -> Message:
    return Message(message_id=message_id, task_id=task_id, context_id=context_id,
                   role=Role.ROLE_AGENT, parts=[Part(text=text)])


def message_text(message: Message) -> str:
    """A message's parts as text for the model: text as is, data as JSON, files by
    name and URL (they are references; the model can fetch them with a tool)."""
    chunks: list[str] = []
    for index, part in enumerate(message.parts):
        kind = part.WhichOneof("content")
        if kind == "text":
            chunks.append(part.text)
        elif kind == "data":
            chunks.append(json.dumps(MessageToDict(part.data)))
        elif kind == "url":
            chunks.append(f"[file {part.filename or index}: {part.url} "
                          f"({part.media_type or 'unknown type'})]")
        elif kind == "raw":
            chunks.append(f"[file {part.filename or index}: {len(part.raw)} bytes of "
                          f"{part.media_type or 'unknown type'}, not shown]")
    text = "\n".join(c for c in chunks if c)
    if not text.strip():
        raise InvalidParamsError(message="message.parts: the message has no text, data or "
                                 "file part to work on")
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidParamsError(message=f"message.parts: {len(text):,} characters; the "
                                 f"limit is {MAX_TEXT_CHARS:,}")
    return text


def instruction(text: str, row: A2ATaskRow, earlier: list[str] | None = None) -> str:
    """The Wakeful instruction for an A2A message: the text, then where it came from
    (message id, context id, metadata, earlier tasks of the context), so the agent's
    task can see and use them."""
    meta = json.dumps(row.metadata, sort_keys=True) if row.metadata else "{}"
    before = ("\nEarlier tasks in this context:\n" + "\n".join(earlier)) if earlier else ""
    return (f"{text}\n\n---\nA2A request: message id {row.message_id}, context id "
            f"{row.context_id}, metadata {meta}. To ask the caller something, use the "
            f"ask_caller tool (or request to {caller_address(row.task_id)}); their next "
            f"message is the answer.{before}")


def build_task(row: A2ATaskRow, record: TaskRecord, *, finished: bool,
               question: str | None, history_length: int | None = None,
               include_artifacts: bool = True) -> Task:
    """The A2A view of a Wakeful task, from its store row and its A2A row."""
    state = a2a_state(record, finished, question is not None)
    status = TaskStatus(state=state, timestamp=timestamp(record.updated_at))
    text: str | None = None
    if state == TaskState.TASK_STATE_INPUT_REQUIRED:
        text = question
    elif state == TaskState.TASK_STATE_COMPLETED:
        text = record.result or ""
    elif state in (TaskState.TASK_STATE_FAILED, TaskState.TASK_STATE_CANCELED):
        text = record.error or f"the task was {record.state.value}"
    if text is not None:
        status.message.CopyFrom(agent_message(record.id, row.context_id, text,
                                              f"{record.id}-status-{state_name(state)}"))
    history = [parse_message(m) for m in row.history]
    if history_length is not None:
        history = history[-history_length:] if history_length > 0 else []
    task = Task(id=record.id, context_id=row.context_id, status=status, history=history)
    task.metadata.update({"wakeful": {"agent": record.agent, "state": record.state.value,
                                      "step": record.step}})
    if include_artifacts and state == TaskState.TASK_STATE_COMPLETED:
        task.artifacts.append(result_artifact(record))
    return task


def result_artifact(record: TaskRecord) -> Artifact:
    return Artifact(artifact_id=RESULT_ARTIFACT, name="result",
                    parts=[Part(text=record.result or "")])


def dump_message(message: Message) -> dict[str, Any]:
    return MessageToDict(message)


def parse_message(data: dict[str, Any]) -> Message:
    return ParseDict(data, Message(), ignore_unknown_fields=True)
