"""Which ``CITYTELEMETRY_*`` environment variables exist, so that a mistyped one fails instead of vanishing.

pydantic-settings ignores an environment variable that matches no field (``CITYTELEMETRY_INFLUX_URL``
with one underscore, ``CITYTELEMETRY_MQTTT__URL``): the default is used and nothing says so. The valid
names are derived from the settings model itself, plus the few variables read elsewhere in the project.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping

from pydantic import BaseModel

# Read by the project outside the settings model; each entry says where.
OTHER_NAMES = frozenset({
    "CITYTELEMETRY_PURE_PYTHON",  # citytelemetry/compiled.py and scripts/install: import the sources, not mypyc
    "CITYTELEMETRY_REINSTALL",  # scripts/install: reinstall the virtualenv
    # Grafana expands these in the datasource files that `citytelemetry dashboards` provisions
    # (dashboards/provisioning.py); an operator may well keep them in the pipeline's environment too.
    "CITYTELEMETRY_INFLUX_READER_PASSWORD",  # the read-only account Grafana uses (v1)
    "CITYTELEMETRY_INFLUX_PASSWORD",
    "CITYTELEMETRY_INFLUX_TOKEN",
})


def setting_names(model: type[BaseModel], prefix: str) -> Iterator[str]:
    """Every environment name that sets a field of ``model`` (nested sections joined by ``__``)."""
    for name, info in model.model_fields.items():
        full = prefix + name.upper()
        yield full  # a whole section may also be given as JSON
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from setting_names(annotation, full + "__")


def unknown_names(environ: Mapping[str, str], valid: frozenset[str], prefix: str) -> list[str]:
    """One line per variable with ``prefix`` that nothing reads, naming the nearest valid one.

    Compared without regard to case, as pydantic-settings reads them.
    """
    lines = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(prefix) or upper in valid:
            continue
        nearest = difflib.get_close_matches(upper, sorted(valid), n=1, cutoff=0.75)
        hint = f" (did you mean {nearest[0]}?)" if nearest else ""
        lines.append(f"  {name}: no such setting{hint}")
    return lines
