"""Hostile bodies against ragtune's HTTP server: its peak memory and /health's latency meanwhile.

    python eval/server_hostile.py --out eval/results/server_hostile.json [--model default]
        [--clients 4] [--mb 31.5] [--rounds 3]

Starts ``python -m ragtune_server`` on 127.0.0.1 (the bundled model by default,
no key, no store), waits for /health and sends one small request (warm-up).
Then, ``--rounds`` times, ``--clients`` threads each POST one /v1/embeddings
body of ``--mb`` MB whose bulk is an ignored field (``{"input": "x", "user":
[[],[],…]}``, under the 33.8 MB body limit; issue 28 measured 7.6 s, ~800 MB
of RSS each and 4 GB for four before the server bounded what it parses),
released together by a barrier. Meanwhile one thread samples the server
process's RSS (psutil, else /proc) every 10 ms and another times GET /health
back to back. Reports each request's status, error code and seconds, the RSS
idle/peak/after and the kernel's peak (VmHWM, which includes start-up), /health's
latencies, and whether the acceptance holds: peak RSS under 1.5 GB and every
/health within 1 s. Client and server share the machine's CPUs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from load_server import HOST, Server, free_port, start_server, wait_ready

from ragtune._io import write_json
from ragtune.machine import machine_info, package_versions

RSS_LIMIT_MB = 1536.0
HEALTH_LIMIT_S = 1.0


def rss_mb(pid: int) -> tuple[float, float | None]:
    """(resident MB now, the kernel's peak resident MB or None) of process ``pid``."""
    try:
        import psutil

        info = psutil.Process(pid).memory_info()
        now = info.rss / 2**20
    except ImportError:
        now = None
    status = Path(f"/proc/{pid}/status")
    fields = {}
    if status.exists():
        for line in status.read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024
    if now is None:
        now = fields["VmRSS"]
    return now, fields.get("VmHWM")


def junk_body(mb: float) -> bytes:
    """A JSON body of ``mb`` MB: one input, and empty lists in the ignored ``user`` field."""
    n = int(mb * 1e6 / 3)
    return b'{"input": "x", "user": [' + b"[]," * (n - 1) + b"[]]}"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--model", default="default")
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--mb", type=float, default=31.5)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--startup-timeout", type=float, default=300)
    args = p.parse_args(argv)

    port = free_port()
    url = f"http://{HOST}:{port}"
    cmd = [
        sys.executable, "-m", "ragtune_server", "--model", args.model, "--host", HOST,
        "--port", str(port), "--log-level", "warning",
    ]
    proc = start_server(Server("ragtune", cmd))
    body = junk_body(args.mb)
    try:
        wait_ready(proc, url, args.startup_timeout)
        warm = httpx.post(f"{url}/v1/embeddings", json={"input": "warm up"}, timeout=120)
        assert warm.status_code == 200, warm.text
        idle, hwm_start = rss_mb(proc.pid)
        samples: list[float] = []
        health_s: list[float] = []
        health_codes: list[int] = []
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                samples.append(rss_mb(proc.pid)[0])
                time.sleep(0.01)

        def probe() -> None:
            with httpx.Client(timeout=60) as c:
                while not done.is_set():
                    t0 = time.perf_counter()
                    r = c.get(f"{url}/health")
                    health_s.append(time.perf_counter() - t0)
                    health_codes.append(r.status_code)

        requests: list[dict[str, Any]] = []

        def hostile(barrier: threading.Barrier) -> None:
            with httpx.Client(timeout=300) as c:
                barrier.wait(timeout=120)
                t0 = time.perf_counter()
                try:
                    r = c.post(
                        f"{url}/v1/embeddings", content=body, headers={"content-type": "application/json"}
                    )
                    code = r.json().get("error", {}).get("code") if r.status_code != 200 else None
                    status: int | str = r.status_code
                except httpx.HTTPError as exc:
                    status, code = type(exc).__name__, None
                requests.append({"status": status, "code": code, "seconds": round(time.perf_counter() - t0, 3)})

        watchers = [threading.Thread(target=sample), threading.Thread(target=probe)]
        for t in watchers:
            t.start()
        t_all = time.perf_counter()
        for _ in range(args.rounds):
            barrier = threading.Barrier(args.clients)
            clients = [threading.Thread(target=hostile, args=(barrier,)) for _ in range(args.clients)]
            for t in clients:
                t.start()
            for t in clients:
                t.join(600)
        wall = time.perf_counter() - t_all
        done.set()
        for t in watchers:
            t.join(60)
        after, hwm_end = rss_mb(proc.pid)
        still = httpx.post(f"{url}/v1/embeddings", json={"input": "still serving"}, timeout=120).status_code
    finally:
        proc.terminate()
        proc.wait(60)

    peak = max([*samples, idle, after])
    health_max = max(health_s) if health_s else None
    report = {
        "benchmark": "server_hostile",
        "protocol": (
            f"{args.rounds} rounds of {args.clients} concurrent POST /v1/embeddings, "
            f"{len(body) / 1e6:.1f} MB each, bulk in the ignored 'user' field ([[],[],...]); "
            "server: python -m ragtune_server on 127.0.0.1, no key, no store"
        ),
        "model": args.model,
        "body_bytes": len(body),
        "requests": requests,
        "wall_s": round(wall, 3),
        "rss_mb": {
            "idle": round(idle, 1),
            "peak_sampled": round(peak, 1),
            "after": round(after, 1),
            "vmhwm_before": None if hwm_start is None else round(hwm_start, 1),
            "vmhwm_after": None if hwm_end is None else round(hwm_end, 1),
            "samples": len(samples),
        },
        "health": {
            "probes": len(health_s),
            "statuses": sorted(set(health_codes)),
            "max_s": None if health_max is None else round(health_max, 4),
            "p50_s": round(statistics.median(health_s), 4) if health_s else None,
        },
        "served_after": still,
        "acceptance": {
            "peak_rss_under_mb": RSS_LIMIT_MB,
            "health_within_s": HEALTH_LIMIT_S,
            "holds": bool(
                peak < RSS_LIMIT_MB
                and health_max is not None
                and health_max < HEALTH_LIMIT_S
                and set(health_codes) == {200}
                and all(isinstance(r["status"], int) and 400 <= r["status"] < 500 for r in requests)
            ),
        },
        "machine": machine_info(),
        "versions": package_versions(),
        "note": "client and server share this machine's CPUs; RSS sampled every 10 ms "
        "(peak_sampled) and the kernel's high-water mark (VmHWM, since start-up)",
    }
    write_json(args.out, report)
    print(json.dumps({k: report[k] for k in ("requests", "rss_mb", "health", "acceptance")}, indent=1))
    return report


if __name__ == "__main__":
    main()
