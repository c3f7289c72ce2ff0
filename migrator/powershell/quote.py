"""Quoting values for PowerShell source text and for OPATH filters.

Every value the tool writes into a script goes through `ps_literal`: a single-quoted PowerShell string, in which
nothing expands (`$x`, backticks and `"` are plain characters). PowerShell treats the typographic single quotes
U+2018..U+201B as quote characters too (its tokenizer and CodeGeneration.EscapeSingleQuotedStringContent do), so
`O’Neil` would end a literal as surely as `O'Neil`; each quote character is doubled, as PowerShell itself escapes.

OPATH (a management scope's RecipientRestrictionFilter) has its own single-quoted values, where a quote is doubled
(`O''Brien`, docs/exchange.md §2). A filter inside a PowerShell literal is therefore quoted twice: OPATH first, then
PowerShell, so `O'Neil` becomes `'... -eq ''O''''Neil'''` in the script.
"""

from __future__ import annotations

from collections.abc import Iterable

# PowerShell's single-quote characters (System.Management.Automation.Language.CharExtensions.IsSingleQuote).
PS_SINGLE_QUOTES = frozenset("'\u2018\u2019\u201a\u201b")


def ps_literal(value: object) -> str:
    """A PowerShell single-quoted string literal whose value is exactly `value` (no expansion of any kind)."""
    text = "" if value is None else str(value)
    if "\x00" in text:
        # A NUL cannot be written verbatim into a script file; no Exchange name or address contains one.
        raise ValueError(f"a NUL character cannot be written into a PowerShell literal: {text!r}")
    return "'" + "".join(ch * 2 if ch in PS_SINGLE_QUOTES else ch for ch in text) + "'"


def ps_array(values: Iterable[object], *, per_line: int = 1, indent: str = "    ") -> str:
    """`@(...)` of single-quoted literals; `per_line` literals per line keeps large member lists readable."""
    items = [ps_literal(v) for v in values]
    if not items:
        return "@()"
    if len(items) <= per_line:
        return "@(" + ", ".join(items) + ")"
    lines = [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
    return "@(\n" + ",\n".join(indent + line for line in lines) + "\n" + indent[:-4] + ")"


def opath_value(value: object) -> str:
    """An OPATH single-quoted value: `O'Neil` -> `'O''Neil'`."""
    text = "" if value is None else str(value)
    return "'" + text.replace("'", "''") + "'"


def opath_escape(value: object) -> str:
    """The inside of an OPATH single-quoted value (for text placed between quotes the template already has)."""
    return ("" if value is None else str(value)).replace("'", "''")


def odata_value(value: object) -> str:
    """An OData string literal for Graph `$filter` (quotes doubled, OData ABNF)."""
    text = "" if value is None else str(value)
    return "'" + text.replace("'", "''") + "'"
