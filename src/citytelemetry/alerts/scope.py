"""The incident an alert belongs to: its ``incident`` label, which Alertmanager groups by.

Independent failures must never share a notification group, or the second one waits out the
first one's ``group_interval`` (a feeder trip 15 s after a CHP page was never paged while it
lasted). The scope comes from the inventory's location keys, the first of these that a device has:

    cabin + compartment  "compartment:power/c002"  a tunnel fire compartment: gas, fan, fire, sump
    feeder               "feeder:f01"              a 10 kV feeder and the meters it supplies
    unit                 "unit:chp1"               one station unit
    node                 "node:hes01"              one network node (heat exchange station, well)

A device with none of them is its own incident; a site-level rule (coverage, completeness) is
"<system>:<site>" (no spaces: it is also a ct_alerts tag).
"""

from __future__ import annotations

from collections.abc import Mapping

LABEL = "incident"
SCOPES: tuple[tuple[str, ...], ...] = (("cabin", "compartment"), ("feeder",), ("unit",), ("node",))


def of_location(location: Mapping[str, str]) -> str | None:
    """The incident scope of these location keys, or None when they name none."""
    for keys in SCOPES:
        if all(key in location for key in keys):
            return f"{keys[-1]}:{'/'.join(location[key] for key in keys)}"
    return None


def of_device(device_id: str, location: Mapping[str, str]) -> str:
    return of_location(location) or f"device:{device_id}"


def of_site(site: str, system: str) -> str:
    return f"{system}:{site}"
