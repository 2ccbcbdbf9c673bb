"""A local certificate authority and certificates for the local services, made with the openssl CLI.

The ``cryptography`` package is not a dependency; ``openssl`` (Debian's, OpenSSL 3) is. Keys are
ECDSA P-256, written mode 0600 in a 0700 directory. Layout of ``<run_dir>/security/tls/``:

    ca.crt ca.key           the CA (ten years); give ca.crt to clients: mqtt.ca_file, SSL_CERT_FILE
    server.crt server.key   one certificate for mosquitto, influxd and alertmanager on this host
                            (SAN: localhost, 127.0.0.1, ::1 and any extra names asked for)
    <name>.crt <name>.key   client certificates, when asked for (``security certs --client NAME``)
"""

from __future__ import annotations

import ipaddress
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from citytelemetry.security.errors import SecurityError, ToolError

CA_DAYS = 3650
LEAF_DAYS = 825  # the longest validity clients such as Apple's accept for TLS server certificates
RENEW_BEFORE_S = 30 * 86_400
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")
_KEY_ARGS = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


def _openssl(*args: str) -> str:
    tool = shutil.which("openssl")
    if tool is None:
        raise ToolError("openssl not found on PATH; install Debian's `openssl` package")
    try:
        done = subprocess.run([tool, *args], capture_output=True, text=True, timeout=60, check=False)  # noqa: S603
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ToolError(f"openssl {args[0]}: {exc}") from exc
    if done.returncode != 0:
        raise ToolError(f"openssl {args[0]} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return done.stdout


def _subject_alt_names(names: tuple[str, ...]) -> str:
    entries = []
    for name in names:
        try:
            entries.append(f"IP:{ipaddress.ip_address(name)}")
        except ValueError:
            if not name or any(c in name for c in ",\n=:/ ") or len(name) > 253:
                raise SecurityError(f"not a host name: {name[:60]!r}") from None
            entries.append(f"DNS:{name}")
    return ",".join(entries)


def _private(path: Path) -> None:
    path.chmod(0o600)


@dataclass(frozen=True, slots=True)
class Pair:
    cert: Path
    key: Path


@dataclass(frozen=True, slots=True)
class LocalPki:
    """The local CA directory; every method is idempotent unless told to ``renew``."""

    directory: Path

    @property
    def ca(self) -> Pair:
        return Pair(self.directory / "ca.crt", self.directory / "ca.key")

    @property
    def server(self) -> Pair:
        return self.pair("server")

    def pair(self, name: str) -> Pair:
        return Pair(self.directory / f"{name}.crt", self.directory / f"{name}.key")

    def ensure_ca(self, *, renew: bool = False, common_name: str = "citytelemetry local CA") -> Pair:
        ca = self.ca
        if not renew and ca.cert.exists() and ca.key.exists():
            return ca
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.directory.chmod(0o700)
        _openssl("req", "-x509", "-new", *_KEY_ARGS, "-keyout", str(ca.key), "-out", str(ca.cert),
                 "-days", str(CA_DAYS), "-subj", f"/CN={common_name} {secrets.token_hex(4)}",
                 "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        _private(ca.key)
        return ca

    def issue(self, name: str, *, hosts: tuple[str, ...] = (), client: bool = False, renew: bool = False) -> Pair:
        """A leaf certificate signed by the CA: a server's (``hosts`` as SANs) or a client's (CN = name)."""
        if not name.replace("-", "").replace("_", "").isalnum():
            raise SecurityError(f"certificate name {name[:60]!r} must be letters, digits, - and _")
        pair = self.pair(name)
        if not renew and pair.cert.exists() and pair.key.exists() and not self.expires_soon(pair.cert):
            return pair
        ca = self.ensure_ca()
        usage = "clientAuth" if client else "serverAuth"
        extensions = ["basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature",
                      f"extendedKeyUsage={usage}", "subjectKeyIdentifier=hash",
                      "authorityKeyIdentifier=keyid,issuer"]
        if hosts:
            extensions.append(f"subjectAltName={_subject_alt_names(hosts)}")
        with tempfile.TemporaryDirectory(dir=self.directory) as tmp:
            csr, ext = Path(tmp) / "req.csr", Path(tmp) / "ext.cnf"
            ext.write_text("\n".join(extensions) + "\n", encoding="ascii")
            _openssl("req", "-new", *_KEY_ARGS, "-keyout", str(pair.key), "-out", str(csr), "-subj", f"/CN={name}")
            _private(pair.key)
            _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key),
                     "-set_serial", f"0x{secrets.token_hex(16)}", "-days", str(LEAF_DAYS), "-sha256",
                     "-extfile", str(ext), "-out", str(pair.cert))
        return pair

    def ensure_server(self, extra_hosts: tuple[str, ...] = (), *, renew: bool = False) -> Pair:
        hosts = tuple(dict.fromkeys((*LOCAL_NAMES, *extra_hosts)))
        return self.issue("server", hosts=hosts, renew=renew)

    @staticmethod
    def expires_soon(cert: Path, within_s: int = RENEW_BEFORE_S) -> bool:
        try:
            _openssl("x509", "-in", str(cert), "-noout", "-checkend", str(within_s))
        except ToolError:
            return True
        return False

    def verify(self, cert: Path) -> None:
        """Raise ``ToolError`` unless ``cert`` chains to this CA."""
        _openssl("verify", "-CAfile", str(self.ca.cert), str(cert))


def tls_dir(security_dir: Path) -> Path:
    return security_dir / "tls"


def fingerprint(cert: Path) -> str:
    out = _openssl("x509", "-in", str(cert), "-noout", "-fingerprint", "-sha256")
    return out.strip().partition("=")[2]


