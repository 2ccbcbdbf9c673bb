"""Mosquitto password and ACL files, generated from the inventory (mosquitto 2.0 formats), and the
listener lines that enforce them.

Each device account may only publish its own two topics; the pipeline account may read every
device's telemetry and status (also as a shared subscription) and publish dead letters; beside each
pipeline account, ``<account>-peers`` (same password) may read and write the partitioned members' site
tallies under ``<prefix>/members/`` (alerts/peerlink.py: a second connection, so its own account); an
optional operator account may read dead letters and status. Everything else is denied: mosquitto's ACL file
denies what no line grants, and anonymous clients are refused by ``allow_anonymous false``.

Client ids are bound to accounts by ``use_username_as_clientid true``: the broker replaces whatever id a
client sends with its username, before it looks for a session to take over. No account can then reach
another account's session: a device that sends the pipeline's client id gets its own id, and the
pipeline's connection and persistent session stay. Each pipeline member therefore has its own account,
named by its client id. Chosen over the dynamic-security plugin's per-client ``clientid`` because that
plugin (a) binds only the accounts it lists, so every account would need a second entry kept in step,
and one missing entry (a device added by ``security acl --reload``: mosquitto 2.0 reloads password and
ACL files on SIGHUP, not the plugin's file) leaves that account free to take any id, the pipeline's
included; (b) needs every client configured with the exact id, where here nothing on a device changes.
What it costs: a refused takeover is silent (the intruder just gets its own id; mosquitto logs
``as <username>``), and two connections of one account replace each other (as any binding would).

Password hashes are mosquitto's ``$7$`` (PBKDF2-SHA512, 101 iterations, 12-byte salt), the format
``mosquitto_passwd`` writes; computed here so 1,600 devices need no 1,600 subprocesses. The iteration
count is mosquitto's default; it matters little because the passwords are 256-bit random values.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from citytelemetry.security.errors import SecurityError
from citytelemetry.topics import STATUS, TELEMETRY

PBKDF2_ITERATIONS = 101
SALT_BYTES = 12
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # usernames and topic levels we write
_PREFIX = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")


def _safe(kind: str, value: str) -> str:
    """Refuse anything that could add a line, a wildcard or a field separator to a generated file."""
    if not _NAME.fullmatch(value):
        raise SecurityError(f"{kind} {value[:70]!r} is not [A-Za-z0-9][A-Za-z0-9_.-]{{0,63}}")
    return value


def hash_password(password: str, *, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS) -> str:
    """The ``$7$`` hash that mosquitto 2.0 checks passwords against."""
    salt = salt if salt is not None else os.urandom(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


@dataclass(frozen=True, slots=True)
class DeviceAccount:
    """A device's MQTT identity: username = device id; its topics follow from site and system."""

    device_id: str
    site: str
    system: str

    def topics(self, prefix: str) -> tuple[str, str]:
        base = f"{prefix}/{_safe('site', self.site)}/{_safe('system', self.system)}/{_safe('device', self.device_id)}"
        return f"{base}/{TELEMETRY}", f"{base}/{STATUS}"


PEERS_SUFFIX = "-peers"  # alerts/peerlink.py logs in with it


def peer_user(pipeline_user: str) -> str:
    """The account of a pipeline member's peer-tally connection (alerts/peerlink.py)."""
    return pipeline_user + PEERS_SUFFIX


