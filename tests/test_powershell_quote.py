"""PowerShell and OPATH quoting: every value survives a round trip through a PowerShell-literal tokenizer."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from migrator.planner import opath
from migrator.powershell.quote import odata_value, opath_escape, opath_value, ps_array, ps_literal
from ps_lexer import LexError, tokenize

HOSTILE = ["O'Neil", "$x", "`whoami`", 'say "hi"', "O’Neil ‘x’ ‚y‛", "$(Get-Date)", "a``b", "'", "''", "",
           "line1\nline2", "#not a comment", "<# not a block #>", "@'\nnot a here-string\n'@", "“smart double”"]


@pytest.mark.parametrize("value", HOSTILE)
def test_literal_round_trips_and_is_one_token(value):
    tokens = tokenize(f"Write-Output {ps_literal(value)}")
    assert tokens[0] == ("code", "Write-Output ")
    assert tokens[1:] == [("sq", value)]


def test_known_forms():
    assert ps_literal("O'Neil") == "'O''Neil'"
    assert ps_literal("$x `t") == "'$x `t'"  # nothing expands in a single-quoted string
    assert ps_literal("O’Neil") == "'O’’Neil'"  # a typographic quote ends a PowerShell literal too
    assert opath_value("O'Neil") == "'O''Neil'"
    assert opath_escape("a'b") == "a''b"
    assert odata_value("x'y") == "'x''y'"


def test_naive_quoting_would_break():
    """The tokenizer is strict enough to catch a wrong escape (guards the test itself)."""
    assert tokenize("'O'Neil''") == [("sq", "O"), ("code", "Neil"), ("sq", "")]
    with pytest.raises(LexError):
        tokenize("'O’Neil'")  # the typographic quote closes the literal; the last quote is left open


def test_opath_inside_powershell_is_quoted_twice():
    filter_text = "CustomAttribute1 -eq " + opath_value("O'Neil $x")
    script = f"New-ManagementScope -RecipientRestrictionFilter {ps_literal(filter_text)}"
    assert "''O''''Neil $x''" in script
    (value,) = [v for kind, v in tokenize(script) if kind == "sq"]
    assert value == "CustomAttribute1 -eq 'O''Neil $x'"
    # and OPATH reads the value back (the planner's own OPATH literal reader)
    assert [content for _s, _e, content in opath._literals(value)] == ["O'Neil $x"]


def test_nul_is_refused():
    with pytest.raises(ValueError):
        ps_literal("a\x00b")


def test_array_round_trips():
    values = ["a'b", "$x", "c`d"] * 3
    tokens = tokenize(ps_array(values, per_line=2))
    assert [v for kind, v in tokens if kind == "sq"] == values
    assert ps_array([]) == "@()"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",))))
def test_any_text_round_trips(value):
    assert tokenize(ps_literal(value)) == [("sq", value)]
