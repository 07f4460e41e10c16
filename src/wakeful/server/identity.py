"""Who calls the API: the project token (the admin, ``person:admin``) or a person's
own token (``wakeful people add``), and what their role lets them do.

``require_caller`` runs before every ``/api`` route: it finds the caller or answers
401. ``viewers_read_only`` answers 403 to a viewer's every change (anything but GET,
and marking their own reading done); ``require_role`` guards routes that need more
(controls need an operator; managing agents needs an admin). A person's token is looked
up by its hash, so the store never holds one; a removed person is refused at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from wakeful.core.people import ADMIN_CALLER, Caller, Role, hash_token
from wakeful.errors import WakefulError
from wakeful.server.auth import bearer, token_matches
from wakeful.server.schemas import DEFAULT_PERSON
from wakeful.store.people import people_store

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
READER_POSTS = ("/read",)  # a viewer may mark what they read


async def caller_for(request_app: object, presented: str | None) -> Caller | None:
    """The caller a token belongs to, or None."""
    if presented is None:
        return None
    state = request_app.state  # type: ignore[attr-defined]
    if token_matches(state.token, presented):
        return ADMIN_CALLER
    runtime = state.runtime
    if runtime is None:
        return None
    try:
        person = await people_store(runtime.store).by_token(hash_token(presented))
    except WakefulError:  # a store without people: only the project token works
        return None
    if person is None:
        return None
    return Caller(person.address, person.role)


async def require_caller(request: Request) -> Caller:
    """Every API call carries a token: ``Authorization: Bearer TOKEN``."""
    cached: Caller | None = getattr(request.state, "caller", None)
    if cached is not None:
        return cached
    presented = bearer(request.headers.get("authorization"))
    if presented is None:
        raise HTTPException(401, "missing API token: send 'Authorization: Bearer TOKEN' (the "
                            "token is printed by `wakeful serve` and kept in "
                            ".wakeful/token, or a person's own from `wakeful people add`)",
                            headers={"WWW-Authenticate": "Bearer"})
    caller = await caller_for(request.app, presented)
    if caller is None:
        raise HTTPException(401, "wrong API token", headers={"WWW-Authenticate": "Bearer"})
    request.state.caller = caller
    return caller


CallerDep = Annotated[Caller, Depends(require_caller)]


def viewers_read_only(request: Request, caller: CallerDep) -> None:
    if caller.at_least("operator") or request.method in READ_METHODS:
        return
    if request.method == "POST" and request.url.path.endswith(READER_POSTS):
        return
    raise HTTPException(403, f"{caller.identity} is a viewer: viewers may read, not "
                        f"change anything ({request.method} {request.url.path})")


def require_role(role: Role) -> Callable[[Caller], Caller]:
    def check(caller: CallerDep) -> Caller:
        if not caller.at_least(role):
            raise HTTPException(403, f"{caller.identity} has the {caller.role} role; this "
                                f"needs the {role} role")
        return caller

    return check


def speaking_as(caller: Caller, person: str | None, where: str) -> str:
    """Whom a request speaks as: the caller, or (project token only) the person it
    names (by default ``person:operator``, the UI's default name, as before people had
    tokens). A person's own token cannot speak for anyone else (403)."""
    if person is None:
        return DEFAULT_PERSON if caller.project_token else caller.identity
    if person == caller.identity:
        return person
    if caller.may_speak_as(person):
        return person
    raise HTTPException(403, f"{where}: {caller.identity} may send only as themselves, "
                        f"not as {person}")
