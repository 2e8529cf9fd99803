#!/usr/bin/env python3
"""Vestibule's developer entry point: needs only Python 3.11+ and pip (stdlib only).

    python3 dev.py serve [args...]         run `vestibule serve args...` from the project venv
    python3 dev.py test [pytest args...]   format check, lint, types, import contracts, tests
    python3 dev.py fmt [paths...]          auto-fix lint, then format

Every command first makes sure .venv exists and has the project installed: `serve` only what a
node needs (`-e .`), `test` and `fmt` the development tools too (`-e .[dev]`). An install is
skipped while pyproject.toml is unchanged since the last one of that kind (or of the dev kind,
which holds everything the runtime one does).
"""

# Keeps the annotations below lazy, so Python < 3.11 gets the version message in main()
# instead of a TypeError at import.
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
VENV_BIN = VENV / "bin"
VENV_PYTHON = VENV_BIN / "python"
# What each kind of install puts in the venv: the node alone, or the node and the dev tools.
INSTALLS: dict[str, str] = {"runtime": ".", "dev": ".[dev]"}

# Executables the tests need -> Debian package providing them. A name without "/" is looked
# up on PATH. Missing ones are installed with apt-get when we are root.
SYSTEM_PACKAGES: dict[str, str] = {
    "redis-server": "redis-server",
    # tests/web drive it through Playwright (`playwright install` cannot download here)
    "/usr/bin/chromium": "chromium",
}

PYTEST_NO_TESTS_COLLECTED = 5  # pytest.ExitCode.NO_TESTS_COLLECTED
# The accessibility checker the browser tests inject into the pages (tests/web), from npm.
AXE = "axe-core@4.14.1"
NODE_PREFIX = VENV / "node"
AXE_SCRIPT = NODE_PREFIX / "node_modules" / "axe-core" / "axe.min.js"


def log(message: str) -> None:
    # stdout, like the step headers, so they stay in order with the tools' output.
    print(f"dev.py: {message}", flush=True)


def venv_env() -> dict[str, str]:
    """The environment of an activated venv, so tools and test subprocesses find its scripts."""
    path = os.pathsep.join([str(VENV_BIN), os.environ.get("PATH", os.defpath)])
    return {**os.environ, "VIRTUAL_ENV": str(VENV), "PATH": path}


def run(cmd: Sequence[str | Path], env: Mapping[str, str] | None = None) -> int:
    return subprocess.run([str(part) for part in cmd], cwd=ROOT, env=env, check=False).returncode


def check(cmd: Sequence[str | Path], env: Mapping[str, str] | None = None) -> None:
    """Run cmd; exit dev.py with its exit code if it fails."""
    code = run(cmd, env)
    if code != 0:
        log(f"failed with exit code {code}: {' '.join(map(str, cmd))}")
        raise SystemExit(code)


def stamp(kind: str) -> Path:
    """Holds the sha256 of the pyproject.toml last installed as ``kind``; dies with the venv."""
    return VENV / f".dev-py-{kind}.sha256"


def installed(kind: str, digest: str) -> bool:
    """Whether the venv holds ``kind`` for this pyproject.toml (a dev install holds all)."""
    kinds = [kind] if kind == "dev" else [kind, "dev"]
    return VENV_PYTHON.exists() and any(
        stamp(k).exists() and stamp(k).read_text().strip() == digest for k in kinds
    )


def ensure_venv(kind: str = "dev") -> None:
    """Make sure .venv exists and holds the ``kind`` install (see INSTALLS)."""
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if installed(kind, digest):
        return
    if not VENV_PYTHON.exists():  # absent, or a dangling link to a removed interpreter
        log(f"creating {VENV}")
        if run([sys.executable, "-m", "venv", "--clear", VENV]) != 0:
            log("cannot create the venv (on Debian/Ubuntu: apt-get install python3-venv)")
            raise SystemExit(1)
    for old in INSTALLS:
        stamp(old).unlink(missing_ok=True)  # a failed install must not look installed
    log(f"installing the project into .venv ({kind}: pyproject.toml changed or first run)")
    editable = ["install", "-e", INSTALLS[kind]]
    uv = shutil.which("uv")
    # uv is ~10x faster than pip; fall back to pip if it fails (uv ignores pip's config,
    # e.g. local wheel mirrors an offline machine may depend on).
    if uv is None or run([uv, "pip", *editable, "--python", VENV_PYTHON]) != 0:
        if uv is not None:
            log("uv failed; retrying with pip")
        check([VENV_PYTHON, "-m", "pip", *editable])
    stamp(kind).write_text(digest + "\n")


def ensure_system_packages() -> None:
    missing = sorted(
        {
            package
            for exe, package in SYSTEM_PACKAGES.items()
            if not (Path(exe).exists() if "/" in exe else shutil.which(exe))
        }
    )
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        log(
            f"missing system packages: {' '.join(missing)}; not root or no apt-get, so not "
            f"installing them: tests that need them will report it. "
            f"To install: sudo apt-get install -y {' '.join(missing)}"
        )
        return
    log(f"installing system packages: {' '.join(missing)}")
    apt_env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    check(["apt-get", "-q", "update"], apt_env)
    check(["apt-get", "-q", "install", "-y", "--no-install-recommends", *missing], apt_env)


def ensure_axe() -> None:
    """Install axe-core (pinned) into the venv for the browser tests, if npm is there."""
    if AXE_SCRIPT.exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        log("npm is missing: the accessibility checks of tests/web will report it")
        return
    log(f"installing {AXE} for the accessibility checks")
    check([npm, "install", "--prefix", NODE_PREFIX, "--no-audit", "--no-fund", "--silent", AXE])


def serve(args: list[str]) -> int:
    ensure_venv("runtime")
    vestibule = VENV_BIN / "vestibule"
    os.execve(vestibule, [str(vestibule), "serve", *args], venv_env())


CHECKS: list[list[str]] = [
    ["ruff", "format", "--check", "."],
    ["ruff", "check", "."],
    ["mypy"],  # what to check is in pyproject.toml
    ["lint-imports"],
]


def test(args: list[str]) -> int:
    ensure_venv()
    ensure_system_packages()
    ensure_axe()
    pytest = ["pytest", "--cov", "--cov-report=term-missing:skip-covered", *args]
    for cmd in [*CHECKS, pytest]:
        print(f"==> {' '.join(cmd)}", flush=True)
        code = run([VENV_BIN / cmd[0], *cmd[1:]], venv_env())
        if code == PYTEST_NO_TESTS_COLLECTED and cmd is pytest:
            log("pytest collected no tests: the suite has rotted, or the arguments select none")
        if code != 0:
            return code
    return 0


def fmt(args: list[str]) -> int:
    ensure_venv()
    paths = args or ["."]
    # Fix first, then format: fixes (import sorting, rewrites) may leave code unformatted.
    fixed = run([VENV_BIN / "ruff", "check", "--fix", *paths])
    return run([VENV_BIN / "ruff", "format", *paths]) or fixed


COMMANDS: dict[str, Callable[[list[str]], int]] = {"serve": serve, "test": test, "fmt": fmt}


def main(argv: list[str]) -> int:
    if sys.version_info < (3, 11):  # noqa: UP036 -- a clear message on an old interpreter
        log(f"needs Python 3.11 or newer, this is {sys.version.split()[0]}")
        return 1
    if not argv or argv[0] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
