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
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
if VENV_PYTHON.exists() and Path(sys.prefix).resolve() != (ROOT / ".venv").resolve():
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
}


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


def pinned(cpus: set[int]) -> Callable[[], None]:
    def pin() -> None:
        os.sched_setaffinity(0, cpus)

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


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@contextlib.contextmanager
def servers(
    config: str, work: Path, cpus: set[int]
) -> Iterator[tuple[list[str], list[int], list[int]]]:
    """Start one configuration; yield (urls, server pids, redis pids)."""
    processes: list[subprocess.Popen[bytes]] = []
    redis: RedisProcess | None = None
    work.mkdir(parents=True, exist_ok=True)
    try:
        urls: list[str] = []
        if config == "raw":
            port = free_port()
            log = work / "raw.err"
            with log.open("ab") as err:
                process = subprocess.Popen(
                    [sys.executable, str(ROOT / "bench" / "raw_relay.py"), "--port", str(port)],
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    preexec_fn=pinned(cpus),
                )
            processes.append(process)
            wait_ready(port, None, process, log)
            urls.append(f"ws://127.0.0.1:{port}")
            yield urls, [process.pid], []
            return
        redis = RedisProcess(work / "redis", port=free_port())
        (work / "redis").mkdir(parents=True, exist_ok=True)
        redis.start()
        assert redis.process is not None
        os.sched_setaffinity(redis.process.pid, cpus)
        env = {k: v for k, v in os.environ.items() if not k.startswith("VESTIBULE_")}
        env |= KEYS_ENV | SERVER_ENV | {"REDIS_URL": redis.url}
        for n in range(1 if config == "vestibule1" else 2):
            port = free_port()
            log = work / f"node{n}.err"
            command = [sys.executable, "-m", "signalling.cli", "serve", "--host", "127.0.0.1"]
            command += ["--port", str(port), "--data-dir", str(work / f"node{n}")]
            with log.open("ab") as err:
                process = subprocess.Popen(
                    command,
                    cwd=ROOT,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    preexec_fn=pinned(cpus),
                )
            processes.append(process)
            wait_ready(port, "/healthz", process, log)
            urls.append(f"ws://127.0.0.1:{port}/ws")
        yield urls, [p.pid for p in processes], [redis.process.pid]
    finally:
        for process in processes:
            stop(process)
        if redis is not None:
            redis.stop()


def run_generator(
    config: str,
    urls: list[str],
    pids: list[int],
    extra: list[int],
    plan: dict[str, Any],
    cpus: set[int],
) -> dict[str, Any]:
    command = [sys.executable, str(ROOT / "bench" / "loadgen.py"), "--impl", config]
    command += ["--urls", ",".join(urls), "--pids", ",".join(map(str, pids))]
    command += ["--extra", ",".join(map(str, extra))]
    command += ["--idle", str(plan["idle"]), "--sizes", ",".join(map(str, plan["sizes"]))]
    command += ["--sat", str(plan["sat"]), "--lat", str(plan["lat"])]
    if config != "raw":
        command += ["--knocks", str(plan["knocks"]), "--admit", str(plan["admit"])]
    done = subprocess.run(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=pinned(cpus),
        timeout=plan["timeout"],
    )
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed for {config} (its stderr is above)")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def median(values: list[float]) -> float:
    clean = [v for v in values if v == v]
    return statistics.median(clean) if clean else float("nan")


def collect(runs: dict[str, list[dict[str, Any]]], plan: dict[str, Any]) -> dict[str, Any]:
    """Medians per configuration and figure: {config: {figure_key: value}}."""
    out: dict[str, dict[str, float]] = {}
    for config, reps in runs.items():
        figures: dict[str, list[float]] = {}
        for rep in reps:
            flat: dict[str, float] = {}
            for section in ("idle", "knock", "admit_all"):
                for key, value in rep.get(section, {}).items():
                    flat[f"{section}.{key}"] = value
            flat["hello_retries"] = rep.get("hello_retries", 0)
            for size, values in rep.get("relay", {}).items():
                for key, value in values.items():
                    flat[f"relay.{size}.{key}"] = value
            for key, value in flat.items():
                figures.setdefault(key, []).append(float(value))
        out[config] = {key: median(values) for key, values in figures.items()}
    return out


ROWS: list[tuple[str, str, str]] = [
    # (label, key with {size} placeholder, format)
    ("relay msgs/s at saturation", "relay.{size}.msgs_per_s", "{:,.0f}"),
    ("server CPU us / relayed msg", "relay.{size}.cpu_us_per_msg", "{:.1f}"),
    ("  redis CPU us / msg", "relay.{size}.redis_cpu_us_per_msg", "{:.1f}"),
    ("  generator CPU % (saturation)", "relay.{size}.gen_cpu_pct", "{:.0f}"),
    ("  server CPU % (saturation)", "relay.{size}.server_cpu_pct", "{:.0f}"),
    ("relay latency p50 ms (1 msg/s/pair)", "relay.{size}.lat_p50_ms", "{:.2f}"),
    ("relay latency p99 ms (1 msg/s/pair)", "relay.{size}.lat_p99_ms", "{:.2f}"),
    ("  load average (1 min)", "relay.{size}.load", "{:.1f}"),
]
SINGLE: list[tuple[str, str, str]] = [
    ("hello->welcome /s (100 in flight)", "idle.hello_rate", "{:,.0f}"),
    ("server CPU us / hello", "idle.hello_cpu_us", "{:.0f}"),
    ("RSS KiB / idle connection", "idle.rss_per_conn_kib", "{:.1f}"),
    ("  generator CPU % (hellos)", "idle.gen_cpu_pct", "{:.0f}"),
    ("  load average (1 min)", "idle.load", "{:.1f}"),
    ("knock -> host notified p50 ms", "knock.knock_p50_ms", "{:.2f}"),
    ("knock -> host notified p99 ms", "knock.knock_p99_ms", "{:.2f}"),
    ("admit_all: all admitted, ms", "admit_all.admit_all_ms", "{:.0f}"),
    ("admit_all: median guest admitted, ms", "admit_all.admit_all_p50_ms", "{:.0f}"),
    ("  load average (1 min)", "admit_all.load", "{:.1f}"),
    ("hellos refused 'unavailable', retried", "hello_retries", "{:.0f}"),
]
LOWER_IS_BETTER = ("cpu_us", "rss", "lat_", "knock_", "admit_all_ms")


