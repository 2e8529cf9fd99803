"""Run the Vestibule benchmark: ``python3 bench/run.py [--quick]`` (see bench/README.md).

Three configurations, each started fresh for every repetition: Vestibule on one node,
Vestibule on two nodes sharing one redis-server, and the raw `websockets` relay
(bench/raw_relay.py). Servers (and Redis) are pinned to one core, the load generator
(bench/loadgen.py) to another. Each figure is the median of the repetitions; the table
also gives the same-run ratio Vestibule / raw.
"""

# ruff: noqa: S603, S606  (starting processes is what this script is for)
from __future__ import annotations

import argparse
import contextlib
import datetime
import http.client
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
STARTED = time.monotonic()
if Path(sys.prefix).resolve() != (ROOT / ".venv").resolve():
    # A fresh clone: make the project venv the way dev.py does (stdlib only), then re-run
    # in it. The set-up time counts in the run's budget (printed with the phases).
    sys.path.insert(0, str(ROOT))
    import dev

    dev.ensure_venv()
    os.environ["VESTIBULE_BENCH_SETUP_S"] = f"{time.monotonic() - STARTED:.1f}"
    os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), *sys.argv])
sys.path.insert(0, str(ROOT))

from signalling.redis_server import RedisProcess  # noqa: E402
from tests.support import KEYS_ENV  # noqa: E402

CONFIGS = ("vestibule1", "vestibule2", "raw")
LABELS = {"vestibule1": "Vestibule 1 node", "vestibule2": "Vestibule 2 nodes", "raw": "raw relay"}
SERVER_ENV = {
    # The bench measures the relay, not the per-client rate limit, at saturation.
    "VESTIBULE_RATE": "1000000",
    "VESTIBULE_RATE_BURST": "1000000",
    # Patients in the latency phase only receive; a run at 5,000 clients lasts longer than
    # the default idle timeout.
    "VESTIBULE_IDLE_TIMEOUT": "3600",
    # Joining a room that already holds hundreds of guests takes seconds under load (see
    # docs/PERFORMANCE.md): the admit_all set-up must not be cut off by the hello deadline.
    "VESTIBULE_HELLO_TIMEOUT": "120",
    # Every bench client comes from 127.0.0.1: the per-address cap on sockets not yet
    # authenticated (256, against floods from one address) would turn the 5,000-client
    # storm into a test of that cap. The per-node cap (4,096) stays as a user gets it.
    "VESTIBULE_MAX_UNAUTHENTICATED_PER_ADDRESS": "4096",
}
FD_MARGIN = 500  # open files beyond one per connection (Redis pool, logs, pipes)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cores() -> tuple[set[int], set[int]]:
    """(server cores, generator cores): the first allowed core for the servers, the next
    for the generator (the same one on a single-core machine)."""
    allowed = sorted(os.sched_getaffinity(0))
    return {allowed[0]}, {allowed[1 if len(allowed) > 1 else 0]}


def check_fd_limit(connections: int) -> int:
    """The open-file limit every process needs (one per connection plus a margin); exit
    with a clear message if the hard limit does not allow it."""
    need = connections + FD_MARGIN
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        sys.exit(
            f"bench: {connections:,} connections need {need:,} open files per process; the "
            f"hard limit (ulimit -Hn) is {hard:,}. Raise it (as root: `ulimit -Hn {need}`) "
            f"or pass a smaller --idle / --storm / --sizes."
        )
    return need


def pinned(cpus: set[int], fds: int = 0) -> Callable[[], None]:
    """For preexec_fn: pin the child to ``cpus`` and raise its soft open-file limit."""

    def pin() -> None:
        os.sched_setaffinity(0, cpus)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if fds > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (fds, hard))

    return pin


def wait_ready(port: int, path: str | None, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text()}")
        try:
            if path is None:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            connection.request("GET", path)
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"server on {port} not ready:\n{log.read_text()}")


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM all, then SIGKILL what is left after 1 s: the generator ends no connection
    cleanly (see GROUPS), and a graceful shutdown of 10,000 of them is not measured."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 1
    for process in processes:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@contextlib.contextmanager
