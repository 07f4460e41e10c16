"""``wakeful mail send --body-file PATH`` (or ``-`` for standard input): a long body
need not fit on a command line; unreadable or non-UTF-8 input is a one-line error."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from wakeful.cli import app

runner = CliRunner()


def invoke(*args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), input=stdin)
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "team"
    assert invoke("init", str(folder))[0] == 0
    return folder


def _body_of(project: Path, out: str) -> str:
    mail_id = re.search(r"m_\w+", out).group(0)  # type: ignore[union-attr]
    code, shown, err = invoke("mail", "show", mail_id, "-p", str(project))
    assert code == 0, err
    return shown


def test_the_body_comes_from_a_file_or_standard_input(project: Path, tmp_path: Path) -> None:
    p = ["-p", str(project)]
    letter = tmp_path / "letter.md"
    letter.write_text("Dear researcher,\n\nline two — ünïcode\n", encoding="utf-8")
    code, out, err = invoke("mail", "send", "researcher", "--body-file", str(letter), *p)
    assert code == 0, err
    assert "line two — ünïcode" in _body_of(project, out)
    code, out, err = invoke("mail", "send", "researcher", "-f", "-", *p,
                            stdin=b"from a pipe\nsecond line\n")
    assert code == 0, err
    assert "from a pipe\nsecond line" in _body_of(project, out)


def test_bad_body_files_are_one_line_errors(project: Path, tmp_path: Path) -> None:
    p = ["-p", str(project)]
    code, _, err = invoke("mail", "send", "researcher", "-f", str(tmp_path / "nope.txt"), *p)
    assert code == 1 and "cannot read" in err and "nope.txt" in err
    binary = tmp_path / "latin1.txt"
    binary.write_bytes("caf\xe9".encode("latin-1"))
    code, _, err = invoke("mail", "send", "researcher", "-f", str(binary), *p)
    assert code == 1 and "is not UTF-8 text" in err
    code, _, err = invoke("mail", "send", "researcher", "both", "-f", str(binary), *p)
    assert code == 1 and "not both" in err
    big = tmp_path / "big.txt"
    big.write_text("x" * 100_000)
    code, _, err = invoke("mail", "send", "researcher", "-f", str(big), *p)
    assert code == 1 and "max_body_chars" in err
    assert len(err.strip().splitlines()) == 1


def test_arguments_that_are_not_utf8_are_one_line_errors(project: Path) -> None:
    """Bytes that are not UTF-8 on the command line reach Python as lone surrogates."""
    p = ["-p", str(project)]
    for args in (("mail", "send", "researcher", "caf\udce9"),
                 ("channel", "create", "ops", "--topic", "caf\udce9")):
        code, _, err = invoke(*args, *p)
        assert code == 1 and "lone surrogate" in err, (args, err)
        assert len(err.strip().splitlines()) == 1
