"""What `python3 dev.py serve` (and `pip install .`) installs: only what a node needs.

Two checks: the node's own imports (everything `vestibule serve` loads) come from the standard
library, the project, and the distributions the runtime dependencies pull in, none from the
dev extra; and dev.py installs `.` for serving, `.[dev]` for testing, with a stamp per kind so
that switching between them reinstalls only when it must.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

import dev

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
FIRST_PARTY = {"signalling", "rooms", "admission"}


def _name(requirement: str) -> str:
    """The normalised distribution name of a requirement string."""
    match = re.match(r"\s*([A-Za-z0-9_.-]+)", requirement)
    assert match is not None, requirement
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def _extras(requirement: str) -> set[str]:
    found = re.match(r"\s*[A-Za-z0-9_.-]+\[([^\]]+)\]", requirement)
    return set() if found is None else {e.strip() for e in found.group(1).split(",")}


def _closure(requirements: list[str]) -> set[str]:
    """Every distribution installing ``requirements`` brings, as this venv resolved them."""
    seen: set[str] = set()
    todo = [(_name(r), _extras(r)) for r in requirements]
    while todo:
        name, extras = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for sub in metadata.requires(name) or []:
            marker = sub.partition(";")[2]
            if "extra ==" in marker and not any(
                f'"{e}"' in marker or f"'{e}'" in marker for e in extras
            ):
                continue
            if "extra ==" not in marker and marker:
                # environment markers (python_version, sys_platform): keep those that hold
                from packaging.markers import Marker

                if not Marker(marker.strip()).evaluate():
                    continue
            sub_name = _name(sub)
            try:
                metadata.version(sub_name)
            except metadata.PackageNotFoundError:
                continue  # an optional dependency this platform does not install
            todo.append((sub_name, _extras(sub)))
    return seen


# Run in a fresh interpreter where every module of a distribution outside the runtime set
# fails to import, as in a venv that has only those: the node must still load and build its
# app (its optional imports, e.g. httpx's `rich`, fall back as they would there).
_CHILD = """
import importlib.abc, json, sys
blocked = set(json.loads(sys.argv[1]))
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in blocked:
            raise ImportError(f"{name} is not a runtime dependency")
        return None
sys.meta_path.insert(0, Block())
from pathlib import Path
import signalling.cli
from signalling.app import create_app
from signalling.settings import Settings
from admission.tokens import KeyRing
ring = KeyRing.single("k", b"k" * 32)
create_app(Settings(keyring=ring, data_dir=Path(sys.argv[2])), redis_url="redis://127.0.0.1:1/0")
print(json.dumps(sorted({m.partition(".")[0] for m in sys.modules})))
"""


def test_the_node_loads_with_only_the_runtime_dependencies(tmp_path: Path) -> None:
    runtime = _closure(PYPROJECT["project"]["dependencies"])
    blocked = sorted(
        module
        for module, dists in metadata.packages_distributions().items()
        if module not in FIRST_PARTY and {_name(d) for d in dists}.isdisjoint(runtime)
    )
    assert "pytest" in blocked  # the check blocks something
    assert "playwright" in blocked
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(blocked), str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    loaded = set(json.loads(out.stdout))
    assert {"signalling", "starlette", "uvicorn", "redis", "prometheus_client"} <= loaded
    assert loaded.isdisjoint(blocked)


def test_no_dev_tool_is_a_runtime_dependency() -> None:
    runtime = {_name(r) for r in PYPROJECT["project"]["dependencies"]}
    tools = {"pytest", "mypy", "ruff", "schemathesis", "playwright", "aiortc", "hypothesis"}
    assert runtime.isdisjoint(tools)
    dev_extra = {_name(r) for r in PYPROJECT["project"]["optional-dependencies"]["dev"]}
    assert tools <= dev_extra


@pytest.fixture
def venv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """dev.py pointed at an empty folder: its commands are recorded, not run."""
    commands: list[list[str]] = []
    folder = tmp_path / ".venv"
    python = folder / "bin" / "python"

    def run(cmd: list[str | Path], env: object = None) -> int:
        commands.append([str(part) for part in cmd])
        if "venv" in commands[-1]:
            python.parent.mkdir(parents=True)
            python.touch()
        return 0

    monkeypatch.setattr(dev, "VENV", folder)
    monkeypatch.setattr(dev, "VENV_PYTHON", python)
    monkeypatch.setattr(dev, "run", run)
    monkeypatch.setattr(shutil, "which", lambda name: None)  # pip, not uv
    return commands


def _installs(commands: list[list[str]]) -> list[str]:
    return [cmd[-1] for cmd in commands if "install" in cmd]


def test_serve_installs_the_node_alone_and_test_adds_the_dev_tools(
    venv: list[list[str]],
) -> None:
    dev.ensure_venv("runtime")
    assert _installs(venv) == ["."]
    dev.ensure_venv("runtime")  # unchanged pyproject.toml: nothing to do
    assert _installs(venv) == ["."]
    dev.ensure_venv("dev")
    assert _installs(venv) == [".", ".[dev]"]
    dev.ensure_venv("runtime")  # the dev install holds the runtime one
    dev.ensure_venv("dev")
    assert _installs(venv) == [".", ".[dev]"]
    assert len([cmd for cmd in venv if "venv" in cmd]) == 1


def test_a_changed_pyproject_reinstalls_the_kind_asked_for(venv: list[list[str]]) -> None:
    dev.ensure_venv("dev")
    dev.stamp("dev").write_text("an older pyproject.toml\n")
    dev.ensure_venv("runtime")
    assert _installs(venv) == [".[dev]", "."]
    assert not dev.stamp("dev").exists()
