"""The API token: one secret per project, required on every API call and the stream.

The token is made on the first ``wakeful serve`` (``secrets.token_urlsafe``), kept in
the project folder (``.wakeful/token``, readable by its owner only) so that a restart
keeps the UI logged in, and printed once with the URL. Anyone on the machine who can
read the project folder can use the API; nobody else can. A non-loopback address is
refused unless a token already exists (a file, or ``--token``): a server reachable from
the network must never start with a secret that nobody has chosen to hand out.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from wakeful.errors import WakefulError

TOKEN_FILE = Path(".wakeful") / "token"
MIN_TOKEN_CHARS = 16


@dataclass(frozen=True, slots=True)
class Token:
    value: str
    path: Path | None  # where it is kept; None when given on the command line
    created: bool  # made just now (print it once)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_token(value: str, where: str) -> str:
    value = value.strip()
    if len(value) < MIN_TOKEN_CHARS:
        raise WakefulError(f"the API token from {where} is {len(value)} characters; use at "
                           f"least {MIN_TOKEN_CHARS} (e.g. python -c 'import secrets; "
                           "print(secrets.token_urlsafe())')")
    return value


def load_or_create_token(project_dir: Path, host: str, given: str | None = None) -> Token:
    """The token for a server on ``host``: ``given``, the project's, or a new one.

    A new one is made only for a loopback address; anything else is refused with a
    clear error, so a server open to the network never has a token nobody chose.
    """
    if given is not None:
        return Token(check_token(given, "--token"), None, False)
    path = project_dir / TOKEN_FILE
    if path.exists():
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise WakefulError(f"cannot read the API token at {path}: {exc}") from None
        return Token(check_token(text, str(path)), path, False)
    if not is_loopback(host):
        raise WakefulError(
            f"refusing to serve on {host}, which is not a loopback address, without a token: "
            f"pass --token, or create {path} (serve once on 127.0.0.1 to have one made)")
    value = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(value + "\n")
    return Token(value, path, True)


def token_matches(expected: str, presented: str | None) -> bool:
    """Constant-time comparison, so the token cannot be guessed by timing."""
    return presented is not None and secrets.compare_digest(
        expected.encode(), presented.encode())


def bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None