def servers(
    config: str, work: Path, cpus: set[int], fds: int, cluster: bool = False
) -> Iterator[tuple[list[str], list[int], list[int]]]:
    """Start one configuration; yield (urls, server pids, redis pids). With ``cluster``,
    Vestibule's nodes run on a local Redis Cluster (three masters, three replicas, on the
    servers' core) instead of one redis-server."""
    processes: list[subprocess.Popen[bytes]] = []
    redis: RedisProcess | None = None
    shards: Any = None
    work.mkdir(parents=True, exist_ok=True)
    try:
        urls: list[str] = []
        if config == "raw":
            port = free_port()
            log = work / "raw.err"
            command = [sys.executable, str(ROOT / "bench" / "raw_relay.py"), "--port", str(port)]
            with log.open("ab") as err:
                process = subprocess.Popen(
                    [*command, "--fds", str(fds)],
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    preexec_fn=pinned(cpus, fds),
                )
            processes.append(process)
            wait_ready(port, None, process, log)
            urls.append(f"ws://127.0.0.1:{port}")
            yield urls, [process.pid], []
            return
        if cluster:
            # The test suite's local cluster (dev tooling, as bench/ is): six processes.
            from tests.cluster import LocalCluster

            shards = LocalCluster(work / "cluster")
            shards.start()
            redis_pids = [m.process.pid for m in shards.members if m.process is not None]
            url = shards.url
        else:
            redis = RedisProcess(work / "redis", port=free_port())
            (work / "redis").mkdir(parents=True, exist_ok=True)
            redis.start()
            assert redis.process is not None
            redis_pids, url = [redis.process.pid], redis.url
        for pid in redis_pids:
            os.sched_setaffinity(pid, cpus)
        env = {k: v for k, v in os.environ.items() if not k.startswith("VESTIBULE_")}
        env |= KEYS_ENV | SERVER_ENV | {"REDIS_URL": url}
        ports = [free_port() for _ in range(1 if config == "vestibule1" else 2)]
        for n, port in enumerate(ports):  # started together, then waited for
            command = [sys.executable, "-m", "signalling.cli", "serve", "--host", "127.0.0.1"]
            command += ["--port", str(port), "--data-dir", str(work / f"node{n}")]
            with (work / f"node{n}.err").open("ab") as err:
                process = subprocess.Popen(
                    command,
                    cwd=ROOT,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    preexec_fn=pinned(cpus, fds),
                )
            processes.append(process)
        for n, (port, process) in enumerate(zip(ports, processes, strict=True)):
            wait_ready(port, "/healthz", process, work / f"node{n}.err")
            urls.append(f"ws://127.0.0.1:{port}/ws")
        yield urls, [p.pid for p in processes], redis_pids
    finally:
        stop(processes)
        if redis is not None:
            redis.kill()  # its data is thrown away: no AOF flush to wait for
        if shards is not None:
            shards.stop()


# Every repetition runs three groups of phases, each on freshly started servers (and
# Redis), interleaved over the configurations. A group ends by stopping the servers, not by
# ending its connections: 10,000 idle participants (or 1,000 in one room) leaving would
# cost the server more than the phase measured, and would still be under way in the next.
GROUPS = ("idle", "relay", "rooms")


def generator_args(config: str, group: str, plan: dict[str, Any]) -> list[str] | None:
    """The load generator's phases for one configuration and group, None if it has none:
    the 10,000-connection idle phase and the storm on one node and the raw relay, hellos
    only on two nodes; knock and admit_all on Vestibule only."""
    args = ["--limit", str(plan["limit"])]
    if group == "idle":
        big = config in plan["idle_on"]
        args += ["--hello", str(plan["hello"])]
        args += ["--storm", str(plan["storm"] if big else 0)]
        args += ["--idle", str(plan["idle"] if big else plan["hello"])]
    elif group == "relay":
        args += ["--sizes", ",".join(map(str, plan["sizes"]))]
        for key in ("warm", "sat", "lat", "lat50"):
            args += [f"--{key}", str(plan[key])]
    elif config == "raw":
        return None
    else:
        admit = plan["admit"] if config in plan["admit_on"] else 0
        args += ["--knocks", str(plan["knocks"]), "--admit", str(admit)]
    return args