def table(medians: dict[str, dict[str, float]], plan: dict[str, Any]) -> list[list[str]]:
    header = ["figure", "clients", *(LABELS[c] for c in CONFIGS), "1 node / raw", "2 nodes / raw"]
    rows = [header]

    def add(label: str, key: str, fmt: str, size: str) -> None:
        values = [medians.get(c, {}).get(key, float("nan")) for c in CONFIGS]
        cells = [fmt.format(v) if v == v else "-" for v in values]
        raw = values[2]
        ratios = [
            f"{v / raw:.2f}x"
            if v == v and raw == raw and raw and not label.startswith("  ")
            else ""
            for v in values[:2]
        ]
        rows.append([label, size, *cells, *ratios])

    for size in plan["sizes"]:
        for label, key, fmt in ROWS:
            add(label, key.format(size=size), fmt, str(size))
    for label, key, fmt in SINGLE:
        size = str(plan["idle"]) if key.startswith("idle") else ""
        size = str(plan["admit"]) if key.startswith("admit") else size
        size = f"{plan['knocks']} knocks" if key.startswith("knock") else size
        add(label, key, fmt, size)
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
        cost.plot(
            sizes,
            [m.get(f"relay.{s}.cpu_us_per_msg", float("nan")) for s in sizes],
            "o-",
            label=LABELS[config],
        )
        lat.plot(
            sizes,
            [m.get(f"relay.{s}.lat_p99_ms", float("nan")) for s in sizes],
            "o-",
            label=LABELS[config],
        )
    cost.set(
        xscale="log",
        xlabel="connected clients",
        ylabel="server CPU us / relayed message",
        title="relay cost",
    )
    lat.set(
        xscale="log",
        xlabel="connected clients",
        ylabel="p99 ms at 1 msg/s per pair",
        title="relay latency p99",
    )
    for axes in (cost, lat):
        axes.grid(True, alpha=0.3)
        axes.legend()
        axes.set_ylim(bottom=0)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repetition (~30 s)")
    parser.add_argument("--reps", type=int, help="repetitions (default 3, 1 with --quick)")
    parser.add_argument("--sizes", help="connected clients for the relay, comma-separated")
    parser.add_argument("--idle", type=int, help="idle connections for hello rate and memory")
    parser.add_argument("--admit", type=int, help="guests waiting when the host admits all")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results", help="results directory"
    )
    parser.add_argument("--plot", type=Path, help="write a PNG of cost and latency here")
    args = parser.parse_args(argv)
    if args.quick:
        plan: dict[str, Any] = {
            "reps": 1,
            "sizes": [10],
            "idle": 10,
            "sat": 0.3,
            "lat": 0.3,
            "knocks": 2,
            "admit": 5,
            "timeout": 60,
        }
    else:
        plan = {
            "reps": 3,
            "sizes": [100, 1000, 5000],
            "idle": 2000,
            "sat": 3.0,
            "lat": 5.0,
            "knocks": 30,
            "admit": 1000,
            "timeout": 600,
        }
    if args.reps:
        plan["reps"] = args.reps
    if args.idle:
        plan["idle"] = args.idle
    if args.admit:
        plan["admit"] = args.admit
    if args.sizes:
        plan["sizes"] = [int(s) for s in args.sizes.split(",")]
    server_cpus, generator_cpus = cores()
    info = machine() | {
        "server_cores": sorted(server_cpus),
        "generator_cores": sorted(generator_cpus),
    }
    print(
        f"# {info['date']}  {info['nproc']} CPUs  {info['cpu']}  load {info['loadavg']}", flush=True
    )
    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in CONFIGS}
    work = Path(tempfile.mkdtemp(prefix="vestibule-bench-"))
    try:
        for rep in range(plan["reps"]):
            for config in CONFIGS:  # interleaved, so host-load drift hits all alike
                started = time.monotonic()
                with servers(config, work / f"{config}-{rep}", server_cpus) as (urls, pids, extra):
                    result = run_generator(config, urls, pids, extra, plan, generator_cpus)
                runs[config].append(result)
                print(
                    f"# rep {rep + 1}/{plan['reps']} {config}: {time.monotonic() - started:.1f}s"
                    f" load {os.getloadavg()[0]:.1f}",
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
    medians = collect(runs, plan)
    rows = table(medians, plan)
    print(render(rows))
    args.out.mkdir(parents=True, exist_ok=True)
    name = "quick.json" if args.quick else "latest.json"
    (args.out / name).write_text(
        json.dumps(
            {"machine": info, "plan": plan, "runs": runs, "medians": medians, "table": rows},
            indent=1,
        )
    )
    if args.plot is not None and not plot(medians, plan, args.plot):
        print("# matplotlib not installed: no plot", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
