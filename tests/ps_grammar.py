"""A real PowerShell grammar for the tests: tree-sitter-powershell (PyPI), beside the hand-made ps_lexer.py.

`syntax_errors(text)` lists every ERROR or MISSING node of the parse (empty: the text is valid PowerShell), each
with its line and the source around it; `commands(text)` lists the command names the script calls, in order.
"""

from __future__ import annotations

import tree_sitter_powershell
from tree_sitter import Language, Node, Parser

_PARSER = Parser(Language(tree_sitter_powershell.language()))


def parse(text: str):
    return _PARSER.parse(text.encode("utf-8"))


def _walk(node: Node):
    yield node
    for child in node.children:
        yield from _walk(child)


def syntax_errors(text: str) -> list[str]:
    tree = parse(text)
    lines = text.splitlines()
    out = []
    for node in _walk(tree.root_node):
        if node.type == "ERROR" or node.is_missing:
            row = node.start_point[0]
            out.append(f"line {row + 1}: {'missing ' + node.type if node.is_missing else 'error'}: "
                       f"{lines[row][:160] if row < len(lines) else ''}")
    return out


def commands(text: str) -> list[tuple[str, dict[str, str]]]:
    """(command name, {parameter: argument text}) of every command of the script, in source order."""
    tree = parse(text)
    source = text.encode("utf-8")
    out = []
    for node in _walk(tree.root_node):
        if node.type != "command":
            continue
        name_node = node.child_by_field_name("command_name")
        if name_node is None:
            continue
        name = source[name_node.start_byte:name_node.end_byte].decode()
        params: dict[str, str] = {}
        elements = node.child_by_field_name("command_elements")
        current = None
        for child in (elements.children if elements is not None else []):
            if child.type == "command_argument_sep":
                continue
            value = source[child.start_byte:child.end_byte].decode()
            if child.type == "command_parameter":
                current = value.lstrip("-").rstrip(":")
                params[current] = ""
            elif current is not None:
                params[current] = value
                current = None
        out.append((name, params))
    return out