def generator_timeout(group: str, plan: dict[str, Any]) -> float:
    """A backstop only (every phase has its own limit, see bench/loadgen.py): the sum of
    the group's phase limits, plus a margin."""
    limit: float = plan["limit"]
    if group == "idle":
        return 3 * limit + 60 + 60  # hellos, storm, fill; ping all; margin
    if group == "relay":
        saturation = plan["warm"] + plan["sat"] + 40
        per_size = limit + saturation + (plan["lat"] + 20) + (plan["lat50"] + 30)
        return float(len(plan["sizes"]) * per_size + 60)
    return 2 * limit + 60 + 20 + 60  # knock, admit_all set-up and admit; settles; margin


def run_generator(
    config: str,
    urls: list[str],
    pids: list[int],
    extra: list[int],
    args: list[str],
    timeout: float,
    cpus: set[int],
    fds: int,
) -> dict[str, Any]:
    command = [sys.executable, str(ROOT / "bench" / "loadgen.py"), "--impl", config]
    command += ["--urls", ",".join(urls), "--pids", ",".join(map(str, pids))]
    command += ["--extra", ",".join(map(str, extra)), *args]
    done = subprocess.run(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=pinned(cpus, fds),
        timeout=timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed for {config} (its stderr is above)")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def merge(into: dict[str, Any], result: dict[str, Any]) -> None:
    """One repetition's results from its groups: sections side by side, lists and counts
    added up."""
    for key, value in result.items():
        if isinstance(value, list):
            into[key] = into.get(key, []) + value
        elif key == "retries":
            into[key] = dict(Counter(into.get(key, {})) + Counter(value))
        elif isinstance(value, dict):
            into[key] = into.get(key, {}) | value
        elif isinstance(value, int | float):
            into[key] = into.get(key, 0) + value
        else:
            into[key] = value


def median(values: list[float]) -> float:
    clean = [v for v in values if v == v]
    return statistics.median(clean) if clean else float("nan")


def flatten(rep: dict[str, Any]) -> dict[str, float]:
    flat: dict[str, float] = {}
    for section in ("idle", "knock", "admit_all"):
        for key, value in rep.get(section, {}).items():
            flat[f"{section}.{key}"] = value
    flat["hello_retries"] = rep.get("hello_retries", 0)
    for size, values in rep.get("relay", {}).items():
        for key, value in values.items():
            flat[f"relay.{size}.{key}"] = value
    return flat


def collect(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, float]]:
    """Medians per configuration and figure: {config: {figure_key: value}}; a figure some
    repetitions lack (a phase timed out) is the median of the others, and
    ``{key}#n`` says how many repetitions it has."""
    out: dict[str, dict[str, float]] = {}
    for config, reps in runs.items():
        figures: dict[str, list[float]] = {}
        for rep in reps:
            for key, value in flatten(rep).items():
                figures.setdefault(key, []).append(float(value))
        out[config] = {key: median(values) for key, values in figures.items()}
        out[config] |= {
            f"{key}#n": float(sum(v == v for v in values)) for key, values in figures.items()
        }
    return out


def phase_of(key: str) -> str:
    """The load generator's phase that produces a figure (to say 'timed out')."""
    if key.startswith("relay."):
        return f"relay {key.split('.')[1]}"
    if key.startswith("idle.storm"):
        return "idle: storm"
    if key.startswith("idle.hello"):
        return "idle: hellos"
    if key.startswith("idle.pong") or key.startswith("idle.ping"):
        return "idle: ping all"
    if key.startswith("idle."):
        return "idle: fill"
    return key.split(".")[0]


