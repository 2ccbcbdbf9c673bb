"""Identity and least privilege: per-device broker credentials and ACLs from the inventory, a local CA
for TLS, InfluxDB users with only the rights they need. See docs/security.md.

    credentials.py   the local secret and every password derived from it (HMAC), rotation counters
    mosquitto.py     password and ACL files for mosquitto 2.0
    tls.py           a local CA and server/client certificates (openssl CLI)
    influx.py        InfluxDB 1.x users: admin, write-only pipeline, read-only dashboards
    local.py         the files ``services up`` needs, and the credentials the demo and tests use

The command (``citytelemetry security ...``) is ``citytelemetry.cli.security``.
"""

from citytelemetry.security.credentials import CredentialSource, Generations, SecretKey
from citytelemetry.security.errors import InsecureFileError, SecurityError, ToolError
from citytelemetry.security.mosquitto import BrokerAccess, DeviceAccount, hash_password, password_file

__all__ = [
    "BrokerAccess",
    "CredentialSource",
    "DeviceAccount",
    "Generations",
    "InsecureFileError",
    "SecretKey",
    "SecurityError",
    "ToolError",
    "hash_password",
    "password_file",
]
