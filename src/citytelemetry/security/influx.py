"""InfluxDB 1.x least privilege: an admin for setup only, a write-only user for the pipeline, a read-only
user for dashboards. Runs InfluxQL through ``POST /query`` (an admin tool, so plain blocking HTTP).

With ``[http] auth-enabled = true`` and no user yet, InfluxDB lets anyone create the first admin; this
module does that once (``bootstrap_admin``), then acts as that admin. Passwords never appear in an error
message: the server's text is scrubbed of them, and statements are never echoed.
(InfluxDB 2.x/3.x: create a write-only token for the bucket with ``influx auth create --write-bucket``
and a read-only one with ``--read-bucket``; see docs/security.md.)
"""

from __future__ import annotations

import base64
import json
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from citytelemetry.security.errors import SecurityError

_USER = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
_DATABASE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
WRITER = "ct_writer"
READER = "ct_reader"
ADMIN = "ct_admin"


def quote_identifier(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(frozen=True, slots=True)
class Account:
    """A user and its password; the repr hides the password."""

    username: str
    password: str = field(repr=False)

    def __post_init__(self) -> None:
        if not _USER.fullmatch(self.username):
            raise SecurityError(f"InfluxDB username {self.username[:70]!r} must match {_USER.pattern}")
        if not self.password:
            raise SecurityError(f"InfluxDB user {self.username}: empty password")


class InfluxAdmin:
    """InfluxQL as one user over HTTP(S); certificate verification on (``ca_file`` pins a CA)."""

    __slots__ = ("_auth", "_context", "_secrets", "timeout_s", "url")

    def __init__(self, url: str, account: Account | None, *, ca_file: Path | None = None,
                 timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self._auth = None
        self._secrets: list[str] = []
        if account is not None:
            token = base64.b64encode(f"{account.username}:{account.password}".encode()).decode()
            self._auth = f"Basic {token}"
            self._secrets.append(account.password)
        self._context = (ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
                         if self.url.startswith("https:") else None)

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def query(self, statement: str, *, database: str | None = None, secrets: tuple[str, ...] = ()) -> list[Any]:
        """Run one statement; ``secrets`` (passwords inside it) are scrubbed from any error."""
        self._secrets.extend(secrets)
        try:
            return self._query(statement, database)
        finally:
            del self._secrets[len(self._secrets) - len(secrets):]

    def _query(self, statement: str, database: str | None) -> list[Any]:
        form = {"q": statement, **({"db": database} if database else {})}
        request = urllib.request.Request(f"{self.url}/query", data=urllib.parse.urlencode(form).encode(),  # noqa: S310
                                         method="POST")
        if self._auth:
            request.add_header("Authorization", self._auth)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s, context=self._context) as response:  # noqa: S310
                body = json.load(response)
        except urllib.error.HTTPError as exc:
            text = exc.read().decode(errors="replace")[:300]
            raise SecurityError(f"InfluxDB at {self.url} refused ({exc.code}): {self._scrub(text)}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise SecurityError(f"InfluxDB at {self.url} unreachable: {self._scrub(str(exc))}") from None
        results: list[Any] = body.get("results", [])
        for result in results:
            if "error" in result:
                raise SecurityError(f"InfluxDB at {self.url}: {self._scrub(str(result['error']))}")
        return results


def bootstrap_admin(url: str, admin: Account, *, ca_file: Path | None = None) -> bool:
    """Create the first admin if the server has no user yet; False if it already had one."""
    anonymous = InfluxAdmin(url, None, ca_file=ca_file)
    try:
        anonymous.query(f"CREATE USER {quote_identifier(admin.username)} WITH PASSWORD "
                        f"{quote_string(admin.password)} WITH ALL PRIVILEGES", secrets=(admin.password,))
    except SecurityError as exc:
        if "create admin user first" in str(exc) or "unable to parse authentication" in str(exc) \
                or "authorization failed" in str(exc) or "(401)" in str(exc) or "(403)" in str(exc):
            return False
        raise
    return True


def ensure_user(admin: InfluxAdmin, account: Account, *, grant: str | None, database: str) -> None:
    """Create ``account`` (or reset its password) and give it exactly ``grant`` (READ/WRITE) on ``database``."""
    if not _DATABASE.fullmatch(database):
        raise SecurityError(f"database name {database[:70]!r} must match {_DATABASE.pattern}")
    user, password = quote_identifier(account.username), quote_string(account.password)
    try:
        admin.query(f"CREATE USER {user} WITH PASSWORD {password}", secrets=(account.password,))
    except SecurityError as exc:
        if "user already exists" not in str(exc):
            raise
        admin.query(f"SET PASSWORD FOR {user} = {password}", secrets=(account.password,))
    db = quote_identifier(database)
    admin.query(f"REVOKE ALL PRIVILEGES ON {db} FROM {user}")
    if grant is not None:
        if grant not in {"READ", "WRITE"}:
            raise SecurityError(f"grant must be READ or WRITE, not {grant!r}")
        admin.query(f"GRANT {grant} ON {db} TO {user}")


@dataclass(frozen=True, slots=True)
class InfluxUsers:
    admin: Account
    writer: Account
    reader: Account


def setup_least_privilege(url: str, database: str, users: InfluxUsers, *, ca_file: Path | None = None) -> None:
    """Admin (created if the server has no user), the database, a write-only and a read-only user."""
    bootstrap_admin(url, users.admin, ca_file=ca_file)
    admin = InfluxAdmin(url, users.admin, ca_file=ca_file)
    admin.query(f"CREATE DATABASE {quote_identifier(database)}")
    ensure_user(admin, users.writer, grant="WRITE", database=database)
    ensure_user(admin, users.reader, grant="READ", database=database)
