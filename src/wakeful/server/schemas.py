"""What the API accepts: pydantic models at the edge, so a malformed body is refused
with the field that was wrong (422) before anything reaches the runtime."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator

from wakeful.core.mail import (
    AddressKind,
    Priority,
    check_storable_field,
    parse_address,
    parse_member,
)

DEFAULT_PERSON = "person:operator"


def person_address(value: str) -> str:
    """The API speaks as people only: agents speak through their own tools."""
    if not value.startswith("person:"):
        value = "person:" + value
    address = parse_address(value)
    if address.kind is not AddressKind.PERSON:
        raise ValueError(f"{value!r} is not a person; write 'person:NAME' or just NAME")
    return str(address)


def _optional_person(value: str | None) -> str | None:
    return None if value is None else person_address(value)


def _members(value: list[str]) -> list[str]:
    for index, member in enumerate(value):
        try:
            parse_member(member)
        except ValueError as exc:
            raise ValueError(f"member {index}: {exc}") from None
    return value


class _Body(BaseModel):
    """Every body refuses unknown fields, and text the store cannot hold (a lone
    surrogate, NUL) in any field: a 422 naming the field, never a 500 from the store."""

    model_config = ConfigDict(extra="forbid")

    _storable = field_validator("*", mode="before")(check_storable_field)


class NewTask(_Body):
    agent: str = Field(min_length=1, max_length=64, description="the agent to run it")
    instruction: str = Field(min_length=1, description="what the task should do")
    created_by: str | None = Field(default=None, description=(
        "a person: 'person:ada' (default: the caller; only the project token may name "
        "someone else)"))

    _who = field_validator("created_by")(_optional_person)

    @field_validator("instruction")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the instruction is blank")
        return value


class NewMail(_Body):
    sender: str | None = Field(default=None, description=(
        "a person: 'person:ada' or 'ada' (default: the caller; only the project token "
        "may name someone else)"))
    to: str = Field(description="an agent, a task ('writer/t_1'), '#channel', '*' or a person")
    subject: str = ""
    body: str = ""
    payload: dict[str, JsonValue] | None = None
    priority: Priority = "normal"
    thread_id: str | None = Field(default=None, max_length=128)
    in_reply_to: str | None = Field(default=None, max_length=128)

    _who = field_validator("sender")(_optional_person)

    @field_validator("to")
    @classmethod
    def _address(cls, value: str) -> str:
        parse_address(value)
        return value


class NewPost(_Body):
    sender: str | None = Field(default=None, description=(
        "a person: 'person:ada' or 'ada' (default: the caller)"))
    body: str = Field(min_length=1)
    subject: str = ""
    join: bool = Field(default=False, description="join the channel first if not a member")

    _who = field_validator("sender")(_optional_person)


class NewChannel(_Body):
    name: str = Field(min_length=1, max_length=65)
    members: list[str] = Field(default_factory=list, max_length=10_000)
    topic: str = Field(default="", max_length=500)
    created_by: str | None = None

    _who = field_validator("created_by")(_optional_person)
    _check = field_validator("members")(_members)


class Members(_Body):
    members: list[str] = Field(min_length=1, max_length=10_000)

    _check = field_validator("members")(_members)


class MarkRead(_Body):
    member: str | None = None


class SleepRequest(_Body):
    reason: str = Field(default="put to sleep by a person", max_length=500)


class ControlRequest(_Body):
    """Why a person acts on an agent or a task (recorded with who they are)."""

    reason: str = Field(default="", max_length=500)


class AgentRemoval(_Body):
    running: str = Field(default="finish", pattern="^(finish|cancel)$", description=(
        "its running tasks: let them finish, or cancel them"))


def error_body(message: str, status: int, **extra: Any) -> dict[str, Any]:
    return {"error": message, "status": status, **extra}
