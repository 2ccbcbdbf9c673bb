"""The one exception tree of ``citytelemetry.security``: messages name files and commands, never secrets."""

from __future__ import annotations


class SecurityError(Exception):
    """Credentials, certificates or access files could not be made or used; the message says why."""


class InsecureFileError(SecurityError):
    """A secret file is readable by other users (like ssh, we refuse to use it)."""


class ToolError(SecurityError):
    """An external tool (openssl) failed; the message carries its stderr, which holds no secret."""
