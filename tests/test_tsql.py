"""split_go must cut T-SQL scripts exactly where sqlcmd does."""

from __future__ import annotations

import pytest

from bot.adapters.targets.tsql import MAX_GO_COUNT, split_go


def test_splits_on_go_lines() -> None:
    script = "CREATE TABLE t (a INT)\nGO\nINSERT INTO t VALUES (1)\nGO\n"
    assert split_go(script) == ["CREATE TABLE t (a INT)", "INSERT INTO t VALUES (1)"]


def test_go_is_case_insensitive_and_tolerates_whitespace() -> None:
    script = "SELECT 1\n  go  \nSELECT 2\n\tGo\r\nSELECT 3\r\ngO"
    assert split_go(script) == ["SELECT 1", "SELECT 2", "SELECT 3"]


def test_trailing_comment_after_go() -> None:
    script = "SELECT 1\nGO -- end of batch one\nSELECT 2\nGO--tight\nSELECT 3\nGO 2 -- twice"
    assert split_go(script) == ["SELECT 1", "SELECT 2", "SELECT 3", "SELECT 3"]


def test_repeat_count() -> None:
    assert split_go("INSERT INTO t DEFAULT VALUES\nGO 3\nSELECT 1") == [
        "INSERT INTO t DEFAULT VALUES",
        "INSERT INTO t DEFAULT VALUES",
        "INSERT INTO t DEFAULT VALUES",
        "SELECT 1",
    ]


def test_trailing_batch_without_go_is_kept() -> None:
    assert split_go("SELECT 1\nGO\nSELECT 2\n") == ["SELECT 1", "SELECT 2"]
    assert split_go("SELECT 1; SELECT 2") == ["SELECT 1; SELECT 2"]


def test_no_go_at_all_and_empty_batches_dropped() -> None:
    assert split_go("") == []
    assert split_go("GO\n\nGO\n   \ngo 5\n") == []
    assert split_go("\nGO\nSELECT 1\nGO\nGO\n") == ["SELECT 1"]


def test_go_inside_string_is_not_a_separator() -> None:
    script = "INSERT INTO t VALUES ('first\nGO\nit''s still the string')\nGO\nSELECT 2"
    assert split_go(script) == [
        "INSERT INTO t VALUES ('first\nGO\nit''s still the string')",
        "SELECT 2",
    ]


def test_doubled_quote_does_not_end_the_string() -> None:
    script = "SELECT 'a''\nGO\n'\nGO\nSELECT 2"
    assert split_go(script) == ["SELECT 'a''\nGO\n'", "SELECT 2"]


def test_go_inside_block_comment_is_not_a_separator() -> None:
    script = "SELECT 1 /* start\nGO\nend */\nGO\nSELECT 2"
    assert split_go(script) == ["SELECT 1 /* start\nGO\nend */", "SELECT 2"]


def test_block_comments_nest() -> None:
    script = "/* outer /* inner */\nGO\nstill outer */ SELECT 1\nGO\nSELECT 2"
    assert split_go(script) == ["/* outer /* inner */\nGO\nstill outer */ SELECT 1", "SELECT 2"]


def test_go_inside_brackets_is_not_a_separator() -> None:
    script = "SELECT 1 AS [odd\nGO\n]] name]\nGO\nSELECT 2"
    assert split_go(script) == ["SELECT 1 AS [odd\nGO\n]] name]", "SELECT 2"]


def test_quote_chars_inside_comments_are_ignored() -> None:
    script = "SELECT 1 -- it's a comment\nGO\n/* don't [ */ SELECT 2\nGO\nSELECT 3"
    assert split_go(script) == ["SELECT 1 -- it's a comment", "/* don't [ */ SELECT 2", "SELECT 3"]


def test_comment_markers_inside_strings_are_ignored() -> None:
    script = "SELECT '/*', '--'\nGO\nSELECT 2"
    assert split_go(script) == ["SELECT '/*', '--'", "SELECT 2"]


def test_words_starting_with_go_are_not_separators() -> None:
    script = "GOTO done\nSELECT 1\ngoal:\nGO\nSELECT 2"
    assert split_go(script) == ["GOTO done\nSELECT 1\ngoal:", "SELECT 2"]


def test_go_not_alone_on_its_line_is_sql() -> None:
    assert split_go("SELECT 1 GO\nSELECT 2") == ["SELECT 1 GO\nSELECT 2"]


@pytest.mark.parametrize("line", ["GO x", "GO 0", "GO -1", "GO 2 3", "GO 1.5", "go abc -- note"])
def test_malformed_count_names_the_line(line: str) -> None:
    with pytest.raises(ValueError, match=r"line 3: malformed GO count"):
        split_go(f"SELECT 1\nGO\n{line}\nSELECT 2")


def test_count_above_limit_is_rejected() -> None:
    with pytest.raises(ValueError, match=str(MAX_GO_COUNT + 1)):
        split_go(f"SELECT 1\nGO {MAX_GO_COUNT + 1}")
