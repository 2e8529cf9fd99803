"""The import direction DESIGN.md demands, checked with `ast`, independently of import-linter.

`rooms` (the domain) imports only the standard library; `admission` (the policy) imports only
the standard library and `rooms`; neither imports a module that does I/O, runs concurrently or
reads the clock. import-linter checks similar contracts from pyproject.toml; two independent
checks mean a misconfigured tool cannot pass the layout silently.
"""

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Standard-library modules the core must not use: time is a parameter, I/O lives in signalling.
IO_AND_CLOCK_MODULES = frozenset({"asyncio", "socket", "threading", "time"})


@dataclass(frozen=True, slots=True)
class Rule:
    """What the modules of one package may import."""

    first_party: frozenset[str]  # non-stdlib top-level packages allowed, itself included
    forbidden_stdlib: frozenset[str]


RULES = {
    "rooms": Rule(frozenset({"rooms"}), IO_AND_CLOCK_MODULES),
    "admission": Rule(frozenset({"admission", "rooms"}), IO_AND_CLOCK_MODULES),
}


def imported_top_level_names(tree: ast.AST, package: str) -> Iterator[tuple[int, str]]:
    """Yield (line, top-level module name) for every import anywhere in tree.

    Imports inside functions and `if TYPE_CHECKING:` count too. A relative import stays inside
    the module's own package.
    """
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.partition(".")[0]
        elif isinstance(node, ast.ImportFrom):
            if node.level > 0 or node.module is None:
                yield node.lineno, package
            else:
                yield node.lineno, node.module.partition(".")[0]


def layout_violations(source: str, package: str, filename: str = "<string>") -> list[str]:
    """Return one message per import in source, a module of package, that breaks its rule."""
    rule = RULES[package]
    *others, last = ["the standard library", *sorted(rule.first_party)]
    allowed = f"{', '.join(others)} and {last}"
    violations = []
    for lineno, name in imported_top_level_names(ast.parse(source, filename), package):
        where = f"{filename}:{lineno}"
        if name in rule.forbidden_stdlib:
            violations.append(f"{where}: {package} must not import {name} (I/O or clock)")
        elif name not in sys.stdlib_module_names and name not in rule.first_party:
            violations.append(f"{where}: {package} may import only {allowed}, not {name}")
    return violations


def package_violations(package: str, root: Path = ROOT) -> list[str]:
    """Check every module of the package directory under root, subpackages included."""
    modules = sorted((root / package).rglob("*.py"))
    assert modules, f"no modules in {root / package}: the check would check nothing"
    return [
        violation
        for path in modules
        for violation in layout_violations(
            path.read_text(encoding="utf-8"), package, str(path.relative_to(root))
        )
    ]


@pytest.mark.parametrize("package", sorted(RULES))
def test_package_imports_follow_the_layout(package: str) -> None:
    assert package_violations(package) == []


def test_every_test_folder_is_a_package() -> None:
    # Without __init__.py, same-named test modules in two folders collide in pytest.
    folders = {path.parent for path in (ROOT / "tests").rglob("*.py")}
    without_init = [folder for folder in folders if not (folder / "__init__.py").exists()]
    assert sorted(str(folder.relative_to(ROOT)) for folder in without_init) == []


ROOMS_ONLY = "rooms may import only the standard library and rooms"
ADMISSION_ONLY = "admission may import only the standard library, admission and rooms"


@pytest.mark.parametrize(
    ("package", "source", "expected"),
    [
        ("rooms", "import asyncio", "<string>:1: rooms must not import asyncio (I/O or clock)"),
        (
            "rooms",
            "from time import monotonic",
            "<string>:1: rooms must not import time (I/O or clock)",
        ),
        (
            "rooms",
            "import enum, threading",
            "<string>:1: rooms must not import threading (I/O or clock)",
        ),
        ("rooms", "import msgpack", f"<string>:1: {ROOMS_ONLY}, not msgpack"),
        ("rooms", "from admission import tokens", f"<string>:1: {ROOMS_ONLY}, not admission"),
        (
            "rooms",
            "from signalling.app import create_app",
            f"<string>:1: {ROOMS_ONLY}, not signalling",
        ),
        (
            "rooms",
            "if TYPE_CHECKING:\n    import starlette\n",
            f"<string>:2: {ROOMS_ONLY}, not starlette",
        ),
        (
            "admission",
            "from signalling import cli",
            f"<string>:1: {ADMISSION_ONLY}, not signalling",
        ),
        ("admission", "import redis.asyncio", f"<string>:1: {ADMISSION_ONLY}, not redis"),
        (
            "admission",
            "from asyncio import Lock",
            "<string>:1: admission must not import asyncio (I/O or clock)",
        ),
        (
            "admission",
            "def f() -> None:\n    import socket\n",
            "<string>:2: admission must not import socket (I/O or clock)",
        ),
    ],
)
def test_checker_reports_a_violation(package: str, source: str, expected: str) -> None:
    assert layout_violations(source, package) == [expected]


@pytest.mark.parametrize(
    ("package", "source"),
    [
        ("rooms", "from __future__ import annotations\nimport enum\nimport collections.abc"),
        ("rooms", "from datetime import datetime, timedelta\nfrom dataclasses import dataclass"),
        ("rooms", "from rooms.ids import RoomId\nfrom . import roles\nfrom .ids import RoomId"),
        ("admission", "import hashlib, hmac, secrets\nfrom rooms import roles"),
        ("admission", "from admission import errors\nfrom .window import JoinWindow"),
    ],
)
def test_checker_accepts_allowed_imports(package: str, source: str) -> None:
    assert layout_violations(source, package) == []


def test_checker_finds_modules_in_subpackages(tmp_path: Path) -> None:
    (tmp_path / "rooms" / "sub").mkdir(parents=True)
    (tmp_path / "rooms" / "__init__.py").write_text("")
    (tmp_path / "rooms" / "sub" / "clock.py").write_text('"""Doc."""\n\nimport time\n')
    assert package_violations("rooms", tmp_path) == [
        "rooms/sub/clock.py:3: rooms must not import time (I/O or clock)"
    ]
