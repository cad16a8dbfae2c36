"""`barq-bot --help` reads as plain text: no reStructuredText markup from docstrings."""

from __future__ import annotations

import pytest

from bot.cli import main


@pytest.mark.parametrize("argv", [["--help"], ["shell", "--help"], ["serve", "--help"]])
def test_help_has_no_docstring_markup(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """The help names barq-bot as it is typed, not as ``barq-bot``."""
    with pytest.raises(SystemExit):
        main(argv)
    out = capsys.readouterr().out
    assert "barq-bot" in out and "``" not in out
