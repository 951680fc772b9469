"""Python twin of crates/klingwatch/examples/watch_many.rs (run by bench/run; not a test).

    python bench/watch.py BASE_URL N

Creates N image tasks on an emulator started with --processing-after-ms 2000
--finish-after-ms 20000, watches them all with `Client.watch` (concurrency 64, poll interval
1 s growing to 10 s, as the Rust example) and prints one JSON line: tasks, terminal, updates,
errors, detection lag percentiles (observed - server updated_at, ms) and this process's peak
RSS (VmHWM, KiB).
"""

import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import klingwatch


def vm_hwm_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def main():
    url, n = sys.argv[1], int(sys.argv[2])
    c = klingwatch.Client("klingwatch-test-ak", "klingwatch-test-sk", base_url=url)
    t0 = time.time()
    with ThreadPoolExecutor(16) as ex:
        ids = list(ex.map(lambda i: c.create_task("image_generation", {"prompt": f"bench {i}"}).id,
                          range(n)))
    created_s = time.time() - t0
    lags, updates, errors = [], 0, 0
    for u in c.watch(ids, timeout=300, poll_interval=1.0, max_poll_interval=10.0,
                     concurrency=64, return_exceptions=True):
        if isinstance(u, klingwatch.KlingError):
            errors += 1
            continue
        updates += 1
        if u.task.is_terminal:
            lags.append(time.time() * 1000 - u.task.updated_at.timestamp() * 1000)
    lags.sort()

    def pct(p):
        return round(lags[int((len(lags) - 1) * p)]) if lags else None

    print(json.dumps({"tasks": n, "terminal": len(lags), "updates": updates, "errors": errors,
                      "create_s": round(created_s, 1), "total_s": round(time.time() - t0, 1),
                      "lag_p50_ms": pct(0.5), "lag_p99_ms": pct(0.99), "lag_max_ms": pct(1.0),
                      "vmhwm_kib": vm_hwm_kib()}))


if __name__ == "__main__":
    main()
