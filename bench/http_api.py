"""http api: the HTTP API of a running console while a process logs 100,000 lines a second.

A real headless console (``up --headless``, ``[http] bind = "127.0.0.1:0"``) runs ``logger``,
which writes 1,000 lines every 10 ms (each starting with the time it was written) for ever.
With its first admin key, this measures:

- ``GET /api/processes`` and ``GET /api/processes/logger/logs?lines=50``: 10 concurrent clients
  (httpx.AsyncClient, one connection each) for DURATION seconds each: requests a second and the
  p50/p99 latency of each request as the clients saw it; in the notes, the bucket of the
  console's own duration histogram (/metrics) under which 99% of them finished, the server's
  share without the clients' queueing;
- the stream's delivery lag: one /api/stream subscriber for DURATION seconds; for each line it
  receives, the time from the child writing it (the time in the line) to the subscriber having
  it parsed; p50/p99 (the hub reads at most 2,000 lines a tick, 40,000 a second: the rest are
  skipped and reported as missed, so the lag is that of the newest lines);
- the console's capture rate (lines a second stored, from ``status``) and its CPU, for DURATION
  seconds with no subscriber and then with 10 subscribers reading every batch.

Targets: p99 under 100 ms for both requests; stream lag p99 under 250 ms (five batch windows);
capture with 10 subscribers at least 0.95x of without (the logger is paced, so both should be its
100,000 lines/s: a smaller figure means the console fell behind).
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    Row,
    Skip,
    code_root,
    fmt_ms,
    fmt_rate,
    headless_console,
    main,
    median,
    package_shim,
    percentile,
    process_cpu_seconds,
    startup_env,
)

RATE = 100_000  # lines a second the logger writes
CLIENTS = 10
SUBSCRIBERS = 10
DURATION = 5.0
QUICK_DURATION = 1.0
REQUEST_TARGET = 0.100
LAG_TARGET = 0.250
CAPTURE_TARGET = 0.95
READY_TIMEOUT = 60.0
ENTRY_POINT = "import sys; from lacrimosa.api.cli import main; sys.exit(main())"
LOGGER = (
    "import sys, time\n"
    "out = sys.stdout\n"
    "pad = 'x' * 60\n"
    "next_write = time.time()\n"
    "while True:\n"
    "    now = time.time()\n"
    "    out.write(''.join(f'{now:.6f} {i} {pad}\\n' for i in range(1000)))\n"
    "    out.flush()\n"
    "    next_write += 0.01\n"
    "    time.sleep(max(0.0, next_write - time.time()))\n"
)


def _config() -> str:
    cmd = f"{shlex.quote(sys.executable)} -c {shlex.quote(LOGGER)}"
    return (
        f"[processes.logger]\ncmd = {json.dumps(cmd)}\n\n"
        '[logs]\nbudget = "256MiB"\n\n'
        '[http]\nbind = "127.0.0.1:0"\n'
    )


def _wait_for_address(log: Path) -> str:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        found = re.search(r"HTTP API on http://(\S+)/api/", text)
        if found and "console up" in text:
            return found.group(1)
        time.sleep(0.1)
    raise RuntimeError(f"the console did not start serving HTTP:\n{log.read_text()[-2000:]}")


async def _load(url: str, key: str, path: str, seconds: float) -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    failures = 0
    headers = {"Authorization": f"Bearer {key}"}

    async def client() -> None:
        nonlocal failures
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as http:
            await http.get(path)  # connected before the clock starts
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                started = time.perf_counter()
                response = await http.get(path)
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    failures += 1

    before = _server_buckets(url, key, path)
    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    elapsed = time.perf_counter() - started
    after = _server_buckets(url, key, path)
    return {
        "requests": len(latencies),
        "per_second": len(latencies) / elapsed,
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
        "failures": failures,
        "server_p99_under": _bucket_of({le: after[le] - before.get(le, 0) for le in after}, 0.99),
    }


def _server_buckets(url: str, key: str, path: str) -> dict[float, float]:
    """The console's own request duration histogram for ``path``'s route (cumulative counts by
    upper bound), from /metrics: the time the server took, without the client's queueing."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    route = {
        "/api/processes": "/api/processes",
        "/api/processes/logger/logs?lines=50": "/api/processes/{name}/logs",
    }[path]
    text = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {key}"}).text
    return {
        float(sample.labels["le"]): sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "lacrimosa_http_request_duration_seconds"
        for sample in family.samples
        if sample.name.endswith("_bucket") and sample.labels.get("route") == route
    }


def _bucket_of(buckets: dict[float, float], quantile: float) -> float:
    """The smallest bucket bound under which ``quantile`` of the requests finished."""
    total = max(buckets.values(), default=0.0)
    for bound in sorted(buckets):
        if total and buckets[bound] >= quantile * total:
            return bound
    return float("inf")


def _subscribe(address: str, key: str) -> Any:
    from websockets.sync.client import connect

    return connect(
        f"ws://{address}/api/stream",
        additional_headers={"Authorization": f"Bearer {key}"},
        open_timeout=10,
        max_size=None,
    )


def _stream_lag(address: str, key: str, seconds: float) -> dict[str, Any]:
    lags: list[float] = []
    missed = 0
    with _subscribe(address, key) as ws:
        json.loads(ws.recv(timeout=10))  # connected
        end = time.time() + seconds
        while time.time() < end:
            message = json.loads(ws.recv(timeout=10))
            now = time.time()
            missed += message.get("missed", 0)
            for line in message.get("lines", ()):
                lags.append(now - float(line["text"].split(" ", 1)[0]))
    return {
        "lines": len(lags),
        "missed": missed,
        "p50": percentile(lags, 50) if lags else float("nan"),
        "p99": percentile(lags, 99) if lags else float("nan"),
    }