RELAY_ROWS: list[tuple[str, str, str]] = [
    # (label, key with {size} placeholder, format); an indented label gets no ratio
    ("relay msgs/s at saturation", "relay.{size}.msgs_per_s", "{:,.0f}"),
    ("server CPU us / relayed msg", "relay.{size}.cpu_us_per_msg", "{:.1f}"),
    ("  redis CPU us / msg", "relay.{size}.redis_cpu_us_per_msg", "{:.1f}"),
    ("  generator CPU % (saturation)", "relay.{size}.gen_cpu_pct", "{:.0f}"),
    ("  server CPU % (saturation)", "relay.{size}.server_cpu_pct", "{:.0f}"),
    ("relay latency p50 ms (1 msg/s/pair)", "relay.{size}.lat_p50_ms", "{:.2f}"),
    ("relay latency p99 ms (1 msg/s/pair)", "relay.{size}.lat_p99_ms", "{:.2f}"),
    ("relay latency p50 ms (50% of sat.)", "relay.{size}.lat50_p50_ms", "{:.2f}"),
    ("relay latency p99 ms (50% of sat.)", "relay.{size}.lat50_p99_ms", "{:.2f}"),
    ("  msgs/s offered at 50%", "relay.{size}.lat50_rate", "{:,.0f}"),
    ("  generator CPU % (at 50%)", "relay.{size}.lat50_gen_cpu_pct", "{:.0f}"),
    ("  load average (1 min)", "relay.{size}.load", "{:.1f}"),
]
# A figure the load generator bounds when it used more than this share of its core: it is
# refused (shown as "gen-bound", no ratio), since it measures the generator, not the server.
GEN_BOUND = 70.0
GENERATOR_OF = {  # figure key (suffix) -> the generator CPU key (suffix) of its phase
    "msgs_per_s": "gen_cpu_pct",
    "lat50_p50_ms": "lat50_gen_cpu_pct",
    "lat50_p99_ms": "lat50_gen_cpu_pct",
    "hello_rate": "hello_gen_cpu_pct",
}


def generator_bound(values: dict[str, float], key: str) -> float | None:
    """The generator's CPU % behind figure ``key`` if it was over GEN_BOUND, else None."""
    head, _, figure = key.rpartition(".")
    gen_key = GENERATOR_OF.get(figure)
    if gen_key is None:
        return None
    gen = values.get(f"{head}.{gen_key}", float("nan"))
    return gen if gen == gen and gen > GEN_BOUND else None


# (label, key, format, what the "clients" column says: a plan key or text)
SINGLE_ROWS: list[tuple[str, str, str, str]] = [
    ("hello->welcome /s (100 in flight)", "idle.hello_rate", "{:,.0f}", "hello"),
    ("server CPU us / hello", "idle.hello_cpu_us", "{:.0f}", "hello"),
    ("  generator CPU % (hellos)", "idle.hello_gen_cpu_pct", "{:.0f}", "hello"),
    ("connect storm: all welcomed, s", "idle.storm_all_welcomed_s", "{:.2f}", "storm"),
    ("  storm: median welcomed, s", "idle.storm_p50_s", "{:.2f}", "storm"),
    ("  storm: failed (gave up after 5 retries)", "idle.storm_failed", "{:.0f}", "storm"),
    ("  storm: still connecting at the limit", "idle.storm_unfinished", "{:.0f}", "storm"),
    ("  storm: retries", "idle.storm_retries", "{:.0f}", "storm"),
    ("  generator CPU % (storm)", "idle.storm_gen_cpu_pct", "{:.0f}", "storm"),
    ("hello->welcome /s (100 in flight, loaded)", "idle.fill_rate", "{:,.0f}", "fill"),
    ("RSS KiB / idle connection", "idle.rss_per_conn_kib_at_{hello}", "{:.1f}", "hello"),
    ("RSS KiB / idle connection", "idle.rss_per_conn_kib_at_{hello_storm}", "{:.1f}", "hs"),
    ("RSS KiB / idle connection", "idle.rss_per_conn_kib_at_{idle}", "{:.1f}", "idle"),
    ("  server RSS MiB", "idle.rss_mib_at_{idle}", "{:,.0f}", "idle"),
    ("  generator RSS KiB / connection", "idle.gen_rss_per_conn_kib", "{:.1f}", "idle"),
    ("idle clients without a pong (lost)", "idle.pongs_missing", "{:.0f}", "pings"),
    ("  pongs received", "idle.pongs", "{:,.0f}", "pings"),
    ("  load average (1 min)", "idle.load", "{:.1f}", "idle"),
    ("knock -> host notified p50 ms", "knock.knock_p50_ms", "{:.2f}", "knocks"),
    ("knock -> host notified p99 ms", "knock.knock_p99_ms", "{:.2f}", "knocks"),
    ("admit_all: all admitted, ms", "admit_all.admit_all_ms", "{:.0f}", "admit"),
    ("admit_all: median guest admitted, ms", "admit_all.admit_all_p50_ms", "{:.0f}", "admit"),
    ("  admit_all set-up (joins + knocks), s", "admit_all.admit_all_setup_s", "{:.1f}", "admit"),
    ("join + knock into one room: node CPU, s", "admit_all.join_cpu_s", "{:.2f}", "admit"),
    ("  CPU per join, first 100, ms", "admit_all.join_cpu_first_ms", "{:.2f}", "admit"),
    ("  CPU per join, last 100, ms", "admit_all.join_cpu_last_ms", "{:.2f}", "admit"),
    ("  last 100 / first 100", "admit_all.join_cpu_growth", "{:.2f}", "admit"),
    ("  load average (1 min)", "admit_all.load", "{:.1f}", "admit"),
    ("hellos refused or failed, retried", "hello_retries", "{:.0f}", ""),
]


