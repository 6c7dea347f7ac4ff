"""How fast the MCP server answers: cold start against a bare fastmcp server, and the latency of
each tool on a 1,000,000-step run, alone and with 50 concurrent HTTP clients, with the server's
peak memory meanwhile.

a. Cold start: launch to ``initialize`` answered, over stdio with the official ``mcp`` client
   (handshake era, so there is an initialize to answer), median of R interleaved launches of
   ``trainatlas serve`` and of a bare fastmcp server with one tool (the floor). Goal: within 20%.
b. Latency: a 1M-step run x 8 keys with layer stats (the synthetic run of diagnose_scale.py, in
   the real layout) served by ``trainatlas serve --http``; each tool called N times in a row
   (p50/p95), then 50 clients at once, each calling every tool once (p50/p95 over all calls);
   the server's RSS is sampled every 20 ms (peak, and the peak above its idle size).

Run: .venv-bench/bin/python benchmarks/mcp_latency.py [--quick] [--json [FILE]]
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).parent))
import _common as C
from diagnose_scale import write_run

SIZES = {"steps": (1_000_000, 100_000, "steps of the big run"), "reps": (10, 3, "cold starts of each server"),
         "calls": (10, 3, "sequential calls per tool"), "clients": (50, 10, "concurrent HTTP clients")}  # fmt: skip
ENV = {**os.environ, "FASTMCP_LOG_LEVEL": "ERROR", "FASTMCP_SHOW_SERVER_BANNER": "false",
       "FASTMCP_CHECK_FOR_UPDATES": "off"}  # fmt: skip
BARE = '''
from fastmcp import FastMCP
mcp = FastMCP("bare")
@mcp.tool
def ping(x: int) -> int:
    """Echo x."""
    return x
mcp.run(show_banner=False)
'''


def calls(run: str) -> dict[str, dict[str, Any]]:
    return {
        "list_runs": {},
        "run_summary": {"run": run},
        "diagnose": {"run": run},
        "training_status": {"run": run},
        "sustainability_report": {"run": run},
        "get_metric_series": {"run": run, "keys": ["train/loss", "lr"], "max_points": 500},
        "layer_health": {"run": run},
        "list_events": {"run": run},
        "query_sql": {"sql": "SELECT key, count(*), avg(value), max(step) FROM scalars GROUP BY key"},
        "plot_metrics": {"runs": [run], "keys": ["train/loss"]},
        "get_beliefs": {"run": run},
    }


async def cold_start(command: list[str]) -> float:
    from mcp import Client, StdioServerParameters

    params = StdioServerParameters(command=command[0], args=command[1:], env=ENV)
    started = time.perf_counter()
    async with Client(params, mode="legacy") as client:
        elapsed = time.perf_counter() - started
        assert client.server_info is not None
    return elapsed


def part_a(a: Any, tmp: Path) -> dict[str, Any]:
    bare = tmp / "bare_server.py"
    bare.write_text(BARE)
    serve = [sys.executable, "-m", "trainatlas", "serve", "--root", str(tmp / "big")]
    commands = {"bare fastmcp (floor)": [sys.executable, str(bare)], "trainatlas serve": serve}
    times: dict[str, list[float]] = {k: [] for k in commands}
    asyncio.run(cold_start(commands["bare fastmcp (floor)"]))  # warm the page cache
    for _ in range(a.reps):
        for name, command in commands.items():
            times[name].append(asyncio.run(cold_start(command)))
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["trainatlas serve"] / med["bare fastmcp (floor)"]
    C.table("a. cold start, launch to initialize answered (stdio), median s",
            ["server", "median s", "min s", "vs floor"],
            [[k, med[k], min(v), med[k] / med["bare fastmcp (floor)"]] for k, v in times.items()])  # fmt: skip
    print(f"goal: within 1.2x of the floor: {'PASS' if ratio <= 1.2 else 'MISS'} ({ratio:.2f}x)")
    return {"median_s": med, "ratio": ratio, "raw": times}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PeakRSS:
    """Samples a process's RSS every 20 ms in a thread."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.02)

    def __enter__(self) -> PeakRSS:
        self.peak = self.proc.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def timed_call(client: Any, tool: str, args: dict[str, Any]) -> float:
    started = time.perf_counter()
    result = await client.call_tool(tool, args)
    elapsed = time.perf_counter() - started
    assert not result.is_error, (tool, result.content[0].text)
    return elapsed


async def part_b_calls(url: str, a: Any) -> dict[str, Any]:
    from mcp import Client

    plan = calls("big")
    alone: dict[str, list[float]] = {}
    async with Client(url) as client:
        for tool, args in plan.items():
            await timed_call(client, tool, args)  # first call: caches, imports
            alone[tool] = [await timed_call(client, tool, args) for _ in range(a.calls)]

    async def one_client() -> list[tuple[str, float]]:
        async with Client(url) as client:
            return [(tool, await timed_call(client, tool, args)) for tool, args in plan.items()]

    started = time.perf_counter()
    together = await asyncio.gather(*(one_client() for _ in range(a.clients)))
    wall = time.perf_counter() - started
    return {"alone": alone, "together": [x for client in together for x in client], "together_wall_s": wall}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def part_b(a: Any, tmp: Path) -> dict[str, Any]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "trainatlas", "serve", "--http", "--port", str(port),
                             "--root", str(tmp / "big")], env=ENV, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        idle = psutil.Process(proc.pid).memory_info().rss
        with PeakRSS(proc.pid) as rss:
            res = asyncio.run(part_b_calls(f"http://127.0.0.1:{port}/mcp", a))
    finally:
        proc.terminate()
        proc.wait(10)
    rows = []
    for tool, times in res["alone"].items():
        under_load = [t for name, t in res["together"] if name == tool]
        rows.append([tool, pct(times, 0.5) * 1000, pct(times, 0.95) * 1000,
                     pct(under_load, 0.5) * 1000, pct(under_load, 0.95) * 1000])  # fmt: skip
    C.table(f"b. tool latency in ms on a {a.steps:,}-step run (HTTP): alone ({a.calls} calls each) and with "
            f"{a.clients} concurrent clients", ["tool", "p50", "p95", f"p50 x{a.clients}", f"p95 x{a.clients}"],
            rows)  # fmt: skip
    mb = 2**20
    print(f"{a.clients} clients x {len(res['alone'])} tools took {res['together_wall_s']:.1f} s; server RSS idle "
          f"{idle / mb:.0f} MB, peak {rss.peak / mb:.0f} MB (+{(rss.peak - idle) / mb:.0f} MB)")  # fmt: skip
    return {"rows": rows, "idle_rss_mb": idle / mb, "peak_rss_mb": rss.peak / mb, "wall_s": res["together_wall_s"]}


def main() -> None:
    p = C.parser(__doc__, SIZES)
    p.add_argument("--only", nargs="*", choices=["a", "b"], default=["a", "b"])
    a = C.resolve(p.parse_args(), SIZES)
    out: dict[str, Any] = {"machine": C.machine()}
    print(f"load average before: {out['machine']['load_avg']}")
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        write_run(tmp / "big", "big", a.steps, layer_every=100, shards=50, seed=0)
        if "a" in a.only:
            out["cold_start"] = part_a(a, tmp)
        if "b" in a.only:
            out["latency"] = part_b(a, tmp)
    print(f"load average after: {os.getloadavg()}")
    C.emit_json(a.json, out)


if __name__ == "__main__":
    main()
