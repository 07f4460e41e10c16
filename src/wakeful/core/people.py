"""Who a person is: a name, a role, and what each role may do.

Three roles, each including the one before: a ``viewer`` reads everything and changes
nothing; an ``operator`` also sends mail (as themselves), starts tasks and controls
agents (pause, resume, cancel...); an ``admin`` also manages people and agents and may
decide any approval. The project's own API token is the admin's (``person:admin``).

These are plain records and pure rules, shared by the store (which keeps people and
their hashed tokens), the API (which knows who calls) and the approvals (which ask
:func:`may_decide`).
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, get_args

Role = Literal["viewer", "operator", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)
PERSON_NAME = re.compile(r"^[a-z0-9][a-z0-9_.@-]{0,63}$")
ADMIN = "person:admin"  # the identity of the project token


def role_rank(role: Role) -> int:
    return ROLES.index(role)


def check_person_name(name: str) -> str:
    """A person's name as given (``ada`` or ``person:ada``), without the prefix; a
    ValueError saying what a name may be."""
    bare = name.removeprefix("person:")
    if not PERSON_NAME.match(bare):
        raise ValueError(f"{name!r} is not a person's name: use lower case letters, digits, "
                         "'.', '@', '-' and '_' (at most 64), starting with a letter or digit")
    return bare


def check_role(role: str) -> Role:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r} (roles: {', '.join(ROLES)})")
    return role


def hash_token(token: str) -> str:
    """What the store keeps of a person's token: its SHA-256 (the token is 256 random
    bits, so a fast hash is enough; the token itself is never stored)."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Person:
    name: str  # bare: "ada"
    role: Role
    created_at: float = field(default_factory=time.time)
    created_by: str = ADMIN

    @property
    def address(self) -> str:
        return f"person:{self.name}"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who makes a request: a person (``person:ada``) with a role. ``project_token``:
    the caller holds the project's own token (the admin's), which may still speak for
    another person it names, as before people had tokens of their own."""

    identity: str
    role: Role
    project_token: bool = False

    @property
    def name(self) -> str:
        return self.identity.removeprefix("person:")

    def at_least(self, role: Role) -> bool:
        return role_rank(self.role) >= role_rank(role)

    def may_speak_as(self, person: str) -> bool:
        """May this caller send mail or start work as ``person`` (``person:NAME``)?
        Everyone may speak as themselves; only the project token as anyone else."""
        return person == self.identity or self.project_token


ADMIN_CALLER = Caller(ADMIN, "admin", project_token=True)


def may_decide(caller: Caller, approvers: Iterable[str]) -> bool:
    """May ``caller`` decide an approval that names ``approvers`` (``person:ada``, or
    bare names)? Only a person named there, or an admin. An empty list of approvers
    means any operator may decide. Viewers never may."""
    if caller.role == "admin":
        return True
    if not caller.at_least("operator"):
        return False
    named = {a if a.startswith("person:") else f"person:{a}" for a in approvers}
    return not named or caller.identity in named
