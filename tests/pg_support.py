"""PostgreSQL for tests: the run's database (``WAKEFUL_TEST_PG_URL``, made fresh by
``.ci/run``), or, locally, a fresh database on the server at 127.0.0.1:5432.

Each test gets a schema of its own in that database (the store URL carries
``?search_path=...``), so tests never see each other's rows. PostgreSQL is required:
a missing server fails the tests that need it, loudly, never skips them.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import pytest

LOCAL_SERVER = "postgresql://postgres@127.0.0.1:5432"


def _server_and_db() -> tuple[str, str, bool]:
    given = os.environ.get("WAKEFUL_TEST_PG_URL")
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if given:
        server, _, database = given.rpartition("/")
        if worker:
            # One database per pytest worker, made and dropped here: reads that follow a
            # commit-ordered position wait for every older transaction in their
            # database, so workers sharing one would hold back each other's reads.
            return server, f"{database}_{worker}", True
        return server, database, False
    return LOCAL_SERVER, f"wakeful_test_{os.getpid()}_{uuid.uuid4().hex[:6]}", True


async def _admin(server: str, sql: str) -> None:
    try:
        conn = await asyncpg.connect(f"{server}/postgres", timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"PostgreSQL at {server} is required by these tests and cannot be "
                    f"reached ({exc}); start it (see .ci/run) or set WAKEFUL_TEST_PG_URL")
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """The URL of this test session's database."""
    server, database, made = _server_and_db()
    if made:
        _run(_admin(server, f'CREATE DATABASE "{database}"'))
    yield f"{server}/{database}"
    if made:
        _run(_admin(server, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))


def _run(work: Coroutine[Any, Any, None]) -> None:
    """Run ``work`` on a loop of its own (the fixture may be reached from inside one)."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, work).result()


async def _execute(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
def pg_url(pg_database: str) -> Iterator[str]:
    """A store URL on a fresh schema of the session's database (a plain fixture, so
    async fixtures can ask for it with ``request.getfixturevalue``)."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    _run(_execute(pg_database, f"CREATE SCHEMA {schema}"))
    yield f"{pg_database}?search_path={schema}"
    _run(_execute(pg_database, f"DROP SCHEMA {schema} CASCADE"))


@pytest.fixture
def own_pg_server(tmp_path: Path) -> Iterator[str]:
    """A PostgreSQL server of this test's own (a throwaway Debian cluster on a free
    port, trust auth), for a test that restarts its server: restarting the shared one
    would cut off every other user of it (other tests, other sessions). Dropped after.
    Needs pg_createcluster (Debian's postgresql-common) and root: fails, never skips."""
    import shutil
    import socket
    import subprocess

    if shutil.which("pg_createcluster") is None:
        pytest.fail("this test needs pg_createcluster (Debian's postgresql-common)")
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    name = f"wakeful_{os.getpid()}_{uuid.uuid4().hex[:6]}"

    def run(*command: str) -> None:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            pytest.fail(f"{' '.join(command)}: {done.stderr.strip() or done.stdout.strip()}")

    run("pg_createcluster", version, name, "-p", str(port), "--",
        "--auth-local=trust", "--auth-host=trust")
    try:
        run("pg_ctlcluster", "--skip-systemctl-redirect", version, name, "start")
        server = f"postgresql://postgres@127.0.0.1:{port}"
        _run(_admin(server, 'CREATE DATABASE "chaos"'))
        yield f"{server}/chaos"
    finally:
        subprocess.run(["pg_dropcluster", "--stop", version, name], capture_output=True,
                       check=False)
