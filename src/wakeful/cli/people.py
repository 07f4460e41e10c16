"""``wakeful people add|list|remove``: people with their own login and a role.

A person's token is made here, printed once inside their login link, and stored only
as its hash: it cannot be shown again (remove and add the person to give a new one).
These commands read and write the store, beside a running server or not; a removed
person's token stops working at once.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from wakeful.cli.common import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    ProjectOption,
    fail,
    open_project,
    out,
    run_async,
    with_store,
)
from wakeful.core.people import ROLES, Person, check_person_name, check_role, hash_token
from wakeful.store import Store
from wakeful.store.people import people_store

people_app = typer.Typer(help="People: their own login link and a role (viewer, operator, "
                         "admin).", no_args_is_help=True)


@people_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="Their name: 'ada' (they are person:ada).")],
    role: Annotated[str, typer.Option(help=f"One of: {', '.join(ROLES)}.")] = "operator",
    url: Annotated[str, typer.Option(help="The web UI's address, for the link.")] = (
        f"http://{DEFAULT_HOST}:{DEFAULT_PORT}/"),
    project: ProjectOption = Path("."),
) -> None:
    """Add a person and print their login link (once: only a hash is kept)."""
    try:
        bare, checked = check_person_name(name), check_role(role)
    except ValueError as exc:
        raise fail(str(exc)) from None
    loaded = open_project(project)
    token = secrets.token_urlsafe(32)

    async def store(s: Store) -> None:
        await people_store(s).add(Person(bare, checked, created_by="cli"), hash_token(token))

    run_async(lambda: with_store(loaded, store))
    link = url.rstrip("/") + "/#token=" + token
    out.print(f"Added [bold]person:{escape(bare)}[/] ({checked}). Their login link, shown "
              f"this once:\n  {escape(link)}", highlight=False, soft_wrap=True)


@people_app.command("list")
def list_people(project: ProjectOption = Path(".")) -> None:
    """Everyone with a login of their own, and their role."""
    loaded = open_project(project)
    people = run_async(lambda: with_store(loaded, lambda s: people_store(s).list()))
    if not people:
        out.print("No people yet (the project token is the admin's): "
                  "wakeful people add NAME --role operator", highlight=False)
        return
    for person in people:
        out.print(f"person:{escape(person.name)}  {person.role}", highlight=False)


@people_app.command("remove")
def remove(
    name: Annotated[str, typer.Argument(help="Their name.")],
    project: ProjectOption = Path("."),
) -> None:
    """Remove a person: their token stops working at once."""
    loaded = open_project(project)
    bare = name.removeprefix("person:")
    removed = run_async(lambda: with_store(loaded, lambda s: people_store(s).remove(bare)))
    if not removed:
        raise fail(f"no person named {bare!r} (see: wakeful people list)")
    out.print(f"Removed person:{escape(bare)}; their token no longer works.", highlight=False)
