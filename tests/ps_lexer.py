"""A small PowerShell tokenizer for tests (pwsh is not available here).

It follows the PowerShell language specification (§2.3.5.2 string literals) as far as the exported scripts need:
comments (`# ...`, `<# ... #>`), single-quoted strings (quote characters U+0027 and U+2018..U+201B; a doubled quote
character is one quote), double-quoted strings (quote characters U+0022, U+201C..U+201E; backtick escapes;
`$( ... )` subexpressions lexed recursively), here-strings, and everything else as code text.
Tokens: ("code", text), ("sq", value), ("dq", raw text), ("comment", text), ("here", text).
"""

from __future__ import annotations

SQ = "'\u2018\u2019\u201a\u201b"
DQ = '"\u201c\u201d\u201e'


class LexError(ValueError):
    pass


def tokenize(src: str) -> list[tuple[str, str]]:
    tokens, pos = _lex(src, 0, in_subexpr=False)
    if pos != len(src):
        raise LexError(f"unbalanced ')' at {pos}")
    return tokens


def _lex(src: str, i: int, *, in_subexpr: bool) -> tuple[list[tuple[str, str]], int]:
    tokens: list[tuple[str, str]] = []
    code: list[str] = []
    depth = 0

    def flush():
        if code:
            tokens.append(("code", "".join(code)))
            code.clear()

    n = len(src)
    while i < n:
        ch = src[i]
        if src.startswith("<#", i):
            end = src.find("#>", i + 2)
            if end < 0:
                raise LexError(f"unterminated block comment at {i}")
            flush()
            tokens.append(("comment", src[i + 2:end]))
            i = end + 2
        elif ch == "#":
            end = src.find("\n", i)
            end = n if end < 0 else end
            flush()
            tokens.append(("comment", src[i + 1:end]))
            i = end
        elif ch == "@" and i + 1 < n and (src[i + 1] in SQ or src[i + 1] in DQ) and src[i + 2:i + 3] in ("\n", "\r"):
            close = "\n" + src[i + 1] + "@"
            end = src.find(close, i + 2)
            if end < 0:
                raise LexError(f"unterminated here-string at {i}")
            flush()
            tokens.append(("here", src[i + 3:end]))
            i = end + len(close)
        elif ch in SQ:
            flush()
            value, i = _single(src, i)
            tokens.append(("sq", value))
        elif ch in DQ:
            flush()
            raw, i = _double(src, i)
            tokens.append(("dq", raw))
        elif ch == "`" and i + 1 < n:
            code.append(src[i:i + 2])  # an escaped character in code (e.g. line continuation)
            i += 2
        else:
            if in_subexpr:
                if ch == "(":
                    depth += 1
                elif ch == ")":
                    if depth == 0:
                        flush()
                        return tokens, i + 1
                    depth -= 1
            code.append(ch)
            i += 1
    if in_subexpr:
        raise LexError("unterminated $( subexpression")
    flush()
    return tokens, i


def _single(src: str, i: int) -> tuple[str, int]:
    """A single-quoted literal starting at i; returns its value and the index after it."""
    out = []
    i += 1
    n = len(src)
    while i < n:
        ch = src[i]
        if ch in SQ:
            if i + 1 < n and src[i + 1] in SQ:
                out.append(ch)  # PowerShell keeps the first of the pair
                i += 2
                continue
            return "".join(out), i + 1
        out.append(ch)
        i += 1
    raise LexError("unterminated single-quoted string")


def _double(src: str, i: int) -> tuple[str, int]:
    """A double-quoted string starting at i; returns its raw text (expansions unevaluated) and the index after it."""
    start = i
    i += 1
    n = len(src)
    while i < n:
        ch = src[i]
        if ch == "`":
            i += 2
        elif src.startswith("$(", i):
            _, i = _lex(src, i + 2, in_subexpr=True)
        elif ch in DQ:
            if i + 1 < n and src[i + 1] in DQ:
                i += 2
                continue
            return src[start + 1:i], i + 1
        else:
            i += 1
    raise LexError("unterminated double-quoted string")


def single_quoted_values(tokens) -> list[str]:
    return [v for kind, v in tokens if kind == "sq"]


# ---- A reader for the data section of an exported script: `$Name = <value>` lines where a value is a
# single-quoted string, an integer, `@( ... )`, `@{ ... }` or `[ordered]@{ ... }` (keys bare words or literals).

def parse_assignments(src: str) -> dict[str, object]:
    out: dict[str, object] = {}
    i, n = 0, len(src)
    while i < n:
        i = _skip(src, i, comments=True)
        if i >= n:
            break
        if src[i] != "$":
            raise LexError(f"expected `$Name = value` at {i}: {src[i:i + 40]!r}")
        j = i + 1
        while j < n and (src[j].isalnum() or src[j] == "_"):
            j += 1
        name = src[i + 1:j]
        j = _skip(src, j)
        if src[j] != "=":
            raise LexError(f"expected '=' after ${name}")
        value, i = _value(src, j + 1)
        out[name] = value
    return out


def _skip(src: str, i: int, *, comments: bool = False, newlines: bool = True) -> int:
    n = len(src)
    while i < n:
        if src[i] in " \t\r" or (newlines and src[i] == "\n"):
            i += 1
        elif comments and src[i] == "#":
            end = src.find("\n", i)
            i = n if end < 0 else end
        else:
            break
    return i


def _value(src: str, i: int):
    i = _skip(src, i)
    if src[i] in SQ:
        return _single(src, i)
    if src.startswith("[ordered]@{", i):
        return _hashtable(src, i + len("[ordered]@{"))
    if src.startswith("@{", i):
        return _hashtable(src, i + 2)
    if src.startswith("@(", i):
        items, i = [], i + 2
        while True:
            i = _skip(src, i)
            if src[i] == ")":
                return items, i + 1
            if src[i] == ",":
                i += 1
                continue
            value, i = _value(src, i)
            items.append(value)
    j = i
    while j < len(src) and (src[j].isdigit() or (j == i and src[j] == "-")):
        j += 1
    if j == i:
        raise LexError(f"unexpected value at {i}: {src[i:i + 40]!r}")
    return int(src[i:j]), j


def _hashtable(src: str, i: int):
    table: dict[object, object] = {}
    while True:
        i = _skip(src, i)
        if src[i] == "}":
            return table, i + 1
        if src[i] == ";":
            i += 1
            continue
        if src[i] in SQ:
            key, i = _single(src, i)
        else:
            j = i
            while src[j].isalnum() or src[j] == "_":
                j += 1
            key, i = src[i:j], j
        i = _skip(src, i)
        if src[i] != "=":
            raise LexError(f"expected '=' in hashtable at {i}")
        table[key], i = _value(src, i + 1)
