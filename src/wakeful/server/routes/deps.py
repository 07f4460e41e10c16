"""What every route needs: the runtime, and a caller who holds the token."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Query, Request

from wakeful.approvals.rules import ADMIN
from wakeful.runtime.runtime import Runtime
from wakeful.server.auth import bearer, token_matches


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def require_token(request: Request) -> None:
    """Every API call carries the token: ``Authorization: Bearer TOKEN``."""
    presented = bearer(request.headers.get("authorization"))
    if presented is None:
        raise HTTPException(401, "missing API token: send 'Authorization: Bearer TOKEN' (the "
                            "token is printed by `wakeful serve` and kept in "
                            ".wakeful/token)", headers={"WWW-Authenticate": "Bearer"})
    if not token_matches(request.app.state.token, presented):
        raise HTTPException(401, "wrong API token", headers={"WWW-Authenticate": "Bearer"})


async def current_person(request: Request) -> str:
    """Who calls the API, as a person address, for approvals and questions: the caller
    of the token presented (:func:`~wakeful.server.identity.require_caller`); any admin
    (the project token's holder, or a person with the admin role) acts as the admin,
    who may decide any approval. Viewers are refused changes before this is asked."""
    from wakeful.server.identity import require_caller

    caller = await require_caller(request)
    return ADMIN if caller.role == "admin" else caller.identity


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
CallerDep = Annotated[str, Depends(current_person)]
Limit = Annotated[int, Query(ge=1, le=1000, description="at most this many")]
