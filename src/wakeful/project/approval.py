"""``approval:`` and ``on_new_message:`` in an agent file: where people step in.

``approval`` lists rules; a tool call that matches one does not run until a person
approves it (see :mod:`wakeful.approvals`)::

    approval:
      - tools: [write_file, "github.*"]   # tool names, with * and ? wildcards
        when: {path: "docs/**"}           # argument -> pattern; all must match
        approvers: [person:ada]           # who may decide (empty: any person)
        timeout: 1h                       # then on_timeout decides
        on_timeout: deny                  # deny (default) | approve

or ``approval: all`` (every call, any person, no timeout).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from wakeful.core.timespecs import parse_duration

OnNewMessage = Literal["queue", "interrupt", "merge", "reject"]
"""What a person's new message to an agent does while a task of that agent is still
answering that same person: ``merge`` it into that task at its next step boundary,
``queue`` a task for it after the running one ends, ``interrupt`` (cancel) the running
one and start afresh, or ``reject`` it with a refusal."""


class ApprovalRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tools: list[str] = Field(default_factory=lambda: ["*"], min_length=1)
    when: dict[str, str] = Field(default_factory=dict)
    approvers: list[str] = Field(default_factory=list)
    timeout: str | None = None
    on_timeout: Literal["deny", "approve"] = "deny"

    @field_validator("approvers")
    @classmethod
    def _people(cls, value: list[str]) -> list[str]:
        for who in value:
            if not who.startswith("person:") or len(who) == len("person:"):
                raise ValueError(f"{who!r} is not a person: write approvers as "
                                 "'person:NAME'")
        return value

    @field_validator("timeout")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None and parse_duration(value) <= 0:
            raise ValueError("timeout must be greater than zero")
        return value

    @property
    def timeout_s(self) -> float | None:
        return None if self.timeout is None else parse_duration(self.timeout)


ApprovalConfig = list[ApprovalRule] | Literal["all"]
