"""The bench's table refuses a figure its load generator bounded (issue 11, item 6)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

RUN = Path(__file__).resolve().parents[2] / "bench" / "run.py"


def bench_run() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_run", RUN)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_figure_the_generator_bounded_is_shown_as_such_and_has_no_ratio() -> None:
    run = bench_run()
    medians = {
        "vestibule1": {"relay.100.msgs_per_s": 9000.0, "relay.100.gen_cpu_pct": 95.0,
                       "relay.100.cpu_us_per_msg": 70.0},
        "vestibule2": {"relay.100.msgs_per_s": 5000.0, "relay.100.gen_cpu_pct": 40.0,
                       "relay.100.cpu_us_per_msg": 120.0},
        "raw": {"relay.100.msgs_per_s": 10000.0, "relay.100.gen_cpu_pct": 60.0,
                "relay.100.cpu_us_per_msg": 60.0},
    }  # fmt: skip
    plan = {"sizes": [100], "reps": 1, "hello": 1, "storm": 1, "idle": 1, "knocks": 1, "admit": 1}
    rows = {row[0]: row for row in run.table(medians, plan, {})}
    rate = rows["relay msgs/s at saturation"]
    assert rate[2:5] == ["gen-bound (95%)", "5,000", "10,000"]
    assert rate[5:] == ["", "0.50x"]  # no ratio for the refused figure
    cost = rows["server CPU us / relayed msg"]  # measured on the server: kept
    assert cost[2:5] == ["70.0", "120.0", "60.0"]
    assert run.generator_bound(medians["raw"], "relay.100.msgs_per_s") is None
    assert run.generator_bound({}, "relay.100.msgs_per_s") is None  # not measured: no bound
