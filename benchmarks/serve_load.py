"""Load test of ``artylyze serve`` on loopback: N concurrent clients send a fixed number of
``POST /v1/similar`` uploads, once with micro-batching and once without, in one run.

Each configuration gets its own server process (the real ``artylyze serve`` command on a
free 127.0.0.1 port, shipped model and gallery); both run side by side and get the load in
alternating rounds, so they share whatever else the machine is doing. After a warm-up, the
clients (asyncio, keep-alive HTTP/1.1 over raw sockets, so the load generator costs the
cores little) send the example paintings round-robin as raw image bodies until
``--requests`` are done or ``--max-seconds`` pass. Reported per configuration:
requests/s, p50/p99 latency, errors by status, the server's RSS before and after, and the
mean inference batch size (from ``/healthz``). Prints a table and writes
``benchmarks/results/serve_load.json``. Bounded in requests and in time; traffic goes only
to 127.0.0.1.

    python benchmarks/serve_load.py --requests 10000 --clients 16
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "serve_load.json"
HOST = "127.0.0.1"
WARM_UP = 256  # requests before the "before" RSS: onnxruntime's arena grows to the largest batch


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def get_json(port: int, path: str) -> dict:
    with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=10) as r:
        return json.loads(r.read())


def start_server(port: int, args: list[str], log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-c", "from artylyze.cli.main import main; main()", "serve",
           "--host", HOST, "--port", str(port), *args]
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=err, stderr=err)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {log.read_text()[-2000:]}")
        try:
            get_json(port, "/healthz")
            return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("server did not start")


def request_bytes(port: int, body: bytes) -> bytes:
    head = (f"POST /v1/similar?k=10 HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
            f"Content-Type: image/jpeg\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def one_client(port: int, bodies: list[bytes], budget: dict, latencies: list[float],
                     statuses: dict[int, int]) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        while budget["left"] > 0 and time.monotonic() < budget["until"]:
            budget["left"] -= 1
            payload = bodies[budget["left"] % len(bodies)]
            start = time.perf_counter()
            writer.write(payload)
            await writer.drain()
            status_line = await reader.readline()
            length, close = 0, False
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
                elif name.lower() == "connection" and "close" in value.lower():
                    close = True
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            status = int(status_line.split()[1]) if status_line else 0
            statuses[status] = statuses.get(status, 0) + 1
            if close or not status_line:
                writer.close()
                reader, writer = await asyncio.open_connection(HOST, port)
    finally:
        writer.close()


async def load(port: int, bodies: list[bytes], requests: int, clients: int,
               max_seconds: float) -> tuple[float, list[float], dict[int, int]]:
    budget = {"left": requests, "until": time.monotonic() + max_seconds}
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    start = time.perf_counter()
    await asyncio.gather(*(one_client(port, bodies, budget, latencies, statuses)
                           for _ in range(clients)))
    return time.perf_counter() - start, latencies, statuses


class Target:
    """One server configuration under test, and what the load against it measured."""

    def __init__(self, name: str, args: list[str], bodies: list[bytes], tmp: Path) -> None:
        self.name, self.args = name, args
        self.port = free_port()
        self.bodies = [request_bytes(self.port, b) for b in bodies]
        self.proc = start_server(self.port, args, tmp / f"{len(args)}-{self.port}.log")
        self.seconds, self.latencies, self.statuses = 0.0, [], {}

    def load(self, requests: int, clients: int, max_seconds: float) -> None:
        seconds, lat, statuses = asyncio.run(load(self.port, self.bodies, requests, clients,
                                                  max_seconds))
        self.seconds += seconds
        self.latencies += lat
        for k, v in statuses.items():
            self.statuses[k] = self.statuses.get(k, 0) + v

    def batching(self) -> dict:
        return get_json(self.port, "/healthz")["batching"]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def measure(targets: list[Target], opts) -> list[dict]:
    """Rounds of ``requests / rounds`` per target, the order swapped every round, so the
    configurations share whatever else the machine is doing."""
    for t in targets:
        t.load(WARM_UP, opts.clients, opts.max_seconds)
        t.latencies, t.statuses, t.seconds = [], {}, 0.0
    before = {t.name: (rss_mb(t.proc.pid), t.batching()) for t in targets}
    per_round = max(1, opts.requests // opts.rounds)
    for r in range(opts.rounds):
        for t in (targets if r % 2 == 0 else targets[::-1]):
            t.load(per_round, opts.clients, opts.max_seconds / opts.rounds)
    rows = []
    for t in targets:
        rss_before, batches_before = before[t.name]
        batching = t.batching()
        calls = batching["batches"] - batches_before["batches"]
        images = batching["images"] - batches_before["images"]
        ms = np.array(t.latencies) * 1000
        done = len(t.latencies)
        rows.append({
            "config": t.name, "args": t.args, "requests": done, "seconds": round(t.seconds, 2),
            "requests_per_s": round(done / t.seconds, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p99_ms": round(float(np.percentile(ms, 99)), 1),
            "errors": {str(k): v for k, v in t.statuses.items() if k != 200},
            "rss_before_mb": round(rss_before, 1), "rss_after_mb": round(rss_mb(t.proc.pid), 1),
            "mean_batch": round(images / calls, 2) if calls else 0.0})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--batch", type=int, default=16, help="--batch of the batched server")
    parser.add_argument("--device", default="cpu", help="--device of both servers")
    parser.add_argument("--rounds", type=int, default=10,
                        help="interleave the configurations in this many rounds")
    parser.add_argument("--max-seconds", type=float, default=900,
                        help="stop each configuration after this long in all, done or not")
    opts = parser.parse_args()
    bodies = [p.read_bytes() for p in sorted((ROOT / "examples").glob("*.jpg"))]
    device = ["--device", opts.device]
    configs = [("micro-batching", ["--batch", str(opts.batch), *device]),
               ("no batching", ["--batch", "1", *device])]
    with tempfile.TemporaryDirectory() as tmp:
        targets = []
        try:
            for name, args in configs:
                targets.append(Target(name, args, bodies, Path(tmp)))
            rows = measure(targets, opts)
        finally:
            for t in targets:
                t.stop()
    header = ("config", "requests", "req/s", "p50 ms", "p99 ms", "errors", "RSS before MB",
              "RSS after MB", "mean batch")
    print(" | ".join(header))
    for r in rows:
        print(" | ".join(str(x) for x in (
            r["config"], r["requests"], r["requests_per_s"], r["p50_ms"], r["p99_ms"],
            sum(r["errors"].values()), r["rss_before_mb"], r["rss_after_mb"],
            r["mean_batch"])))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "clients": opts.clients, "rounds": opts.rounds,
        "endpoint": "POST /v1/similar?k=10 (raw JPEG body, 224 px)",
        "results": rows}, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
