"""Find every user-visible message in the package, for the catalog checks.

A message is user-visible when it is: the first argument of ``tr``, ``say``
or ``N_`` (method calls included); the ``help_text`` (fourth argument) of the
CLI's ``command`` helper; a ``user_message=`` keyword; or a class attribute
named ``default_message``.  Only string literals count (implicit
concatenation included).  Run as a script to print a .pot skeleton.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "p2ptchap"
CALLS = {"tr", "say", "N_", "title"}


def _name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def _literal(node: ast.expr | None) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.IfExp):
        return _literal(node.body) + _literal(node.orelse)
    return []


def messages() -> dict[str, list[str]]:
    """Each message and where it occurs (``file:line``)."""
    found: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            texts: list[str] = []
            if isinstance(node, ast.Call):
                name = _name(node.func)
                if name in CALLS and node.args:
                    texts += _literal(node.args[0])
                if name == "command" and len(node.args) >= 4:
                    texts += _literal(node.args[3])
                for keyword in node.keywords:
                    if keyword.arg == "user_message":
                        texts += _literal(keyword.value)
            elif isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if any(isinstance(t, ast.Name) and t.id == "default_message" for t in targets):
                    texts += _literal(node.value)
            for text in texts:
                where = f"{path.relative_to(PACKAGE.parent)}:{getattr(node, 'lineno', 0)}"
                found.setdefault(text, []).append(where)
    return found


if __name__ == "__main__":
    for text, places in messages().items():
        print(f"#: {' '.join(places)}")
        print(f"msgid {json.dumps(text, ensure_ascii=False)}")
        print('msgstr ""\n')
