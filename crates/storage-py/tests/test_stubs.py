"""The type stubs ship with the package and name exactly the native methods."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import agent_storage
from agent_storage import _native


def test_stubs_and_py_typed_ship_and_match_the_native_class():
    package = Path(agent_storage.__file__).parent
    assert (package / "py.typed").exists()
    tree = ast.parse((package / "_native.pyi").read_text())
    (stub,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "NativeStorage"]
    stubbed = {n.name for n in stub.body if isinstance(n, ast.FunctionDef)} - {"__init__"}
    native = {
        name
        for name, member in inspect.getmembers(_native.NativeStorage)
        if not name.startswith("_") and callable(member)
    }
    assert stubbed == native
