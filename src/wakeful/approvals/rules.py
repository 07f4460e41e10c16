"""Which tool calls need a person's approval, what a person is asked, and who may
decide: pure functions of an agent's ``approval:`` rules and one call.

Kept free of I/O so the rules can be tested (and reasoned about) on their own; the
service in :mod:`wakeful.approvals.service` applies them.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from wakeful.core.approvals import Approval
from wakeful.project.approval import ApprovalConfig, ApprovalRule

ADMIN = "person:admin"
"""The project token's holder: may decide any approval."""

NEVER_GATED = frozenset({"ask_person"})
"""Tools ``approval: all`` leaves alone: asking a person is already a person's turn."""

_SUMMARY_ARGS = ("path", "resource", "to", "agent", "name", "url", "query")


@dataclass(frozen=True, slots=True)
class Requirement:
    """A call needs approval: by whom, and what its timeout does."""

    approvers: tuple[str, ...] = ()
    timeout_s: float | None = None
    on_timeout: str = "deny"


def _matches(rule: ApprovalRule, tool: str, args: dict[str, Any]) -> bool:
    if not any(fnmatchcase(tool, pattern) for pattern in rule.tools):
        return False
    for name, pattern in rule.when.items():
        value = args.get(name)
        if value is None or not fnmatchcase(str(value), pattern):
            return False
    return True


def requirement(config: ApprovalConfig, tool: str, args: dict[str, Any]
                ) -> Requirement | None:
    """The approval a call needs under ``config`` (the first rule that matches), or
    None when it may run at once. ``*`` and ``?`` in a rule's tool names and ``when``
    patterns are wildcards (``*`` also crosses ``/``: ``docs/**`` is all of docs/)."""
    if config == "all":
        return None if tool in NEVER_GATED else Requirement()
    for rule in config:
        if _matches(rule, tool, args):
            return Requirement(tuple(rule.approvers), rule.timeout_s, rule.on_timeout)
    return None


def summarize(tool: str, args: dict[str, Any], limit: int = 80) -> str:
    """What a person is asked about: ``write_file(docs/plan.md)``. The argument that
    says what the call touches (a path, a recipient...), else the first short text."""
    shown = next((str(args[k]) for k in _SUMMARY_ARGS if isinstance(args.get(k), str)),
                 None)
    if shown is None:
        shown = next((v for v in args.values() if isinstance(v, str) and v.strip()), "")
    shown = " ".join(shown.split())
    if len(shown) > limit:
        shown = shown[:limit - 1] + "…"
    return f"{tool}({shown})"


def may_decide(person: str, approval: Approval) -> bool:
    """Only a person the approval names (or the admin) may decide it; an approval that
    names nobody may be decided by any person."""
    if not person.startswith("person:"):
        return False
    if person == ADMIN:
        return True
    return not approval.approvers or person in approval.approvers
