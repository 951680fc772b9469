"""Soak through the Python binding: N status queries (default 100,000) with ~10 % injected
faults (the mix of tests/soak.json), in rounds of get_many at concurrency 64.

Checks: every id gets exactly one Task or one typed KlingError carrying its id (nothing lost,
no other exception), and RSS stays flat (within 10 %) after the warm-up round.

    cargo build --release -p klingwatch-mock
    target/release/klingwatch-mock --port 18082 &
    python python/examples/soak.py http://127.0.0.1:18082 100000

Exit status 0 only when every check holds.
"""

from __future__ import annotations

import collections
import json
import pathlib
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, Optional

from klingwatch import Client, KlingError, Task

ROOT = pathlib.Path(__file__).resolve().parents[2]
AK, SK = "klingwatch-test-ak", "klingwatch-test-sk"


def ctl(url: str, method: str, path: str, body: Optional[Dict[str, Any]] = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"{url}/__mock{path}", data=data, method=method,
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        raw = r.read()
    return json.loads(raw) if raw else None


def rss_kib() -> int:
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main() -> int:
    url = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:18082"
    total = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
    rounds = 10
    per_round = total // rounds
    mix = json.loads((ROOT / "tests" / "soak.json").read_text())
    ctl(url, "POST", "/reset")
    statuses = mix["seed_statuses"]

    def seed(i: int) -> str:
        v = ctl(url, "POST", "/tasks", {"status": statuses[i % len(statuses)]})
        return str((v.get("data") if isinstance(v.get("data"), dict) else v)["task_id"])

    with ThreadPoolExecutor(32) as pool:
        ids = list(pool.map(seed, range(per_round)))
    for f in mix["faults"]:
        ctl(url, "POST", "/faults", {**f, "times": 0,
                                    "match": {"path_prefix": "/v1/images/generations/"}})
    client = Client(access_key=AK, secret_key=SK, base_url=url, timeout=1.0, max_retries=3)

    kinds: collections.Counter = collections.Counter()
    oks = errs = 0
    ok = True
    rss = []
    started = time.monotonic()
    for rnd in range(rounds):
        results = client.get_many(ids, concurrency=64)
        if len(results) != len(ids):
            print(f"LOST: {len(results)} results for {len(ids)} ids")
            ok = False
        for r, tid in zip(results, ids):
            if isinstance(r, Task):
                oks += 1
                if r.id != tid:
                    print(f"MISMATCH: asked {tid}, got {r.id}")
                    ok = False
            elif isinstance(r, KlingError):
                errs += 1
                kinds[r.kind] += 1
                if r.task_id != tid:
                    print(f"ERROR WITHOUT ITS ID: {r!r}")
                    ok = False
            else:
                print(f"NOT A TASK OR KLINGERROR: {r!r}")
                ok = False
        rss.append(rss_kib())
        print(f"round {rnd + 1:>2}: {(rnd + 1) * per_round:>7} queries, {oks:>6} ok, {errs:>5} errors, "
              f"RSS {rss[-1]:>6} KiB", flush=True)
    elapsed = time.monotonic() - started
    warm = max(rss[1], 1)
    peak = max(rss[1:])
    growth = (peak / warm - 1) * 100
    fired = sum(f.get("fired") or 0 for f in ctl(url, "GET", "/faults")["faults"])
    print("---")
    print(f"queries: {oks + errs} in {elapsed:.1f} s ({(oks + errs) / elapsed:.0f}/s)")
    print(f"results: {oks} tasks + {errs} typed errors = {oks + errs} (asked {per_round * rounds})")
    print(f"errors by kind: {dict(sorted(kinds.items()))}")
    print(f"faults fired by the emulator: {fired}")
    print(f"RSS after warm-up: {warm} KiB, peak after: {peak} KiB, growth {growth:.1f} %")
    if oks + errs != per_round * rounds:
        ok = False
    if growth > 10:
        print("RSS GREW MORE THAN 10 %")
        ok = False
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
