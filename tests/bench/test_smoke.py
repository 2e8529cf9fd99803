"""The benchmark's quick mode runs end to end and produces every figure.

No timing is asserted (DESIGN.md: speed is measured in bench/, never asserted in a test);
this only keeps `bench/run.py` from rotting as the protocol changes."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import WAIT_FACTOR

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 120.0  # seconds; the quick mode took ~20-30 s here

RELAY = (
    "msgs_per_s",
    "cpu_us_per_msg",
    "lat_p50_ms",
    "lat_p99_ms",
    "lat50_p50_ms",
    "lat50_p99_ms",
    "gen_cpu_pct",
    "load",
)
IDLE = ("hello_rate", "rss_per_conn_kib", "hello_gen_cpu_pct", "pongs")
# The connect storm and the steps up to --idle connections: one node and the raw relay.
STORM = ("storm_all_welcomed_s", "fill_rate", "pongs_missing")
FIRST_JOINS = "admit_all.join_cpu_first_ms"
VESTIBULE_ONLY = (
    "knock.knock_p50_ms",
    "knock.knock_p99_ms",
    "admit_all.admit_all_ms",
    "admit_all.join_cpu_s",
    "admit_all.join_cpu_growth",
)


def test_quick_bench_produces_every_figure(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "run.py"),
            "--quick",
            "--admit-on",
            "vestibule1,vestibule2",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    results = json.loads((tmp_path / "quick.json").read_text())
    medians = results["medians"]
    sizes = results["plan"]["sizes"]
    missing = []
    for config in ("vestibule1", "vestibule2", "raw"):
        wanted = [f"relay.{size}.{key}" for size in sizes for key in RELAY]
        wanted += [f"idle.{key}" for key in IDLE]
        if config != "vestibule2":
            wanted += [f"idle.{key}" for key in STORM]
        if config != "raw":
            wanted += VESTIBULE_ONLY
        for key in wanted:
            value = medians[config].get(key)
            if key == "admit_all.join_cpu_growth" and medians[config].get(FIRST_JOINS) == 0:
                # /proc counts CPU in ticks of 10 ms: the quick run's few joins can take
                # less than one, and then there is no ratio to give (the full run's 100
                # joins a chunk take hundreds of ms).
                continue
            if value is None or not math.isfinite(value):
                missing.append(f"{config} {key}")
    assert missing == [], (missing, done.stdout[-4000:])  # the table and errors say why
    for config in ("vestibule1", "raw"):
        assert medians[config]["idle.pongs_missing"] == 0  # every idle client got its pong
    assert all(run["timeouts"] == [] for runs in results["runs"].values() for run in runs)
    assert "Vestibule 1 node" in done.stdout  # the table was printed


@pytest.mark.parametrize("mode", [[], ["--call"]], ids=["idle", "in a call"])
def test_the_memory_profile_runs_and_accounts_for_the_connections(mode: list[str]) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "memory.py"),
            "--connections",
            "40",
            "--warm",
            "10",
            *mode,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT * WAIT_FACTOR,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    figures = dict(
        re.findall(r"^(connections added|traced .*?|RSS .*?): ([\d.,]+)", done.stdout, re.M)
    )
    assert figures["connections added"] == "40", done.stdout
    traced = float(figures["traced Python allocations per connection"])
    assert traced > 1.0, done.stdout  # a connection costs the node kilobytes, not nothing
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and ".py:" in line]
    assert rows, done.stdout  # the lines that allocated it
