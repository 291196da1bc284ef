"""Demo services for lacrimosa's demo config: each logs in its own way (standard library only)."""

import json
import os
import random
import socket
import struct
import sys
import time
import zlib

GREEN, YELLOW, RED, DIM, RESET = "\033[32m", "\033[33m", "\033[31m", "\033[2m", "\033[0m"


def db() -> None:
    """A database: says when it accepts connections (the demo's ready probe waits for that)."""
    print("db: starting, replaying the write-ahead log", flush=True)
    time.sleep(1.5)
    print("db: ready to accept connections", flush=True)
    while True:
        time.sleep(30)
        print("db: checkpoint complete", flush=True)


def migrate() -> None:
    """A one-shot migration: runs once the database is ready, then exits 0."""
    for step in ("0001_users", "0002_orders", "0003_index_orders"):
        print(f"migrate: applying {step}", flush=True)
        time.sleep(0.3)
    print("migrate: done", flush=True)


def api() -> None:
    """A web API: one access-log line every few hundred ms (logfmt fields after a method
    coloured by status), and a JSON error line on stderr for each 500."""
    paths = ["/users", "/orders", "/health", "/login", "/search?q=lamp"]
    while True:
        status = random.choices([200, 201, 304, 404, 500], weights=[70, 10, 10, 7, 3])[0]
        colour = GREEN if status < 400 else YELLOW if status < 500 else RED
        ms = random.randint(2, 180)
        path = random.choice(paths)
        print(f"{colour}GET{RESET} path={path} status={status} ms={ms}", flush=True)
        if status == 500:
            error = {"level": "error", "msg": f"upstream timeout after {ms}ms", "status": status}
            print(json.dumps({**error, "path": path}), file=sys.stderr, flush=True)
        time.sleep(random.uniform(0.1, 0.5))


def worker() -> None:
    """A queue worker: bursts of job lines (logfmt), warnings on stderr."""
    job = 0
    while True:
        for _ in range(random.randint(5, 40)):
            job += 1
            took = random.uniform(0.1, 9.9)
            print(f'level=info job={job} took_ms={took:.1f} msg="job done"', flush=True)
            if job % 37 == 0:
                print(f'level=warn job={job} msg="job retried"', file=sys.stderr, flush=True)
            time.sleep(0.01)
        time.sleep(random.uniform(0.2, 1.0))


def flaky() -> None:
    """Runs a few seconds, then crashes with a traceback: watch backoff and restarts."""
    print("flaky: starting up", flush=True)
    for i in range(random.randint(2, 6)):
        print(f"flaky: tick {i}", flush=True)
        time.sleep(1)
    print("Traceback (most recent call last):", file=sys.stderr)
    print('  File "flaky.py", line 42, in <module>', file=sys.stderr)
    print("RuntimeError: lost connection to the database", file=sys.stderr, flush=True)
    sys.exit(1)


def clock() -> None:
    """A slow, steady line every second."""
    while True:
        print(f"{DIM}clock{RESET} {time.strftime('%H:%M:%S')}", flush=True)
        time.sleep(1)


def frame(payload: bytes, node: int, stream: int, flags: int = 0, clock: int = 0) -> bytes:
    """A framed lacrimosa event (the format is in the README)."""
    body = struct.pack("<QIHH", clock, node, stream, flags) + payload
    return b"\xa7LQ\x01" + struct.pack("<I", zlib.crc32(body)) + body


def deployer() -> None:
    """Sends events to the console's sequencer: deploy stages as framed events (node = host,
    stream 1 = deploys, stream 2 = alerts), and now and then a plain-text note."""
    host, _, port = os.environ["LACRIMOSA_EVENTS"].rpartition(":")
    address = (host.strip("[]"), int(port))
    sender = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    release = 0
    while True:
        release += 1
        for node in (1, 2, 3):
            for stage in ("pull", "migrate", "restart", "healthy"):
                sender.sendto(frame(f"v1.{release} {stage}".encode(), node, stream=1), address)
                time.sleep(random.uniform(0.05, 0.4))
            print(f"deployed v1.{release} to node {node}", flush=True)
        if random.random() < 0.3:
            sender.sendto(frame(b"p99 latency above 250ms", 2, stream=2, flags=1), address)
        sender.sendto(f"release v1.{release} rolled out".encode(), address)  # plain text
        time.sleep(random.uniform(2, 6))


if __name__ == "__main__":
    services = {
        "db": db,
        "migrate": migrate,
        "api": api,
        "worker": worker,
        "flaky": flaky,
        "clock": clock,
        "deployer": deployer,
    }
    services[sys.argv[1]]()
