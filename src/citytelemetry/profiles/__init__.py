"""Device profiles and the district inventory: loaded once, validated whole, read by every stage."""

from citytelemetry.profiles.catalog import Catalog, RegisteredDevice
from citytelemetry.profiles.loader import ProfileError, load_catalog

__all__ = ["Catalog", "ProfileError", "RegisteredDevice", "load_catalog"]
