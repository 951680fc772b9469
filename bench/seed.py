"""Seed task ids into a klingwatch-mock through its control API (used by bench/run).

    python3 bench/seed.py BASE_URL IDS_FILE [CA_PEM]

Every id becomes a succeeded image-generation task with two images, owned by the emulator's
default test account. Standard library only; 8 keep-alive connections in parallel.
"""

import http.client
import json
import ssl
import sys
import threading
from urllib.parse import urlsplit


def main():
    url, ids_file = sys.argv[1], sys.argv[2]
    ca = sys.argv[3] if len(sys.argv) > 3 and sys.argv[3] else None
    u = urlsplit(url)
    with open(ids_file) as f:
        ids = [line.strip() for line in f if line.strip()]
    it = iter(ids)
    lock = threading.Lock()
    failures = []

    def conn():
        if u.scheme == "https":
            return http.client.HTTPSConnection(u.hostname, u.port,
                                               context=ssl.create_default_context(cafile=ca))
        return http.client.HTTPConnection(u.hostname, u.port)

    def worker():
        c = conn()
        while True:
            with lock:
                i = next(it, None)
            if i is None:
                return
            body = json.dumps({"task_id": i, "status": "succeed", "n": 2})
            c.request("POST", "/__mock/tasks", body, {"content-type": "application/json"})
            r = c.getresponse()
            r.read()
            if r.status != 200:
                failures.append((i, r.status))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise SystemExit(f"seeding failed for {len(failures)} ids, first: {failures[0]}")
    print(f"seeded {len(ids)} tasks into {url}")


if __name__ == "__main__":
    main()
