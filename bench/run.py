"""`python -m bench`: run the scenarios against the floor and the app, side by side.

For every case the floor and the app run alternately in the same session (floor, app,
floor, app... with --repeat), with the same seeded schedule, the server pinned to
core 0 and the load generator (its own process) to core 1. The table shows each
figure and the app/floor ratio; the JSON result has everything, raw.

    python -m bench                       # the quick matrix (a few minutes)
    BENCH_FULL=1 python -m bench          # the whole matrix (long)
    python -m bench --scenario S1 --size 500 --compression on
    python -m bench --scenario S2 --backend postgres --workers 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import websockets
import yaml

from bench import servers
from bench.check import stored_logs, verify
from bench.plan import Flow, Plan

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
# "floor": one process (bench/floor.py); "scaled": as many workers as the app, over
# Redis (bench/floor_scaled.py), run when the app has several.
FLOORS = ("floor", "scaled")
SERVER_CORE, LOADGEN_CORE = 0, 1


@dataclass
class Case:
    label: str
    scenario: str
    workshops: int
    participants: int
    flow: Flow
    floor: bool = True  # S4 has no floor (the floor keeps nothing)


def s1_flow(n: int, quick: bool) -> Flow:
    # Pace: 500 people -> 50 commands/s (25k frames/s), 100 -> 25/s, 25 -> 12.5/s.
    # Drags: 25 -> 10 starts/s, 100 -> 10/s, 500 -> 100 of them at 0.1/s: 10/s (6 messages
    # each, so about 6 people dragging at any moment).
    rate = {25: 0.5, 100: 0.25}.get(n, 0.1)
    drag_rate = {25: 0.4, 100: 0.1}.get(n, 0.1)
    share = 1.0 if n <= 100 else 100 / n
    counts = (2, 1, 2) if quick else (3, 2, 3)
    return Flow(
        card_votes=counts[0],
        notes=counts[1],
        drag_sessions=1,
        dots=counts[2],
        rate=rate,
        drag_rate=drag_rate,
        drag_share=share,
    )


def cases(scenario: str, size: str | None, quick: bool, full: bool) -> list[Case]:
    out: list[Case] = []
    want = scenario.upper()
    if want in ("S1", "ALL"):
        sizes = [int(size)] if size else ([25, 100, 500] if full else [25, 100])
        out += [Case(f"S1-{n}", "S1", 1, n, s1_flow(n, quick)) for n in sizes]
    if want in ("S2", "ALL"):
        w, p = _pair(size, (50, 20) if full else (10, 20))
        flow = Flow(card_votes=2, notes=1, drag_sessions=1, dots=2, rate=0.1, drag_rate=0.05)
        if not quick:
            flow = replace(flow, card_votes=3, notes=2, dots=3)
        out.append(Case(f"S2-{w}x{p}", "S2", w, p, flow))
    if want in ("S3", "ALL"):
        storm = Flow(card_votes=1, notes=1, drag_sessions=0, dots=0, rate=0.2, storm_events=10)
        layouts = [_pair(size, (1, 500))] if size else []
        if not layouts:
            layouts = [(50, 20), (1, 500)] if full else [(10, 20), (1, 100)]
        for w, p in layouts:
            out.append(Case(f"S3-{w}x{p}", "S3", w, p, storm))
    if want in ("S4", "ALL"):
        n = int(size) if size else 5000
        out.append(Case(f"S4-{n}", "S4", 1, 20, Flow(seed_events=n), floor=False))
    if want in ("RAMP", "ALL"):
        p = int(size) if size else 100
        steps = [12.5, 25.0, 50.0, 100.0, 200.0, 400.0, 800.0]
        out.append(Case(f"ramp-{p}", "RAMP", 1, p, Flow(ramp=steps, ramp_seconds=4.0)))
    return out


def _pair(size: str | None, default: tuple[int, int]) -> tuple[int, int]:
    if not size:
        return default
    if "x" in size:
        a, b = size.lower().split("x", 1)
        return int(a), int(b)
    return 1, int(size)


def definition_cards() -> list[str]:
    data = yaml.safe_load((ROOT / "workshop_templates" / "dhs-cx-maturity.yaml").read_text())
    return [str(card["id"]) for card in data["functions"][0]["cards"]]


# --- one run -------------------------------------------------------------------------------


def run_loadgen(plan: Plan, workdir: Path, timeout: float) -> dict[str, Any]:
    path = workdir / f"plan-{plan.target}-{time.monotonic_ns()}.json"
    plan.out = str(path.with_suffix(".out.json"))
    plan.dump(path)
    cmd = [*servers.pinned(LOADGEN_CORE), sys.executable, "-m", "bench.loadgen", str(path)]
    done = subprocess.run(  # noqa: S603
        cmd, cwd=ROOT, timeout=timeout, capture_output=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed: {done.stderr.decode()[-3000:]}")
    result: dict[str, Any] = json.loads(Path(plan.out).read_text())
    return result


def run_case(case: Case, target: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    compression = args.compression == "on"
    plan = Plan(
        scenario=case.label,
        target="floor" if target in FLOORS else target,
        base="",
        compression=compression,
        seed=args.seed,
        workshops=case.workshops,
        participants=case.participants,
        flow=case.flow,
        cards=definition_cards(),
        out="",
    )
    budget = 1800.0
    if target in FLOORS:
        workers = args.workers if target == "scaled" else 1
        floor = servers.start_floor(SERVER_CORE, workdir, workers)
        try:
            plan.base, plan.server_pid = floor.base, floor.pid
            if workers > 1:
                plan.extra_cpu_names = ["redis-server"]
            result = run_loadgen(plan, workdir, budget)
            logs = stored_logs("floor", floor.base, "", [r["id"] for r in result["rooms"]])
        finally:
            servers.stop_floor(floor)
    else:
        app = servers.prepare_app(args.backend, args.workers, args.app_root, workdir)
        try:
            servers.start_app(app, SERVER_CORE, args.app_root)
            plan.base, plan.server_pid, plan.fac_token = app.base, app.pid, app.token
            if args.backend == "postgres":
                plan.extra_cpu_names = ["postgres", "redis-server"]
            spy = start_profiler(args.profile, f"{case.label}-{args.compression}", app.pid)
            try:
                result = run_loadgen(plan, workdir, budget)
            finally:
                stop_profiler(spy)
            rooms = [r["id"] for r in result["rooms"]]
            logs = stored_logs("app", app.base, app.database_url, rooms)
            if case.scenario == "S4":  # after reading the log: its first join adds an event
                result["restore"] = restore(app, args, result)
        finally:
            servers.dispose_app(app)
    result["correctness"] = verify(result, logs)
    del result["streams"]  # raw streams are large; the verdict is kept
    for room in result["rooms"]:
        room["confirmed"] = len(room["confirmed"])
    return result


def start_profiler(where: Path | None, name: str, pid: int) -> subprocess.Popen[bytes] | None:
    """Optional: py-spy on the server (its stacks, collapsed) while the load runs."""
    if where is None:
        return None
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        print(" (py-spy not installed: no profile)", end="")
        return None
    where.mkdir(parents=True, exist_ok=True)
    cmd = [*servers.pinned(LOADGEN_CORE), spy, "record", "--pid", str(pid), "--subprocesses"]
    cmd += ["--rate", "250", "--format", "raw", "--nonblocking", "-o", str(where / f"{name}.txt")]
    return subprocess.Popen(  # noqa: S603
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def stop_profiler(spy: subprocess.Popen[bytes] | None) -> None:
    if spy is None or spy.poll() is not None:
        return
    os.killpg(spy.pid, signal.SIGINT)  # py-spy writes its file on SIGINT
    try:
        spy.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(spy.pid, signal.SIGKILL)
        spy.wait(5)


def restore(
    app: servers.Server, args: argparse.Namespace, result: dict[str, Any]
) -> dict[str, Any]:
    """S4: stop the server, start it cold, time the first joins of the big workshop."""
    servers.stop(app)
    ready = servers.start_app(app, SERVER_CORE, args.app_root)
    room = result["rooms"][0]
    final = int(room["final_seq"])
    out: dict[str, Any] = {"events": final, "cold_start_to_healthz_s": ready}
    out.update(asyncio.run(_first_joins(app, room["id"], room["join_code"], final)))
    return out


async def _first_joins(app: servers.Server, wid: str, code: str, final: int) -> dict[str, Any]:
    ws_base = app.base.replace("http://", "ws://", 1)

    async def until_caught_up(url: str, want: int) -> tuple[float, int]:
        started = time.perf_counter()
        size = 0
        async with websockets.connect(url, max_size=None, compression=None) as ws:
            while True:
                raw = await asyncio.wait_for(ws.recv(), 30)
                size += len(raw)
                msg = json.loads(raw)
                if msg.get("type") in ("snapshot",) or (
                    msg.get("type") not in ("hello", "participant.presence")
                    and int(msg.get("seq", -1)) >= want
                ):
                    return time.perf_counter() - started, size

    async with httpx.AsyncClient(base_url=app.base) as http:
        started = time.perf_counter()
        r = await http.post(
            f"/api/workshops/{wid}/participants",
            json={"join_code": code, "display_name": "First after restart"},
        )
        r.raise_for_status()
        token = r.json()["token"]
        joined = time.perf_counter() - started
    snap, snap_bytes = await until_caught_up(
        f"{ws_base}/ws/workshops/{wid}?token={token}", final
    )  # +1: the join itself
    replay, replay_bytes = await until_caught_up(
        f"{ws_base}/ws/workshops/{wid}?token={token}&last_seq={max(0, final - 999)}",
        final + 1,
    )
    return {
        "first_join_http_s": joined,
        "first_join_snapshot_s": snap,
        "first_join_total_s": joined + snap,
        "snapshot_bytes": snap_bytes,
        "resume_1000_events_s": replay,
        "resume_1000_events_bytes": replay_bytes,
    }


# --- reporting -----------------------------------------------------------------------------


def median_of(runs: list[dict[str, Any]], *path: str) -> float | None:
    values = []
    for run in runs:
        value: Any = run
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, int | float):
            values.append(float(value))
    return statistics.median(values) if values else None


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    cpu = median_of(runs, "server_cpu_s")
    frames = median_of(runs, "frames")
    n = median_of(runs, "connect", "clients")
    return {
        "p50_ms": median_of(runs, "delivery", "p50_ms"),
        "p99_ms": median_of(runs, "delivery", "p99_ms"),
        "max_ms": median_of(runs, "delivery", "max_ms"),
        "drag_p99_ms": median_of(runs, "delivery_ephemeral", "p99_ms"),
        "last_recipient_p99_ms": median_of(runs, "last_recipient", "p99_ms"),
        "confirm_p50_ms": median_of(runs, "confirm", "p50_ms"),
        "confirm_p99_ms": median_of(runs, "confirm", "p99_ms"),
        "offered_events_s": median_of(runs, "offered_events_per_s"),
        "achieved_events_s": median_of(runs, "achieved_events_per_s"),
        "offered_frames_s": median_of(runs, "offered_frames_per_s"),
        "achieved_frames_s": median_of(runs, "achieved_frames_per_s"),
        "cpu_us_per_frame": (cpu / frames * 1e6) if cpu is not None and frames else None,
        "server_cpu_s": cpu,
        "db_redis_cpu_s": median_of(runs, "extra_cpu_s"),
        "loadgen_cpu_share": _share(runs),
        "rss_kib_per_idle_conn": _kib(median_of(runs, "connect", "rss_per_idle_conn")),
        "clients": n,
        "connect_all_s": median_of(runs, "connect", "connect_all_s"),
        "resynced_all_s": median_of(runs, "storm", "resynced_all_s"),
        "restore": runs[-1].get("restore"),
        "rate_limited": sum(int(r["errors"].get("rate_limited", 0)) for r in runs),
        "errors": _merge([r["errors"] for r in runs]),
        "closes": _merge([r["closes"] for r in runs]),
        "slip_p99_ms": median_of(runs, "slip", "p99_ms"),
        "correct": all(r["correctness"]["ok"] for r in runs),
        "correctness": [r["correctness"] for r in runs],
    }


def _share(runs: list[dict[str, Any]]) -> float | None:
    shares = [r["loadgen_cpu_s"] / r["window_s"] for r in runs if r.get("window_s")]
    return statistics.median(shares) if shares else None


def _kib(value: float | None) -> float | None:
    return None if value is None else value / 1024


def _merge(counters: list[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for counter in counters:
        for key, value in counter.items():
            out[key] = out.get(key, 0) + int(value)
    return out


def ratio(app: float | None, floor: float | None) -> float | None:
    if app is None or floor is None or floor == 0:
        return None
    return app / floor


COLUMNS = [
    ("p50 ms", "p50_ms"),
    ("p99 ms", "p99_ms"),
    ("max ms", "max_ms"),
    ("last p99", "last_recipient_p99_ms"),
    ("conf p99", "confirm_p99_ms"),
    ("ev/s off", "offered_events_s"),
    ("ev/s got", "achieved_events_s"),
    ("fr/s got", "achieved_frames_s"),
    ("CPU us/fr", "cpu_us_per_frame"),
    ("KiB/conn", "rss_kib_per_idle_conn"),
    ("join s", "connect_all_s"),
    ("resync s", "resynced_all_s"),
]


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def table(entries: list[dict[str, Any]]) -> str:
    head = ["case", "server", "deflate"] + [c for c, _ in COLUMNS] + ["refused", "correct"]
    rows = [head]
    for e in entries:
        n = e.get("scaled_workers")
        names = {"scaled": f"floor-{n}w", "ratio_scaled": f"ratio-{n}w"}
        for who in ("floor", "scaled", "app", "ratio", "ratio_scaled"):
            s = e.get(who)
            if not s:
                continue
            row = [e["case"], names.get(who, who), e["compression"]]
            row += [fmt(s.get(key)) for _, key in COLUMNS]
            if who.startswith("ratio"):
                row += ["", ""]
            else:
                row += [str(s["rate_limited"]), "yes" if s["correct"] else "NO"]
            rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


RATIO_KEYS = [k for _, k in COLUMNS] + ["db_redis_cpu_s"]


def targets(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets that this entry can be judged on."""
    out: list[dict[str, Any]] = []
    app = entry.get("app") or {}
    case = entry["case"]

    def add(name: str, value: Any, ok: bool | None) -> None:
        out.append(
            {
                "case": case,
                "compression": entry["compression"],
                "target": name,
                "value": value,
                "met": ok,
            }
        )

    def le(value: float | None, limit: float) -> bool | None:
        return None if value is None else value <= limit

    floors = [("", entry.get("ratio") or {})]
    if entry.get("ratio_scaled"):
        floors.append((f" (floor with {entry['scaled_workers']} workers)", entry["ratio_scaled"]))
    for vs, r in floors:
        if case.startswith(("S1-100", "S2")):
            add("p99 <= 2x floor" + vs, r.get("p99_ms"), le(r.get("p99_ms"), 2))
            value = r.get("cpu_us_per_frame")
            add("CPU/frame <= 2x floor" + vs, value, le(value, 2))
        if case.startswith("S3"):
            value = r.get("resynced_all_s")
            add("resync <= 5x floor" + vs, value, le(value, 5))
        if case.startswith("ramp"):
            value = r.get("sustainable_events_s")
            add("sustainable rate >= 0.5x floor" + vs, value, le(0.5, value or 0.0))
    if case.startswith(("S1-100", "S2")):
        add("p99 <= 100 ms", app.get("p99_ms"), le(app.get("p99_ms"), 100))
    if case.startswith("S1-500"):
        add("p99 <= 250 ms", app.get("p99_ms"), le(app.get("p99_ms"), 250))
    if case.startswith("S1") and app.get("rss_kib_per_idle_conn") is not None:
        limit = 160 if entry["compression"] == "on" else 64
        value = app.get("rss_kib_per_idle_conn")
        add(f"RSS/idle conn <= {limit} KiB", value, le(value, limit))
    if case.startswith("S3"):
        add("resync <= 10 s", app.get("resynced_all_s"), le(app.get("resynced_all_s"), 10))
    if case.startswith("S4") and app.get("restore"):
        value = app["restore"].get("first_join_total_s")
        add("first join <= 500 ms", value, le(value, 0.5))
    if app:
        add(
            "nothing lost/duplicated/reordered; stored == confirmed", app["correct"], app["correct"]
        )
    return out


