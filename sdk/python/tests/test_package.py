"""The package: standard library only, Python 3.9 syntax, typed (PEP 561)."""

from __future__ import annotations

import ast
import sys
import unittest
from pathlib import Path

import harness

PKG = harness.HERE.parent / "coffer"


class PackageTest(unittest.TestCase):
    def test_python39_syntax_and_stdlib_only(self) -> None:
        stdlib = set(getattr(sys, "stdlib_module_names", ())) or None
        for path in sorted(PKG.glob("*.py")):
            with self.subTest(path.name):
                tree = ast.parse(path.read_text(encoding="utf-8"), str(path), feature_version=(3, 9))
                for node in ast.walk(tree):
                    names = []
                    if isinstance(node, ast.Import):
                        names = [a.name for a in node.names]
                    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                        names = [node.module]
                    for n in names:
                        top = n.split(".")[0]
                        if stdlib is not None and top != "__future__":
                            self.assertIn(top, stdlib, f"{path.name} imports {n}")

    def test_typed(self) -> None:
        self.assertTrue((PKG / "py.typed").is_file())
        for path in sorted(PKG.glob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    args = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
                    for a in args:
                        if a.arg not in ("self", "cls"):
                            self.assertIsNotNone(a.annotation, f"{path.name}:{node.lineno} {node.name}({a.arg})")
                    self.assertIsNotNone(node.returns, f"{path.name}:{node.lineno} {node.name} has no return type")


if __name__ == "__main__":
    unittest.main()