def table(
    medians: dict[str, dict[str, float]],
    plan: dict[str, Any],
    timeouts: dict[str, set[str]],
) -> list[list[str]]:
    header = ["figure", "clients", *(LABELS[c] for c in CONFIGS), "1 node / raw", "2 nodes / raw"]
    rows = [header]

    def cell(config: str, key: str, fmt: str) -> str:
        value = medians.get(config, {}).get(key, float("nan"))
        bound = generator_bound(medians.get(config, {}), key)
        if bound is not None:
            return f"gen-bound ({bound:.0f}%)"
        if value != value:
            phase = phase_of(key)
            timed = any(name.startswith(phase) for name in timeouts.get(config, ()))
            return "timed out" if timed else "-"
        text = fmt.format(value)
        reps = medians[config].get(f"{key}#n", plan["reps"])
        return text if reps >= plan["reps"] else f"{text} ({reps:.0f}/{plan['reps']})"

    def add(label: str, key: str, fmt: str, size: str) -> None:
        cells = [cell(c, key, fmt) for c in CONFIGS]
        values = [
            float("nan")
            if generator_bound(medians.get(c, {}), key) is not None
            else medians.get(c, {}).get(key, float("nan"))
            for c in CONFIGS
        ]
        raw = values[2]
        ratios = [
            f"{v / raw:.2f}x"
            if v == v and raw == raw and raw and not label.startswith("  ")
            else ""
            for v in values[:2]
        ]
        rows.append([label, size, *cells, *ratios])

    for size in plan["sizes"]:
        for label, key, fmt in RELAY_ROWS:
            add(label, key.format(size=size), fmt, f"{size:,}")
    counts = {
        "hello": plan["hello"],
        "hello_storm": plan["hello"] + plan["storm"],
        "idle": plan["idle"],
    }
    sizes = {
        "hello": f"{plan['hello']:,}",
        "storm": f"{plan['storm']:,} at once",
        "fill": f"{plan['hello'] + plan['storm']:,}-{plan['idle']:,}",
        "hs": f"{plan['hello'] + plan['storm']:,}",
        "idle": f"{plan['idle']:,}",
        "pings": f"{plan['idle']:,} (2 nodes: {plan['hello']:,})",
        "knocks": f"{plan['knocks']} knocks",
        "admit": f"{plan['admit']:,}",
        "": "",
    }
    seen: set[str] = set()
    for label, key, fmt, size in SINGLE_ROWS:
        key = key.format(**counts)
        if key in seen:  # --idle equal to --hello: one RSS row
            continue
        seen.add(key)
        add(label, key, fmt, sizes[size])
    return rows


