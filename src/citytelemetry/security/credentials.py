"""Per-device and per-service credentials, derived from one local secret so nothing secret is committed.

    password = base64url(HMAC-SHA256(secret, "citytelemetry/<realm>/<name>/<generation>"))

The secret is 32 random bytes in a file of mode 0600 (``<run_dir>/security/secret`` by default);
it never leaves that file except as derived passwords. The same secret and inventory always give
the same credentials, so the broker's password file, the pipeline and the simulators agree without
a credential store. ``generations.json`` (not secret) holds a counter per credential: bumping it
rotates that one credential; replacing the secret rotates all of them (docs/security.md).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import stat
from pathlib import Path

from citytelemetry.atomicfile import replace_file
from citytelemetry.security.errors import InsecureFileError, SecurityError

SECRET_BYTES = 32
MQTT_DEVICE = "mqtt-device"
MQTT_SERVICE = "mqtt-service"
INFLUX = "influx"


def _write_private(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 from the start (never briefly readable by others), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    replace_file(path, data, mode=0o600)


def write_private(path: Path, text: str) -> None:
    _write_private(path, text.encode())


def check_private(path: Path) -> None:
    """Refuse a secret file that group or others can read or write."""
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InsecureFileError(f"{path} is accessible by other users (mode {stat.filemode(mode)}); "
                                f"run: chmod 600 {path}")


class SecretKey:
    """The local secret that every credential derives from. Its repr never shows the key."""

    __slots__ = ("_key", "path")

    def __init__(self, key: bytes, path: Path | None = None) -> None:
        if len(key) < 16:
            raise SecurityError("the secret must be at least 16 bytes")
        self._key = key
        self.path = path

    def __repr__(self) -> str:
        return f"SecretKey(path={self.path!s})"

    @classmethod
    def load(cls, path: Path) -> SecretKey:
        try:
            check_private(path)
            text = path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            raise SecurityError(f"{path}: secret not found; run `citytelemetry security init`") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SecurityError(f"{path}: cannot read the secret: {type(exc).__name__}") from None
        try:
            return cls(bytes.fromhex(text), path)
        except ValueError:
            raise SecurityError(f"{path}: the secret must be hex text (`citytelemetry security init` "
                                "writes one)") from None

    @classmethod
    def create(cls, path: Path, *, overwrite: bool = False) -> SecretKey:
        if path.exists() and not overwrite:
            raise SecurityError(f"{path} exists; rotating the secret changes every credential "
                                "(pass --rotate-secret to do so)")
        key = secrets.token_bytes(SECRET_BYTES)
        _write_private(path, key.hex().encode() + b"\n")
        return cls(key, path)

    @classmethod
    def load_or_create(cls, path: Path) -> SecretKey:
        return cls.load(path) if path.exists() else cls.create(path)

    def password(self, realm: str, name: str, generation: int = 0) -> str:
        """A 43-character URL-safe password (256 bits), the same for the same inputs."""
        message = f"citytelemetry/{realm}/{name}/{generation}".encode()
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class Generations:
    """Rotation counters per credential (``realm:name`` -> int), kept in a small JSON file."""

    __slots__ = ("_counts", "path")

    def __init__(self, path: Path, counts: dict[str, int] | None = None) -> None:
        self.path = path
        self._counts = counts or {}

    @classmethod
    def load(cls, path: Path) -> Generations:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls(path)
        except (OSError, ValueError) as exc:
            raise SecurityError(f"{path}: not a generations file: {exc}") from None
        if not isinstance(raw, dict) or not all(isinstance(v, int) and v >= 0 for v in raw.values()):
            raise SecurityError(f"{path}: expected a JSON object of non-negative integers")
        return cls(path, {str(k): v for k, v in raw.items()})

    def of(self, realm: str, name: str) -> int:
        return self._counts.get(f"{realm}:{name}", 0)

    def bump(self, realm: str, name: str) -> int:
        key = f"{realm}:{name}"
        self._counts[key] = self._counts.get(key, 0) + 1
        return self._counts[key]

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self._counts, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        tmp.replace(self.path)


class CredentialSource:
    """Derives every credential of one deployment: the secret plus the rotation counters."""

    __slots__ = ("generations", "key")

    def __init__(self, key: SecretKey, generations: Generations) -> None:
        self.key = key
        self.generations = generations

    def __repr__(self) -> str:
        return f"CredentialSource({self.key!r})"

    @classmethod
    def open(cls, security_dir: Path, *, create: bool = True) -> CredentialSource:
        secret = security_dir / "secret"
        key = SecretKey.load_or_create(secret) if create else SecretKey.load(secret)
        return cls(key, Generations.load(security_dir / "generations.json"))

    def device_password(self, device_id: str) -> str:
        return self.key.password(MQTT_DEVICE, device_id, self.generations.of(MQTT_DEVICE, device_id))

    def service_password(self, username: str) -> str:
        return self.key.password(MQTT_SERVICE, username, self.generations.of(MQTT_SERVICE, username))

    def influx_password(self, username: str) -> str:
        return self.key.password(INFLUX, username, self.generations.of(INFLUX, username))