def _status(address: str, key: str) -> dict[str, Any]:
    import httpx

    reply = httpx.get(
        f"http://{address}/api/processes/logger", headers={"Authorization": f"Bearer {key}"}
    )
    return dict(reply.json()["result"])


def _capture(address: str, key: str, pid: int, seconds: float) -> dict[str, float]:
    before, cpu0, t0 = _status(address, key)["stdout_lines"], process_cpu_seconds(pid), time.time()
    time.sleep(seconds)
    after, cpu1, t1 = _status(address, key)["stdout_lines"], process_cpu_seconds(pid), time.time()
    return {"per_second": (after - before) / (t1 - t0), "cpu": (cpu1 - cpu0) / (t1 - t0)}


def _capture_with_subscribers(address: str, key: str, pid: int, seconds: float) -> dict[str, Any]:
    stop = threading.Event()
    received = [0] * SUBSCRIBERS
    connected = threading.Barrier(SUBSCRIBERS + 1)

    def subscriber(index: int) -> None:
        with _subscribe(address, key) as ws:
            ws.recv(timeout=10)
            connected.wait()
            while not stop.is_set():
                try:
                    received[index] += len(ws.recv(timeout=1))
                except TimeoutError:
                    continue

    threads = [threading.Thread(target=subscriber, args=(i,), daemon=True) for i in range(10)]
    for thread in threads:
        thread.start()
    connected.wait(timeout=30)
    try:
        result: dict[str, Any] = dict(_capture(address, key, pid, seconds))
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
    result["bytes_per_subscriber"] = median(received) / seconds
    return result


def measure(seconds: float) -> dict[str, Any]:
    root = code_root()
    with tempfile.TemporaryDirectory(prefix="lacrimosa-bench-http-") as tmp:
        project = Path(tmp) / "project"
        project.mkdir()
        config = project / "lacrimosa.toml"
        config.write_text(_config())
        env = startup_env(Path(tmp) / "pycache")
        env["PYTHONPATH"] = str(package_shim(root, Path(tmp) / "shim"))
        env.pop("LACRIMOSA_HOME", None)
        cli = [sys.executable, "-c", ENTRY_POINT]
        log = Path(tmp) / "console.log"
        with headless_console(config, env, log, cli) as console:
            address = _wait_for_address(log)
            key = (project / ".lacrimosa" / "http-admin.key").read_text().strip()
            url = f"http://{address}"
            time.sleep(0.5)  # the logger under way
            results: dict[str, Any] = {
                "processes": asyncio.run(_load(url, key, "/api/processes", seconds)),
                "logs": asyncio.run(
                    _load(url, key, "/api/processes/logger/logs?lines=50", seconds)
                ),
                "lag": _stream_lag(address, key, seconds),
                "capture_alone": _capture(address, key, console.pid, seconds),
                "capture_subscribed": _capture_with_subscribers(address, key, console.pid, seconds),
            }
    return results


def run(quick: bool) -> list[Row]:
    root = code_root()
    if not (root / "api" / "http" / "server.py").is_file():
        raise Skip("api/http/server.py does not exist yet")
    seconds = QUICK_DURATION if quick else DURATION
    r = measure(seconds)
    rows = []
    for name, label in (("processes", "GET /api/processes"), ("logs", "GET logs?lines=50")):
        load = r[name]
        rows.append(
            Row(
                f"http api: {label}, {CLIENTS} clients",
                f"{load['per_second']:,.0f} req/s, p50 {fmt_ms(load['p50'])}, "
                f"p99 {fmt_ms(load['p99'])}",
                f"while logging {RATE:,} lines/s",
                None,
                f"p99 < {fmt_ms(REQUEST_TARGET)}",
                load["p99"] < REQUEST_TARGET and load["failures"] == 0,
                notes=[
                    f"{load['requests']} requests, {load['failures']} not 200; server side "
                    f"(the console's own histogram): 99% within {fmt_ms(load['server_p99_under'])}"
                ],
                data=load,
            )
        )
    lag = r["lag"]
    rows.append(
        Row(
            "http api: stream delivery lag (child wrote -> subscriber has it)",
            f"p50 {fmt_ms(lag['p50'])}, p99 {fmt_ms(lag['p99'])}",
            f"{lag['lines']:,} lines received, {lag['missed']:,} skipped",
            None,
            f"p99 < {fmt_ms(LAG_TARGET)}",
            lag["p99"] < LAG_TARGET,
            data=lag,
        )
    )
    alone, subscribed = r["capture_alone"], r["capture_subscribed"]
    ratio = subscribed["per_second"] / alone["per_second"] if alone["per_second"] else 0.0
    rows.append(
        Row(
            f"http api: capture with {SUBSCRIBERS} stream subscribers",
            fmt_rate(subscribed["per_second"]),
            f"{fmt_rate(alone['per_second'])} with none",
            ratio,
            f">= {CAPTURE_TARGET}x",
            ratio >= CAPTURE_TARGET,
            notes=[
                f"console CPU: {alone['cpu']:.0%} with none, {subscribed['cpu']:.0%} with "
                f"{SUBSCRIBERS} subscribers",
                f"each subscriber received {subscribed['bytes_per_subscriber'] / 1e6:.1f} MB/s",
            ],
            data={"alone": alone, "subscribed": subscribed},
        )
    )
    return rows


if __name__ == "__main__":
    sys.exit(main(run, __doc__))
