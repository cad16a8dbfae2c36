"""Runbook validation and plan building (pure domain)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.adapters.runbook_files import load_runbook, load_runbooks
from bot.domain.plan import build_plan, coerce_params
from bot.domain.runbook import Runbook, bound_names, compare
from bot.errors import ParameterError, RunbookError

RUNBOOKS = Path(__file__).resolve().parent.parent / "runbooks"


def _runbook(**changes: Any) -> Runbook:
    raw: dict[str, Any] = {
        "name": "move",
        "description": "move a tenant",
        "targets": ["staging"],
        "parameters": {
            "source_tenant": {"type": "int", "min": 1},
            "target_tenant": {"type": "int", "min": 1},
            "mode": {"type": "str", "choices": ["fast", "safe"]},
            "dry": {"type": "bool"},
        },
        "distinct": [["source_tenant", "target_tenant"]],
        "steps": [
            {
                "name": "move-tasks",
                "kind": "sql",
                "sql": "UPDATE Tasks SET TenantId = :target_tenant WHERE TenantId = :source_tenant",
            },
            {"name": "empty", "kind": "check", "sql": "SELECT 0", "expect": "== 0"},
        ],
    }
    raw.update(changes)
    return Runbook.model_validate(raw)


def test_shipped_runbooks_are_valid() -> None:
    """Every runbook in runbooks/ loads and validates."""
    found = load_runbooks(RUNBOOKS)
    assert "tenant-consolidation" in found


@pytest.mark.parametrize(
    ("sql", "names"),
    [
        ("SELECT :a, :b_2", {"a", "b_2"}),
        ("SELECT ':not_me' , :yes", {"yes"}),
        ("SELECT x::int FROM t WHERE y = :p", {"p"}),
        ("-- :comment\nSELECT /* :c2 */ :real", {"real"}),
    ],
)
def test_bound_names_ignore_literals_comments_and_casts(sql: str, names: set[str]) -> None:
    """Only real bind parameters are found."""
    assert bound_names(sql) == names


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"name": "Bad Name"}, "name"),
        ({"steps": []}, "steps"),
        (
            {"steps": [{"name": "a", "kind": "sql", "sql": "DELETE FROM t WHERE x = :nope"}]},
            "undeclared parameter(s) :nope",
        ),
        (
            {"steps": [{"name": "a", "kind": "check", "sql": "SELECT 1", "expect": "about 3"}]},
            "not a comparison",
        ),
        (
            {"steps": [{"name": "a", "kind": "check", "sql": "SELECT 1"}]},
            "exactly one of",
        ),
        (
            {"steps": [{"name": "a", "kind": "shell", "sql": "rm -rf /"}]},
            "does not match any of the expected tags",
        ),
        (
            {
                "steps": [
                    {"name": "a", "kind": "sql", "sql": "SELECT 1"},
                    {"name": "a", "kind": "sql", "sql": "SELECT 2"},
                ]
            },
            "repeated: ['a']",
        ),
        ({"distinct": [["source_tenant", "ghost"]]}, "'ghost', which is not a parameter"),
    ],
)
def test_invalid_runbooks_are_rejected_with_the_reason(
    changes: dict[str, Any], fragment: str
) -> None:
    """A bad runbook fails validation, and the message says what is wrong."""
    with pytest.raises(ValueError, match=None) as info:
        _runbook(**changes)
    assert fragment in str(info.value)


def test_a_bad_runbook_file_names_file_field_and_reason(tmp_path: Path) -> None:
    """Loading reports the file, the field and the reason."""
    path = tmp_path / "broken.yaml"
    path.write_text(
        "name: broken\ndescription: x\ntargets: [staging]\n"
        "steps:\n  - name: one\n    kind: sql\n    timeout: -5\n    sql: SELECT 1\n"
    )
    with pytest.raises(RunbookError) as info:
        load_runbook(path)
    assert info.value.file == str(path)
    assert info.value.field == "steps.0.sql.timeout"
    assert "greater than 0" in info.value.reason


def test_runbook_name_must_match_its_file(tmp_path: Path) -> None:
    """A runbook's name is its file's name, so /migrate list and the files agree."""
    path = tmp_path / "one.yaml"
    path.write_text("name: two\n")
    with pytest.raises(RunbookError, match="must be the file's name 'one'"):
        load_runbook(path)


def test_sql_can_live_in_a_file_per_dialect(tmp_path: Path) -> None:
    """`{file: x.sql}` is inlined, also inside a per-dialect mapping."""
    (tmp_path / "a.sql").write_text("SELECT 1")
    (tmp_path / "b.sql").write_text("SELECT 2")
    (tmp_path / "r.yaml").write_text(
        "name: r\ndescription: d\ntargets: ['*']\nsteps:\n"
        "  - {name: one, kind: sql, sql: {file: a.sql}}\n"
        "  - {name: two, kind: sql, sql: {mssql: {file: b.sql}, sqlite: SELECT 3}}\n"
    )
    runbook = load_runbook(tmp_path / "r.yaml")
    assert build_plan(runbook, {}, "x", "mssql").steps[1].sql == "SELECT 2"
    assert build_plan(runbook, {}, "x", "sqlite").steps[0].sql == "SELECT 1"
    with pytest.raises(ParameterError, match="no SQL for dialect 'postgresql'"):
        build_plan(runbook, {}, "x", "postgresql")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"source_tenant": "3", "mode": "fast", "dry": "no"}, "missing target_tenant"),
        (
            {"source_tenant": "3", "target_tenant": "7", "mode": "fast", "dry": "no", "srce": "1"},
            "has no parameter 'srce'",
        ),
        (
            {"source_tenant": "three", "target_tenant": "7", "mode": "fast", "dry": "no"},
            "source_tenant='three' is not a whole number",
        ),
        (
            {"source_tenant": "0", "target_tenant": "7", "mode": "fast", "dry": "no"},
            "below the minimum 1",
        ),
        (
            {"source_tenant": "3; DROP TABLE Tasks", "target_tenant": "7", "mode": "f", "dry": "1"},
            "is not a whole number",
        ),
        (
            {"source_tenant": "3", "target_tenant": "7", "mode": "slow", "dry": "no"},
            "is not one of fast, safe",
        ),
        (
            {"source_tenant": "3", "target_tenant": "7", "mode": "fast", "dry": "maybe"},
            "is not true or false",
        ),
        (
            {"source_tenant": "3", "target_tenant": "3", "mode": "fast", "dry": "no"},
            "must differ",
        ),
    ],
)
def test_bad_parameters_get_clear_messages(raw: dict[str, str], message: str) -> None:
    """Missing, unknown, ill-typed, out-of-range and equal parameters are refused."""
    with pytest.raises(ParameterError, match=None) as info:
        coerce_params(_runbook(), raw)
    assert message in str(info.value)


def test_unknown_parameter_suggests_the_close_name() -> None:
    """A typo gets a suggestion."""
    raw = {"source_tenant": "3", "target_tenan": "7", "mode": "fast", "dry": "no"}
    with pytest.raises(ParameterError, match="did you mean 'target_tenant'"):
        coerce_params(_runbook(), raw)


def test_plan_hash_binds_runbook_params_and_target() -> None:
    """The same inputs give the same hash; any change of input changes it."""
    rb = _runbook()
    params = coerce_params(
        rb, {"source_tenant": "3", "target_tenant": "7", "mode": "fast", "dry": "false"}
    )
    assert params == {"source_tenant": 3, "target_tenant": 7, "mode": "fast", "dry": False}
    base = build_plan(rb, params, "staging", "sqlite")
    assert base.hash == build_plan(rb, dict(params), "staging", "sqlite").hash
    others = [
        build_plan(rb, {**params, "target_tenant": 8}, "staging", "sqlite"),
        build_plan(rb, params, "production", "sqlite"),
        build_plan(rb, params, "staging", "mssql"),
        build_plan(_runbook(description="edited"), params, "staging", "sqlite"),
    ]
    assert len({base.hash, *(p.hash for p in others)}) == 5
    assert base.args() == "dry=false mode=fast source_tenant=3 target_tenant=7"


@pytest.mark.parametrize(
    ("value", "expect", "result"),
    [(0, "== 0", True), (1, "== 0", False), (5, "> 4", True), (4, "> 4", False), (3, "!= 0", True)],
)
def test_compare(value: int, expect: str, result: bool) -> None:
    """Check expectations compare as written."""
    assert compare(value, expect) is result
