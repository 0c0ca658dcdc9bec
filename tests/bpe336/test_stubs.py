"""The hand-written stubs `bpe336/_core.pyi` name exactly what the extension exports.

cd tests && python -m pytest -q test_stubs.py
"""

import ast
from pathlib import Path

import bpe336._core as core


def _stub_tree() -> ast.Module:
    stub = Path(core.__file__).with_name("_core.pyi")
    if not stub.exists():  # an in-place build: the stub sits in the source tree beside it
        stub = Path(__file__).resolve().parents[2] / "python" / "bpe336" / "_core.pyi"
    return ast.parse(stub.read_text())


def _public(names) -> set[str]:
    return {n for n in names if not n.startswith("_")}


def test_module_level_names_match():
    tree = _stub_tree()
    stubbed = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            stubbed.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            stubbed.add(node.target.id)
    assert _public(stubbed) == _public(n for n in dir(core) if n not in {"annotations"})


def test_class_members_match():
    tree = _stub_tree()
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        cls = getattr(core, node.name)
        if issubclass(cls, BaseException):
            continue  # an exception class: its members are Python's own (the name is checked above)
        stubbed = {m.name for m in node.body if isinstance(m, ast.FunctionDef)}
        runtime = {n for n in dir(cls) if not n.startswith("__")}
        assert _public(stubbed) == _public(runtime), node.name