@dataclass(frozen=True, slots=True)
class BrokerAccess:
    """Who may do what on the broker; renders both files."""

    prefix: str
    pipeline_users: tuple[str, ...]
    devices: tuple[DeviceAccount, ...]
    operator_users: tuple[str, ...] = ()
    gateway_users: tuple[str, ...] = ()  # may publish telemetry and status for every device of the sites

    def __post_init__(self) -> None:
        if not _PREFIX.fullmatch(self.prefix):
            raise SecurityError(f"topic prefix {self.prefix!r} is not a plain topic path")
        names = [*self.pipeline_users, *self.peer_users, *self.operator_users, *self.gateway_users,
                 *(d.device_id for d in self.devices)]
        for name in names:
            _safe("username", name)
        if len(set(names)) != len(names):
            dupes = sorted({n for n in names if names.count(n) > 1})
            raise SecurityError(f"usernames used twice (a device id equal to a service account?): {dupes[:5]}")

    @property
    def peer_users(self) -> tuple[str, ...]:
        return tuple(peer_user(user) for user in self.pipeline_users)

    def usernames(self) -> list[str]:
        return [*self.pipeline_users, *self.peer_users, *self.operator_users, *self.gateway_users,
                *(d.device_id for d in self.devices)]

    def acl(self) -> str:
        p = self.prefix
        out = ["# Generated by `citytelemetry security acl` from the inventory; do not edit: regenerate.",
               "# What no line grants is denied. Anonymous clients are refused (allow_anonymous false).", ""]
        for user in self.pipeline_users:
            out += ["# pipeline: reads device telemetry and status (plain or $share), publishes dead letters",
                    f"user {user}"]
            for kind in (TELEMETRY, STATUS):
                out += [f"topic read {p}/+/+/+/{kind}", f"topic read $share/+/{p}/+/+/+/{kind}"]
            out += [f"topic write {p}/deadletter/#", ""]
        for user in self.peer_users:
            out += ["# pipeline member's peer connection: partitioned members' site tallies (alerts/peerlink.py)",
                    f"user {user}", f"topic read {p}/members/#", f"topic write {p}/members/#", ""]
        for user in self.operator_users:
            out += ["# operator: watches dead letters and device status", f"user {user}",
                    f"topic read {p}/deadletter/#", f"topic read {p}/+/+/+/{STATUS}", ""]
        sites = sorted({device.site for device in self.devices})
        for user in self.gateway_users:
            out += ["# gateway: speaks for the devices of its sites (a field gateway, or the district simulator,",
                    "# whose one process cannot hold a connection per device); the pipeline still checks identity",
                    f"user {user}"]
            out += [f"topic write {p}/{site}/+/+/{kind}" for site in sites for kind in (TELEMETRY, STATUS)]
            out += [""]
        for device in self.devices:
            telemetry, status = device.topics(p)
            out += [f"user {device.device_id}", f"topic write {telemetry}", f"topic write {status}", ""]
        return "\n".join(out)


def password_file(entries: Iterable[tuple[str, str]]) -> str:
    """``username:$7$...`` lines; ``entries`` are (username, plain password) pairs."""
    return "".join(f"{_safe('username', user)}:{hash_password(password)}\n" for user, password in entries)


def listener_access(password_file: Path, acl_file: Path) -> str:
    """The lines that lock a mosquitto 2.0 listener down: they follow its ``listener`` line (with
    ``per_listener_settings false``, the first three are global and the fourth belongs to the listener)."""
    return "\n".join(["allow_anonymous false", f"password_file {password_file}", f"acl_file {acl_file}",
                      "use_username_as_clientid true"])


_RANGE = re.compile(r"^(?P<head>[A-Za-z0-9_.-]*)\{(?P<first>[0-9]{1,4})\.\.(?P<last>[0-9]{1,4})\}"
                    r"(?P<tail>[A-Za-z0-9_.-]*)$")
MAX_MEMBERS = 256


def expand_members(specs: Iterable[str]) -> list[str]:
    """Pipeline member names: each spec is a name or ``head{1..N}tail`` (``citytelemetry-{1..4}``)."""
    names: list[str] = []
    for spec in specs:
        match = _RANGE.fullmatch(spec)
        if match is None:
            names.append(_safe("pipeline member", spec))
            continue
        first, last = int(match["first"]), int(match["last"])
        if not first <= last < first + MAX_MEMBERS:
            raise SecurityError(f"pipeline member range {spec!r}: expected {{first..last}}, at most {MAX_MEMBERS}")
        names += [_safe("pipeline member", f"{match['head']}{k}{match['tail']}") for k in range(first, last + 1)]
    return names
