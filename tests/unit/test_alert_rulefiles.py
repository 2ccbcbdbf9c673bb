"""alert_rules/*.yaml are validated like the profiles: every error with its file and key, all or nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from citytelemetry.alerts.rulefiles import AlertRuleError, load_rule_files
from citytelemetry.profiles import Catalog, load_catalog

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog(ROOT / "device_profiles" / "types", ROOT / "device_profiles" / "inventory")


def _problems(tmp_path: Path, catalog: Catalog, **files: str) -> list[str]:
    for name, text in files.items():
        (tmp_path / f"{name}.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(AlertRuleError) as info:
        load_rule_files(tmp_path, catalog)
    return info.value.problems


def test_every_problem_is_reported_with_file_and_key(tmp_path: Path, catalog: Catalog) -> None:
    problems = _problems(tmp_path, catalog, a="""
rules:
  - kind: rate_of_change
    name: x_rising
    severity: warning
    type: tunnel_sump
    measurement: levl
    per_min: 0.1
    source: estimate
""", a2="""
rules:
  - kind: hampel
    name: y
    severity: urgent
    type: tunnel_multigas
    measurement: o2
    floor: 0.5
    source: estimate
""", b="""
rules:
  - kind: composite
    name: z
    severity: critical
    group_by: [compartment]
    when:
      - {type: tunnel_fan, measurement: state, states: [spinning]}
      - {type: no_such_type, measurement: ch4, above: 20}
    source: estimate
""")
    text = "\n".join(problems)
    assert f"{tmp_path / 'a.yaml'}: rules.0: measurement: 'levl' is not a measurement of tunnel_sump" in text
    assert f"{tmp_path / 'a2.yaml'}: rules.0.hampel.severity:" in text
    assert f"{tmp_path / 'b.yaml'}: rules.0: when.0.states: ['spinning'] are not states of tunnel_fan.state" in text
    assert f"{tmp_path / 'b.yaml'}: rules.0: when.1.type: unknown device type 'no_such_type'" in text


def test_duplicates_unknown_kinds_and_bad_yaml(tmp_path: Path, catalog: Catalog) -> None:
    rule = ("  - {kind: flat_line, name: f, severity: warning, type: tunnel_multigas, measurement: o2, "
            "min_duration_s: 60, source: QARTOD}\n")
    problems = _problems(tmp_path, catalog, a="rules:\n" + rule + rule, b="rules:\n  - {kind: telepathy}\n",
                         c="rules: [\n")
    text = "\n".join(problems)
    assert "a.yaml: rules.1.name: 'f' (warning) is already defined at" in text
    assert "b.yaml: rules.0: Input tag 'telepathy' found using 'kind' does not match" in text
    assert "c.yaml: cannot read:" in text


def test_numeric_rules_refuse_enum_measurements(tmp_path: Path, catalog: Catalog) -> None:
    problems = _problems(tmp_path, catalog, a="""
rules:
  - {kind: hampel, name: h, severity: warning, type: tunnel_fan, measurement: state, floor: 1, source: estimate}
""")
    expected = f"{tmp_path / 'a.yaml'}: rules.0: measurement: tunnel_fan.state is enum, this needs a numeric"
    expected += " measurement"
    assert problems == [expected]


def test_condition_needs_exactly_one_test(tmp_path: Path, catalog: Catalog) -> None:
    problems = _problems(tmp_path, catalog, a="""
rules:
  - kind: composite
    name: c
    severity: critical
    group_by: [compartment]
    when:
      - {type: tunnel_multigas, measurement: ch4, above: 20, below: 5}
      - {type: tunnel_fan, measurement: state, states: ["off"]}
    source: estimate
""")
    assert any("when.0" in p and "exactly one of above, below or states" in p for p in problems)
