"""The command line on PostgreSQL: pointing a project at a server, clear one-line
errors for every way a connection can fail, and moving a project between SQLite and
PostgreSQL with ``wakeful store copy`` (there and back, nothing lost)."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest
from typer.testing import CliRunner

from wakeful.cli import app
from wakeful.store import open_store

runner = CliRunner()


def invoke(*args: str, store: str | None = None) -> tuple[int, str, str]:
    env = {"WAKEFUL_STORE_URL": store} if store else None
    result = runner.invoke(app, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def test_init_with_a_store_url_writes_it_into_the_project(tmp_path: Path, pg_url: str
                                                          ) -> None:
    folder = tmp_path / "team"
    done = subprocess.run([sys.executable, "-m", "wakeful", "init", str(folder),
                           "--store", pg_url], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert f"url: {pg_url}" in (folder / "wakeful.yaml").read_text()
    done = subprocess.run([sys.executable, "-m", "wakeful", "migrate", "-p", str(folder)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "is up to date" in done.stdout and "postgresql://" in done.stdout


@pytest.mark.parametrize(("change", "expected"), [
    (lambda url: url.replace(":5432/", ":1/"), "cannot reach the server"),
    (lambda url: url.split("?")[0] + "_missing", "does not exist; create it with"),
    (lambda url: re.sub(r"//[^@/]+@", "//nobody_here@", url), "user 'nobody_here' was refused"),
])
def test_a_bad_store_url_gives_one_clear_line(tmp_path: Path, pg_url: str,
                                              change: object, expected: str) -> None:
    assert callable(change)
    folder = tmp_path / "team"
    assert invoke("init", str(folder))[0] == 0
    code, _, err = invoke("status", "-p", str(folder), store=change(pg_url))
    assert code == 1
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert expected in lines[0] and "127.0.0.1:" in lines[0] and "database" in lines[0]
    assert "Traceback" not in err


def test_a_schema_newer_than_the_code_is_refused(tmp_path: Path, pg_url: str) -> None:
    folder = tmp_path / "team"
    assert invoke("init", str(folder))[0] == 0
    assert invoke("migrate", "-p", str(folder), store=pg_url)[0] == 0

    async def bump() -> None:
        conn = await asyncpg.connect(pg_url)
        try:
            await conn.execute("UPDATE wakeful_schema SET version = 99")
        finally:
            await conn.close()

    asyncio.run(bump())
    code, _, err = invoke("status", "-p", str(folder), store=pg_url)
    assert code == 1
    assert "schema version 99 is newer" in err and "upgrade wakeful" in err


async def _counts(url: str) -> dict[str, int]:
    store = open_store(url)
    await store.open()
    try:
        return {t: len((await store.export_rows(t))[1]) for t in await store.table_names()
                if t not in ("workers", "agent_leases", "resource_waiters")}
    finally:
        await store.close()


def test_a_project_moves_to_postgresql_and_back(tmp_path: Path, pg_url: str) -> None:
    folder = tmp_path / "team"
    assert invoke("init", str(folder))[0] == 0
    done = subprocess.run([sys.executable, "-m", "wakeful", "run", "-p", str(folder),
                           "--until-idle", "--plain"], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    source = str(folder / "wakeful.db")
    before = asyncio.run(_counts(source))
    assert before["tasks"] > 0 and before["mail"] > 0 and before["events"] > 0
    assert before["timers"] > 0
    code, out, err = invoke("store", "copy", source, pg_url)
    assert code == 0, err
    assert "Copied" in out
    moved = asyncio.run(_counts(pg_url))
    assert {t: n for t, n in moved.items() if n} == {t: n for t, n in before.items() if n}
    # a second copy into a store that holds rows is refused, whole
    code, _, err = invoke("store", "copy", source, pg_url)
    assert code == 1 and "already holds" in err
    back = tmp_path / "back.db"
    code, _, err = invoke("store", "copy", pg_url, str(back))
    assert code == 0, err
    returned = asyncio.run(_counts(str(back)))
    assert {t: n for t, n in returned.items() if n} == {t: n for t, n in before.items() if n}
    # the project runs on from the moved store: its tasks are all there
    code, out, err = invoke("tasks", "-p", str(folder), store=pg_url)
    assert code == 0, err
    assert "writer" in out


@pytest.mark.slow
def test_the_demo_runs_on_postgresql_from_a_fresh_start_each_time(tmp_path: Path,
                                                                  pg_url: str) -> None:
    for _ in range(2):  # the second run empties the store's tables first
        done = subprocess.run([sys.executable, "-m", "wakeful", "demo",
                               str(tmp_path / "demo"), "--store", pg_url],
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        assert "Tasks: 10 done." in done.stdout
    assert not (tmp_path / "demo" / "wakeful.db").exists()