def render(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        lines.append(
            "| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) + " |"
        )
        if n == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def budget(walls: dict[str, list[dict[str, float]]], total: float, setup: float) -> str:
    """Wall time per phase: the mean of the repetitions per configuration, and the sum
    over everything (so the budget of a full run is visible)."""
    names: list[str] = []
    for reps in walls.values():
        for rep in reps:
            names += [name for name in rep if name not in names]
    rows = [["phase (wall s)", *(LABELS[c] + " / rep" for c in CONFIGS), "all reps"]]
    for name in names:
        per = [[rep[name] for rep in walls.get(c, []) if name in rep] for c in CONFIGS]
        cells = [f"{statistics.mean(v):.1f}" if v else "" for v in per]
        rows.append([name, *cells, f"{sum(sum(v) for v in per):.1f}"])
    sums = [sum(sum(rep.values()) for rep in walls.get(c, [])) for c in CONFIGS]
    counts = [max(1, len(walls.get(c, []))) for c in CONFIGS]
    rows.append(["total", *(f"{s / n:.1f}" for s, n in zip(sums, counts, strict=True)), ""])
    rows.append(["venv set-up (this command)", "", "", "", f"{setup:.1f}"])
    rows.append(["whole run, wall", "", "", "", f"{total:.1f}"])
    return render(rows)


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "loadavg": os.getloadavg(),
        "python": sys.version.split()[0],
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def _relay(medians: dict[str, float], sizes: list[int], name: str) -> list[float]:
    """One relay figure of a configuration at each size (NaN where it is missing)."""
    return [medians.get(f"relay.{size}.{name}", float("nan")) for size in sizes]


def plot(medians: dict[str, dict[str, float]], plan: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    sizes = plan["sizes"]
    figure, (cost, lat) = plt.subplots(1, 2, figsize=(10, 4))
    for config in CONFIGS:
        m = medians.get(config, {})
        label = LABELS[config]
        [line] = cost.plot(sizes, _relay(m, sizes, "cpu_us_per_msg"), "o-", label=label)
        colour = line.get_color()
        lat.plot(
            sizes,
            _relay(m, sizes, "lat_p99_ms"),
            "o-",
            color=colour,
            label=f"{label}, 1 msg/s/pair",
        )
        lat.plot(
            sizes,
            _relay(m, sizes, "lat50_p99_ms"),
            "s--",
            color=colour,
            label=f"{label}, 50% of saturation",
        )
    cost.set(
        xscale="log",
        xlabel="connected clients",
        ylabel="server CPU us / relayed message",
        title="relay cost",
    )
    lat.set(
        xscale="log",
        yscale="log",
        xlabel="connected clients",
        ylabel="p99 ms",
        title="relay latency p99",
    )
    cost.set_ylim(bottom=0)
    for axes in (cost, lat):
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


QUICK: dict[str, Any] = {
    "reps": 1,
    "sizes": [10],
    "hello": 10,
    "storm": 10,
    "idle": 30,
    "warm": 0.2,
    "sat": 0.3,
    "lat": 1.0,
    "lat50": 0.3,
    "knocks": 2,
    "admit": 5,
    "limit": 30.0,
}
# The default run: the sizes, 3 repetitions, budgeted to ~12 minutes of wall time
# on 2 cores at the target server speeds (see bench/README.md for the measured budget).
FULL: dict[str, Any] = {
    "reps": 3,
    "sizes": [100, 1000, 5000],
    "hello": 1000,
    "storm": 5000,
    "idle": 10000,
    "warm": 0.5,
    "sat": 1.5,
    "lat": 2.0,
    "lat50": 1.5,
    "knocks": 40,
    "admit": 1000,
    # Per phase. At the target speeds no phase needs 20 s; today's server needs more than
    # 60 s for the storm and the admit_all set-up, which then read "timed out".
    "limit": 60.0,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repetition (~30 s)")
    parser.add_argument("--reps", type=int, help="repetitions (default 3, 1 with --quick)")
    parser.add_argument("--sizes", help="connected clients for the relay, comma-separated")
    parser.add_argument("--hello", type=int, help="hellos at 100 in flight (rate)")
    parser.add_argument("--storm", type=int, help="clients connecting at once (1 node, raw)")
    parser.add_argument("--idle", type=int, help="idle connections in the end (1 node, raw)")
    parser.add_argument("--admit", type=int, help="guests waiting when the host admits all")
    parser.add_argument("--knocks", type=int, help="knocks timed, one at a time")
    parser.add_argument(
        "--admit-on",
        default="vestibule1",
        help="configurations that run admit_all (default: 1 node only; its set-up of 1,000 "
        "joins into one room takes ~45 s a repetition on 2 nodes, which would push the "
        "default run past 15 minutes): e.g. vestibule1,vestibule2",
    )
    for key in ("warm", "sat", "lat", "lat50"):
        parser.add_argument(f"--{key}", type=float, help=f"relay {key} seconds")
    parser.add_argument("--limit", type=float, help="seconds any one phase may take")
    parser.add_argument(
        "--configs", default=",".join(CONFIGS), help="subset of " + ",".join(CONFIGS)
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results", help="results directory"
    )
    parser.add_argument("--plot", type=Path, help="write a PNG of cost and latency here")
    parser.add_argument(
        "--redis-cluster",
        action="store_true",
        help="run Vestibule's nodes on a local Redis Cluster (3 masters, 3 replicas) instead "
        "of one redis-server (results in cluster.json / cluster-quick.json)",
    )
    args = parser.parse_args(argv)
    plan = dict(QUICK if args.quick else FULL)
    for key in ("reps", "hello", "storm", "idle", "admit", "knocks", "warm", "sat", "lat"):
        if getattr(args, key) is not None:
            plan[key] = getattr(args, key)
    for key in ("lat50", "limit"):
        if getattr(args, key) is not None:
            plan[key] = getattr(args, key)
    if args.sizes:
        plan["sizes"] = [int(s) for s in args.sizes.split(",")]
    plan["idle"] = max(plan["idle"], plan["hello"] + plan["storm"])
    plan["idle_on"] = ["vestibule1", "raw"]
    plan["admit_on"] = args.admit_on.split(",")
    plan["redis"] = "cluster (3 masters, 3 replicas)" if args.redis_cluster else "one redis-server"
    configs = [c for c in CONFIGS if c in args.configs.split(",")]
    fds = check_fd_limit(max(plan["idle"], *plan["sizes"], plan["admit"]))
    server_cpus, generator_cpus = cores()
    setup = float(os.environ.pop("VESTIBULE_BENCH_SETUP_S", "0"))
    info = machine() | {
        "server_cores": sorted(server_cpus),
        "generator_cores": sorted(generator_cpus),
    }
    print(
        f"# {info['date']}  {info['nproc']} CPUs  {info['cpu']}  load {info['loadavg']}", flush=True
    )
    print(f"# Vestibule on {plan['redis']}", flush=True)
    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in configs}
    walls: dict[str, list[dict[str, float]]] = {c: [] for c in configs}
    work = Path(tempfile.mkdtemp(prefix="vestibule-bench-"))
    try:
        for rep in range(plan["reps"]):
            for config in configs:
                runs[config].append({})
                walls[config].append({})
            for group in GROUPS:
                for config in configs:  # interleaved, so host-load drift hits all alike
                    args_ = generator_args(config, group, plan)
                    if args_ is None:
                        continue
                    started = time.monotonic()
                    where = work / f"{config}-{rep}-{group}"
                    with servers(config, where, server_cpus, fds, args.redis_cluster) as (
                        urls,
                        pids,
                        extra,
                    ):
                        up = time.monotonic()
                        timeout = generator_timeout(group, plan)
                        result = run_generator(
                            config, urls, pids, extra, args_, timeout, generator_cpus, fds
                        )
                        generated = time.monotonic()
                    ended = time.monotonic()
                    merge(runs[config][-1], result)
                    phases = result.get("phases", {})
                    wall = walls[config][-1]
                    wall[f"{group}: servers start + stop"] = round(
                        up - started + ended - generated, 2
                    )
                    wall |= phases
                    wall[f"{group}: generator start, RSS waits"] = round(
                        generated - up - sum(phases.values()), 2
                    )
                    late = ", ".join(result.get("timeouts", []) + list(result.get("errors", {})))
                    print(
                        f"# rep {rep + 1}/{plan['reps']} {config} {group}: "
                        f"{ended - started:.1f}s load {os.getloadavg()[0]:.1f}"
                        + (f"  TIMED OUT/FAILED: {late}" if late else ""),
                        flush=True,
                    )
    except BaseException:
        logs = args.out / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        for log in work.glob("*/*.err"):
            shutil.copy(log, logs / f"{log.parent.name}-{log.name}")
        print(f"# failed: server logs copied to {logs}", file=sys.stderr)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    medians = collect(runs)
    timeouts = {c: {t for rep in runs[c] for t in rep.get("timeouts", [])} for c in configs}
    rows = table(medians, plan, timeouts)
    print(render(rows))
    total = time.monotonic() - STARTED + setup
    print(budget(walls, total, setup), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    name = ("cluster-" if args.redis_cluster else "") + (
        "quick.json" if args.quick else "latest.json"
    )
    (args.out / name).write_text(
        json.dumps(
            {
                "machine": info,
                "plan": plan,
                "runs": runs,
                "medians": medians,
                "table": rows,
                "wall": walls,
                "wall_total_s": total,
            },
            indent=1,
        )
    )
    if args.plot is not None and not plot(medians, plan, args.plot):
        print("# matplotlib not installed: no plot", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
