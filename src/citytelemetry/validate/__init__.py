"""Validation: decode a payload and check it against the profile of the device named in its topic."""

from citytelemetry.validate.validator import Limits, MessageValidator

__all__ = ["Limits", "MessageValidator"]
