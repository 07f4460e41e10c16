"""The people family port: who may use the API, with which role, by which token.

Contracts: every awaited write is durable on return; a token is stored only as its
hash (:func:`wakeful.core.people.hash_token`), so reading the store never reveals one;
names are unique (adding a name twice is an error naming it); reads see this process's
own writes.
"""

from __future__ import annotations

from typing import Protocol

from wakeful.core.people import Person
from wakeful.store.base import Store
from wakeful.store.family import find_family

_BACKENDS = {"wakeful.store.sqlite": "wakeful.store.sqlite.people:SQLitePeopleStore",
             "wakeful.store.postgres": "wakeful.store.postgres.people:PgPeopleStore"}


class PeopleStore(Protocol):
    async def add(self, person: Person, token_hash: str) -> None:
        """Store a new person with the hash of their token; WakefulError if the name
        is taken."""

    async def remove(self, name: str) -> bool:
        """Forget a person (their token stops working at once); False if unknown."""

    async def get(self, name: str) -> Person | None: ...

    async def list(self) -> list[Person]:
        """Everyone, by name."""

    async def by_token(self, token_hash: str) -> Person | None:
        """The person whose token hashes to ``token_hash``, if any."""


def people_store(store: Store) -> PeopleStore:
    """The people family of ``store``."""
    family: PeopleStore = find_family(store, _BACKENDS, "people with their own tokens")
    return family
