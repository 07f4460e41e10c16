"""``wakeful mail`` and ``wakeful channel``, and mail from the CLI reaching a running
runtime in another process."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from wakeful.cli import app
from wakeful.mailbox import Mailbox
from wakeful.project.definitions import MailboxConfig
from wakeful.store.sqlite import SQLiteStore
from wakeful.store.sqlite.mail import SQLiteMailStore

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "team"
    assert invoke("init", str(folder))[0] == 0
    return folder


def test_channels_from_the_command_line(project: Path) -> None:
    p = ("-p", str(project))
    code, out, err = invoke("channel", "create", "launch", "-m", "coordinator", "-m", "writer",
                            "-m", "person:ada", "--topic", "the launch", *p)
    assert code == 0 and "Created #launch with 3 members" in out, err
    code, out, _ = invoke("channel", "add", "launch", "researcher", "writer", *p)
    assert code == 0 and "Added researcher to #launch" in out
    code, out, _ = invoke("channel", "post", "launch", "Kick-off at 10", "--from",
                          "person:ada", *p)
    assert code == 0 and "(3 agents)" in out
    code, out, _ = invoke("channel", "history", "launch", "--as", "writer", *p)
    assert code == 0 and "1 post, 1 unread" in out and "person:ada: Kick-off at 10" in out
    code, out, _ = invoke("channel", "history", "launch", "--as", "writer", *p)
    assert "unread" not in out  # reading moved writer's cursor, and only writer's
    code, out, _ = invoke("channel", "history", "launch", "--as", "researcher", *p)
    assert "1 unread" in out
    code, out, _ = invoke("channel", "list", *p)
    assert "#launch" in out and "the launch" in out
    code, _, err = invoke("channel", "history", "launch", "--as", "monitor", *p)
    assert code == 1 and "'monitor' is not a member of #launch" in err
    code, _, err = invoke("channel", "post", "launch", "hi", "--from", "person:bob", *p)
    assert code == 1 and "not a member" in err and "refused and recorded" in err
    code, _, err = invoke("channel", "create", "launch", *p)
    assert code == 1 and "already exists" in err
    code, out, _ = invoke("channel", "remove", "launch", "writer", *p)
    assert code == 0 and "Removed writer" in out


def test_mail_send_list_show_and_bad_input(project: Path) -> None:
    p = ("-p", str(project))
    code, out, err = invoke("mail", "send", "researcher", "Find three sources", "-s", "sources",
                            "--payload", '{"topic": "agents"}', "--key", "ask-1", *p)
    assert code == 0, err
    mail_id = out.split("Sent mail ")[1].split()[0]
    code, out, _ = invoke("mail", "send", "researcher", "again", "--key", "ask-1", *p)
    assert code == 0 and f"Sent mail {mail_id}" in out and "duplicate" in out
    code, out, _ = invoke("mail", "list", "--to", "researcher", *p)
    assert code == 0 and mail_id in out and "pending" in out and "Mail (1)" in out
    code, out, _ = invoke("mail", "show", mail_id, *p)
    assert code == 0 and "Find three sources" in out and '"topic": "agents"' in out
    assert "researcher" in out and "pending" in out

    for args, message in [
        (("mail", "send", "nobody", "hi"), "unknown agent 'nobody'"),
        (("mail", "send", "researcher", "hi", "--payload", "{oops"), "--payload is not valid"),
        (("mail", "send", "researcher", "hi", "--priority", "asap"), "field 'priority'"),
        (("mail", "send", "Researcher!", "hi"), "is not a valid address"),
        (("mail", "show", "m_nope"), "no mail with id 'm_nope'"),
        (("mail", "list", "--status", "lost"), "--status 'lost'"),
    ]:
        code, _, err = invoke(*args, *p)
        assert code == 1 and message in err, (args, err)
        assert "Traceback" not in err

    (project / "wakeful.yaml").write_text("name: t\nmailbox:\n  max_body_chars: 10\n")
    code, _, err = invoke("mail", "send", "researcher", "far too long a message", *p)
    assert code == 1 and "the limit is 10 (mailbox.max_body_chars)" in err
    (project / "wakeful.yaml").write_text("name: t\nmailbox:\n  visibilty_timeout_s: 3\n")
    code, _, err = invoke("mail", "list", *p)
    assert code == 1 and "mailbox.visibilty_timeout_s" in err


def test_dead_letters_can_be_listed_and_retried(project: Path) -> None:
    async def make_dead_letter() -> str:
        store = SQLiteStore(project / "wakeful.db")
        await store.open()
        mailbox = Mailbox(SQLiteMailStore(store), MailboxConfig(max_deliveries=2),
                          agents=lambda: {"writer"})
        await mailbox.open()
        sent = await mailbox.send("person:ada", "writer", "unhandled", "nobody acks me")
        for _ in range(2):
            mailbox.nack(await mailbox.receive("writer", timeout=5), "handler crashed")
        await mailbox.close()
        await store.close()
        return sent.id

    mail_id = asyncio.run(make_dead_letter())
    p = ("-p", str(project))
    code, out, _ = invoke("mail", "dead-letters", *p)
    assert code == 0 and mail_id in out and "handler crashed; gave up after 2" in out
    code, out, _ = invoke("mail", "retry", mail_id, *p)
    assert code == 0 and "delivered again (1 mailbox)" in out
    code, out, _ = invoke("mail", "dead-letters", *p)
    assert "No dead letters" in out
    with sqlite3.connect(project / "wakeful.db") as conn:
        assert conn.execute("SELECT status, attempts FROM mail_deliveries").fetchall() == [
            ("pending", 0)]
    code, _, err = invoke("mail", "retry", mail_id, *p)
    assert code == 1 and "not in a dead-letter box" in err


@pytest.mark.slow
def test_mail_sent_from_the_cli_wakes_a_task_in_a_running_runtime(tmp_path: Path) -> None:
    (tmp_path / "agents").mkdir()
    (tmp_path / "scripts").mkdir()
    (tmp_path / "wakeful.yaml").write_text(
        "name: cli-mail\npoll_interval_s: 0.1\nstartup_tasks:\n"
        "  - {agent: listener, instruction: wait for orders}\n")
    (tmp_path / "agents" / "listener.yaml").write_text(
        "name: listener\nmodel: scripted:listener\ntools: [check_mail]\n")
    (tmp_path / "scripts" / "listener.yaml").write_text(
        "scripts:\n  - steps:\n"
        "      - say: waiting\n"
        "        tool_calls: [{tool: check_mail, args: {sender: 'person:ada', wait_s: 30, "
        "ack: true}}]\n"
        "      - say: 'got {last_tool_result}'\n")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "wakeful"]
    proc = subprocess.Popen([*cmd, "run", "--until-idle", "--plain", "-p", str(tmp_path)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        db = tmp_path / "wakeful.db"
        deadline = time.monotonic() + 30
        while True:  # until the task waits for its mail
            assert time.monotonic() < deadline and proc.poll() is None
            if db.exists():
                with sqlite3.connect(db) as conn:
                    try:
                        if conn.execute("SELECT state FROM tasks").fetchall() == [
                                ("waiting",)]:
                            break
                    except sqlite3.OperationalError:
                        pass
            time.sleep(0.05)
        sent = subprocess.run([*cmd, "mail", "send", "listener", "ship it", "--from",
                               "person:ada", "-p", str(tmp_path)], env=env,
                              capture_output=True, text=True, timeout=30)
        assert sent.returncode == 0, sent.stderr
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Tasks: 1 done." in out
    with sqlite3.connect(tmp_path / "wakeful.db") as conn:
        [(result,)] = conn.execute("SELECT result FROM tasks").fetchall()
        assert conn.execute("SELECT status FROM mail_deliveries").fetchall() == [("acked",)]
    got = json.loads(result.removeprefix("got "))
    assert got["mail"][0]["body"] == "ship it" and got["mail"][0]["from"] == "person:ada"


def test_channels_in_wakeful_yaml_exist_when_the_project_runs(project: Path) -> None:
    (project / "wakeful.yaml").write_text(
        "name: t\nmailbox:\n  log_every_send: true\n  channels:\n"
        "    - {name: helpers, members: [researcher, writer, ghost, person:ada], "
        "topic: ask here}\n")
    code, out, err = invoke("run", "-p", str(project), "--until-idle", "--plain")
    assert code == 0, err
    assert "mailbox.channels.0.members" in err and "unknown agent 'ghost'" in err
    code, out, _ = invoke("channel", "list", "-p", str(project))
    assert "#helpers" in out and "ask here" in out and "ghost" not in out
    code, out, _ = invoke("channel", "post", "helpers", "anyone?", "--from", "person:ada",
                          "-p", str(project))
    assert code == 0 and "(2 agents)" in out
    with sqlite3.connect(project / "wakeful.db") as conn:  # log_every_send: in the log too
        sent = [json.loads(data) for (data,) in conn.execute(
            "SELECT data FROM events WHERE type = 'mail.sent'").fetchall()]
    # (The example team's monitor may have mailed too, if its schedule fired in the run.)
    [post] = [data for data in sent if data["to"] == "#helpers"]
    assert post["deliveries"] == 2
    code, _, err = invoke("channel", "post", "helpers", "x", "--from", "person:bob",
                          "-p", str(project))
    assert code == 1 and "not a member of #helpers" in err