def sustainable(runs: list[dict[str, Any]], steps: list[float]) -> float | None:
    """The highest ramp step whose p99 delivery stayed within 250 ms (median of runs)."""
    best = 0.0
    for i, rate in enumerate(steps):
        p99 = median_of(runs, "delivery_by_kind", f"r{i}", "p99_ms")
        if p99 is None or p99 > 250:
            break
        best = rate
    return best


def machine() -> dict[str, Any]:
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = ""
    with open("/proc/meminfo") as f:
        mem = f.readline().split(":", 1)[1].strip()
    pretty = ""
    if os.path.exists("/etc/os-release"):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                pretty = line.split("=", 1)[1].strip('"')
    versions: dict[str, str | None] = {}
    from importlib.metadata import PackageNotFoundError, version

    for pkg in (
        "uvicorn",
        "websockets",
        "fastapi",
        "starlette",
        "sqlalchemy",
        "uvloop",
        "httptools",
        "asyncpg",
        "aiosqlite",
        "redis",
        "pydantic",
    ):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = None
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"],  # noqa: S607
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "app"],  # noqa: S607
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "memory": mem,
        "python": platform.python_version(),
        "os": pretty,
        "kernel": platform.release(),
        "taskset": shutil.which("taskset") is not None,
        "packages": versions,
        "commit": commit,
        "app_tree_dirty": bool(dirty),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="all", help="S1, S2, S3, S4, ramp or all")
    parser.add_argument("--size", default=None, help="S1: participants; S2/S3: WxP; S4: events")
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--workers", type=int, default=None, help="default 1 (sqlite), 2 (pg)")
    parser.add_argument("--compression", choices=("on", "off", "both"), default=None)
    parser.add_argument("--quick", action="store_true", help="fewer actions per participant")
    parser.add_argument("--full", action="store_true", help="the whole matrix (BENCH_FULL=1)")
    parser.add_argument("--repeat", type=int, default=1, help="floor/app pairs per case")
    parser.add_argument("--seed", type=int, default=20261122)
    parser.add_argument(
        "--fac-busy",
        type=float,
        default=0.0,
        help="the facilitator's timer commands per second while participants act",
    )
    parser.add_argument("--app-root", type=Path, default=ROOT, help="run the app from here")
    parser.add_argument("--out", type=Path, default=None, help="result JSON path")
    parser.add_argument(
        "--profile", type=Path, default=None, help="py-spy the app into this folder (optional)"
    )
    args = parser.parse_args(argv)
    args.full = args.full or os.environ.get("BENCH_FULL", "") not in ("", "0")
    if args.workers is None:
        args.workers = 2 if args.backend == "postgres" else 1
    if args.workers > 1 and args.backend != "postgres":
        parser.error("several workers need PostgreSQL + Redis (--backend postgres)")
    default_all = args.scenario == "all" and not args.full
    quick = args.quick or default_all
    compressions = {"on": ["on"], "off": ["off"], "both": ["off", "on"]}
    modes = compressions[args.compression or ("both" if args.full else "off")]
    matrix = cases(args.scenario, args.size, quick, args.full)
    if args.fac_busy > 0:
        for case in matrix:
            case.flow = replace(case.flow, fac_busy=args.fac_busy)
    if default_all and args.compression is None:
        # The quick default: deflate measured on S1-100 only.
        extra = [c for c in matrix if c.label == "S1-100"]
    else:
        extra = []
    plan_list = [(c, m) for m in modes for c in matrix] + [(c, "on") for c in extra]
    started = datetime.now(UTC)
    entries: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="cxw-bench-") as tmp:
        workdir = Path(tmp)
        for case, mode in plan_list:
            args.compression = mode
            runs: dict[str, list[dict[str, Any]]] = {"floor": [], "scaled": [], "app": []}
            whos = ("floor", "scaled", "app") if args.workers > 1 else ("floor", "app")
            for _ in range(args.repeat):
                for who in whos if case.floor else ("app",):
                    t = time.perf_counter()
                    print(f"[bench] {case.label} {who} deflate={mode} ...", end="", flush=True)
                    runs[who].append(run_case(case, who, args, workdir))
                    print(f" {time.perf_counter() - t:.0f} s", flush=True)
            entry: dict[str, Any] = {"case": case.label, "compression": mode, "runs": runs}
            for who in ("floor", "scaled", "app"):
                if runs[who]:
                    entry[who] = summarise(runs[who])
            if runs["scaled"]:
                entry["scaled_workers"] = args.workers
            for floor, key in (("floor", "ratio"), ("scaled", "ratio_scaled")):
                if floor not in entry:
                    continue
                app_, floor_ = entry["app"], entry[floor]
                entry[key] = {k: ratio(app_.get(k), floor_.get(k)) for k in RATIO_KEYS}
                if case.flow.ramp:
                    for who in (floor, "app"):
                        entry[who]["sustainable_events_s"] = sustainable(runs[who], case.flow.ramp)
                    entry[key]["sustainable_events_s"] = ratio(
                        entry["app"]["sustainable_events_s"], entry[floor]["sustainable_events_s"]
                    )
            entries.append(entry)
            log = Path(tmp)
            for f in log.glob("*.log"):
                text = f.read_text(errors="replace")
                if "Traceback" in text:
                    entry.setdefault("server_tracebacks", []).append(text[-3000:])
                f.unlink()
    verdicts = [t for e in entries for t in targets(e)]
    result = {
        "started": started.isoformat(),
        "finished": datetime.now(UTC).isoformat(),
        "machine": machine(),
        "args": {k: str(v) for k, v in vars(args).items()},
        "backend": args.backend,
        "workers": args.workers,
        "pinning": {"server_core": SERVER_CORE, "loadgen_core": LOADGEN_CORE},
        "entries": entries,
        "targets": verdicts,
    }
    out = args.out or RESULTS / f"{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print()
    scaled = f"; ratio-{args.workers}w = app / the floor with as many workers, over Redis"
    print(f"backend={args.backend} workers={args.workers}", end="")
    print(f"  (ratio = app / the one-process floor{scaled if args.workers > 1 else ''})")
    print(table(entries))
    print()
    for v in verdicts:
        mark = {True: "met   ", False: "MISSED", None: "n/a   "}[v["met"]]
        print(f"{mark} {v['case']:<12} deflate={v['compression']:<3} {v['target']}: ", end="")
        print(fmt(v["value"]))
    print(f"\nwrote {out}")
    return 0
