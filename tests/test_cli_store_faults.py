"""Every command that writes to the store answers a store that cannot take writes with
one clear line and a non-zero exit, never a traceback nor a hang (issue 16: `wakeful
mail send` printed a traceback on a full disk; since the store holds writes through an
outage, a command would otherwise wait forever).

The faults are real: a 2 MB tmpfs filled to the last block, the store's file behind a
read-only bind mount, the whole file system remounted read-only, and a PostgreSQL URL
to a port where nothing listens. The commands run as subprocesses, as a person would
run them. Mounting needs root: without it these tests fail, loudly, rather than skip.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from wakeful.cli import app

HANG_GUARD_S = 300  # not a speed bound: only a command that hangs (the bug) reaches it
COMMANDS: list[list[str]] = [  # every command that writes, each against the fault
    ["mail", "send", "researcher", "hello"],
    ["channel", "create", "news", "-m", "writer"],
    ["channel", "post", "ops", "a post"],
    ["channel", "add", "ops", "coordinator"],
    ["channel", "remove", "ops", "writer"],
    ["channel", "history", "ops", "--as", "person:operator"],
    ["start-task", "writer", "Write a haiku"],
    ["control", "pause", "writer", "--reason", "fault test"],
    ["agent", "create", "zed", "--role", "a helper"],
    ["agent", "update", "kit", "--role", "another role"],
    ["agent", "remove", "kit"],
    ["people", "add", "ada"],
    ["people", "remove", "bob"],
    ["run", "--until-idle", "--plain"],
]
# One of each kind of write (mail, a task, a control action, an agent, the runtime):
# the faults after the first (the full disk, which runs them all) run only these.
SAMPLE = [COMMANDS[0], COMMANDS[6], COMMANDS[7], COMMANDS[8], COMMANDS[-1]]
OPENING = [["migrate"], ["tasks"]]  # write nothing to a store that is up to date, but
# opening it on a full disk or a read-only file system fails the same clear way


def wakeful(*args: str, project: Path | None = None, store: str | None = None
            ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("WAKEFUL_STORE_URL", None)
    if store is not None:
        env["WAKEFUL_STORE_URL"] = store
    where = ["-p", str(project)] if project is not None else []
    try:
        return subprocess.run([sys.executable, "-m", "wakeful", *args, *where], env=env,
                              capture_output=True, text=True, timeout=HANG_GUARD_S,
                              check=False)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"`wakeful {' '.join(args)}` hung on the faulty store "
                             f"(stderr so far: {exc.stderr!r})") from None


def ok(*args: str, project: Path) -> str:
    """Run a command that must work, in this process (setting up and checking; the
    commands under test run as subprocesses)."""
    done = CliRunner().invoke(app, [*args, "-p", str(project)], env={"COLUMNS": "200"})
    assert done.exit_code == 0, f"wakeful {' '.join(args)}: {done.output}"
    return done.output


def one_clear_line(done: subprocess.CompletedProcess[str], command: list[str],
                   *expected: str) -> str | None:
    """What is wrong with how ``command`` failed, or None when it failed as it should:
    a non-zero exit, no traceback, and exactly one ``error:`` line naming the fault."""
    name = " ".join(command)
    if done.returncode == 0:
        return f"{name}: exited 0 on a faulty store: {done.stdout[-300:]!r}"
    if "Traceback" in done.stderr + done.stdout:
        return f"{name}: printed a traceback: {done.stderr[-600:]}"
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    if len(errors) != 1 or len(lines) != 1:
        return f"{name}: expected one error line on stderr, got {lines!r}"
    missing = [text for text in expected if text not in errors[0]]
    return f"{name}: {errors[0]!r} does not say {missing}" if missing else None


def check_all(project: Path, *expected: str, store: str | None = None,
              also: list[list[str]] | None = None,
              commands: list[list[str]] = COMMANDS) -> None:
    problems = [problem for command in commands + (also or [])
                if (problem := one_clear_line(wakeful(*command, project=project, store=store),
                                              command, *expected)) is not None]
    assert not problems, "\n".join(problems)


def mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:  # no root, no mount: say so, do not skip
        pytest.fail(f"these tests need to mount (run them as root): mount {' '.join(args)}: "
                    f"{done.stderr.strip()}")


def unmount(path: Path) -> None:
    if subprocess.run(["umount", str(path)], capture_output=True, check=False).returncode:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A real, small file system (2 MB of tmpfs), unmounted afterwards."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mount("-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder))
    try:
        yield folder
    finally:
        unmount(folder)


def fill(disk: Path, leave: int = 0) -> Path:
    """Fill the file system until only ``leave`` bytes are free (0: full)."""
    filler = disk / "filler"
    with filler.open("ab") as handle:
        for chunk in (65536, 4096, 512, 1):
            with contextlib.suppress(OSError):
                while free(disk) - chunk >= leave:
                    handle.write(b"\0" * chunk)
                    handle.flush()
    return filler


def free(disk: Path) -> int:
    stats = os.statvfs(disk)
    return stats.f_bavail * stats.f_frsize


def team(disk: Path) -> Path:
    """A project on ``disk`` with what the commands above act on: a channel ``ops``
    (the operator and the writer in it), an agent ``kit`` made at run time, a person
    ``bob``."""
    project = disk / "team"
    assert CliRunner().invoke(app, ["init", str(project)]).exit_code == 0
    ok("channel", "create", "ops", "-m", "writer", "-m", "person:operator", project=project)
    ok("agent", "create", "kit", "--role", "a helper", project=project)
    ok("people", "add", "bob", project=project)
    return project


def mail_subjects(project: Path, subject: str) -> int:
    """How many mails with ``subject`` the store holds (as `wakeful mail list` shows)."""
    return len(re.findall(re.escape(subject), ok("mail", "list", "--limit", "1000",
                                                 project=project)))


def test_a_full_disk_gives_one_clear_line_for_every_writing_command(disk: Path) -> None:
    project = team(disk)
    fill(disk)
    assert free(disk) == 0
    check_all(project, str(project / "wakeful.db"), "no space left", also=OPENING)
    # init writes the project folder itself: the same kind of line
    done = wakeful("init", str(disk / "other"))
    assert one_clear_line(done, ["init"], str(disk / "other"), "no space left") is None


def test_mail_refused_by_a_full_disk_is_not_half_written_and_goes_once_after(
        disk: Path, tmp_path: Path) -> None:
    """The disk has room to open the store, not for the mail: the send fails with one
    line and leaves nothing; once there is room the same send goes, exactly once."""
    project = team(disk)
    body = tmp_path / "body.txt"
    body.write_text("words " * 10_000)  # 60,000 characters: more than the disk has left
    filler = fill(disk, leave=80 * 1024)  # the SQLite shared memory (32 KB) still fits
    send = ["mail", "send", "researcher", "--body-file", str(body), "-s", "once-only"]
    done = wakeful(*send, project=project)
    problem = one_clear_line(done, send, str(project / "wakeful.db"), "cannot take writes",
                             "disk is full", "run it again")
    assert problem is None, problem
    filler.unlink()  # room again
    assert mail_subjects(project, "once-only") == 0  # nothing half-written
    assert wakeful(*send, project=project).returncode == 0
    assert mail_subjects(project, "once-only") == 1


def test_a_read_only_store_file_gives_one_clear_line_and_loses_nothing(disk: Path) -> None:
    """The store's file made read-only (a read-only bind mount over it: chmod does not
    stop root): SQLite opens it, and each write is refused."""
    project = team(disk)
    store_file = project / "wakeful.db"
    mount("--bind", str(store_file), str(store_file))
    try:
        mount("-o", "remount,ro,bind", str(store_file))
        check_all(project, str(store_file), "cannot take writes", "readonly", "read-only",
                  commands=SAMPLE)
        assert "ops" in ok("channel", "list", project=project)  # reading still works
    finally:
        unmount(store_file)
    assert mail_subjects(project, "hello") == 0  # none of the refused sends landed
    ok("mail", "send", "researcher", "hi", "-s", "sent-once", project=project)
    assert mail_subjects(project, "sent-once") == 1


def test_a_read_only_file_system_gives_one_clear_line(disk: Path) -> None:
    project = team(disk)
    mount("-o", "remount,ro", str(disk))
    check_all(project, str(project / "wakeful.db"), "read-only file system", also=OPENING,
              commands=SAMPLE)
    done = wakeful("init", str(disk / "other"))
    assert one_clear_line(done, ["init"], str(disk / "other"), "read-only") is None


@pytest.fixture
def dead_port() -> Iterator[int]:
    """A port where nothing listens: bound (so nothing else takes it), never listening,
    so a connection to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def test_postgresql_down_gives_one_clear_line_for_every_writing_command(
        tmp_path: Path, dead_port: int) -> None:
    project = tmp_path / "team"
    assert CliRunner().invoke(app, ["init", str(project)]).exit_code == 0
    url = f"postgresql://postgres@127.0.0.1:{dead_port}/wakeful"
    check_all(project, f"127.0.0.1:{dead_port}", "cannot reach the server", store=url,
              also=OPENING, commands=SAMPLE)


def test_store_copy_into_a_full_disk_is_one_clear_line(disk: Path, tmp_path: Path) -> None:
    source = tmp_path / "team"
    assert CliRunner().invoke(app, ["init", str(source)]).exit_code == 0
    ok("start-task", "writer", "Write a haiku", project=source)
    fill(disk)
    target = disk / "copy.db"
    done = wakeful("store", "copy", str(source / "wakeful.db"), str(target))
    problem = one_clear_line(done, ["store", "copy"], str(target), "no space left")
    assert problem is None, problem
