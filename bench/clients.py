"""Python clients of the side-by-side benchmark (run by bench/run; not a test).

    python bench/clients.py CLIENT BASE_URL IDS_FILE CONCURRENCY [CA_PEM]
    python bench/clients.py sign LIB [N]

Each client queries every id of IDS_FILE (GET /v1/images/generations/{id}) and prints one JSON
line: n, ok, errors, seconds (the queries only, not the interpreter start), rps. The peers'
packages (PyJWT, requests, aiohttp, httpx) are installed by bench/run into a scratch venv; only
the imports of the chosen client are made, so a run never needs the others.

Peers are written the way their own docs show, with the care a user would take (a cached
token, one pooled session), except `docs-sample`, which is the official sample as published:
a fresh token and a new connection per call, sequential.
"""

import json
import sys
import threading
import time
import warnings

# PyJWT warns on every short HMAC key; the emulator's test SecretKey is 18 bytes (real ones
# are longer), so the warning would only add noise and a stderr write to the peers' figures.
warnings.filterwarnings("ignore", message="The HMAC key")

AK = "klingwatch-test-ak"
SK = "klingwatch-test-sk"
PATH = "/v1/images/generations/"


def pyjwt_token(now=None):
    import jwt

    now = int(time.time()) if now is None else now
    # The official sample, verbatim in substance.
    headers = {"alg": "HS256", "typ": "JWT"}
    payload = {"iss": AK, "exp": now + 1800, "nbf": now - 5}
    return jwt.encode(payload, SK, headers=headers)


def ok_body(status, text):
    if status != 200:
        return False
    try:
        return json.loads(text).get("code") == 0
    except ValueError:
        return False


# --- klingwatch ---------------------------------------------------------------------------


def kw_sync(url, ids, conc, ca):
    import klingwatch

    c = klingwatch.Client(AK, SK, base_url=url, ca_cert=ca)
    t0 = time.perf_counter()
    res = c.get_many(ids, concurrency=conc)
    dt = time.perf_counter() - t0
    return sum(isinstance(r, klingwatch.Task) for r in res), dt


def kw_async(url, ids, conc, ca):
    import asyncio

    import klingwatch

    async def main():
        c = klingwatch.AsyncClient(AK, SK, base_url=url, ca_cert=ca)
        t0 = time.perf_counter()
        res = await c.get_many(ids, concurrency=conc)
        return sum(isinstance(r, klingwatch.Task) for r in res), time.perf_counter() - t0

    return asyncio.run(main())


def kw_gather(url, ids, conc, ca):
    """AsyncClient.get_task under asyncio.gather, 64 at a time (a semaphore)."""
    import asyncio

    import klingwatch

    async def main():
        c = klingwatch.AsyncClient(AK, SK, base_url=url, ca_cert=ca)
        sem = asyncio.Semaphore(conc)

        async def one(i):
            async with sem:
                try:
                    await c.get_task(i)
                    return 1
                except klingwatch.KlingError:
                    return 0

        t0 = time.perf_counter()
        res = await asyncio.gather(*(one(i) for i in ids))
        return sum(res), time.perf_counter() - t0

    return asyncio.run(main())


# --- peers --------------------------------------------------------------------------------


def docs_sample(url, ids, conc, ca):
    import requests

    ok = 0
    t0 = time.perf_counter()
    for i in ids:
        token = pyjwt_token()
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        r = requests.get(url + PATH + i, headers=headers, verify=ca or True)
        ok += ok_body(r.status_code, r.text)
    return ok, time.perf_counter() - t0


class Token:
    """A cached PyJWT token, re-signed 60 s before expiry (what a careful user writes)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.exp = 0
        self.value = ""

    def get(self):
        now = int(time.time())
        if now < self.exp - 60:
            return self.value
        with self.lock:
            if now >= self.exp - 60:
                self.value = pyjwt_token(now)
                self.exp = now + 1800
            return self.value


def requests_session(url, ids, conc, ca):
    import requests
    from requests.adapters import HTTPAdapter

    tok = Token()
    local = threading.local()
    it = iter(ids)
    it_lock = threading.Lock()
    counts = []

    def session():
        s = getattr(local, "s", None)
        if s is None:
            s = local.s = requests.Session()
            s.mount(url, HTTPAdapter(pool_connections=1, pool_maxsize=1))
            s.verify = ca or True
        return s

    def worker():
        s = session()
        ok = 0
        while True:
            with it_lock:
                i = next(it, None)
            if i is None:
                break
            r = s.get(url + PATH + i, headers={"Authorization": "Bearer " + tok.get()},
                      verify=ca or True)
            ok += ok_body(r.status_code, r.text)
        counts.append(ok)

    threads = [threading.Thread(target=worker) for _ in range(conc)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts), time.perf_counter() - t0


def aiohttp_client(url, ids, conc, ca):
    import asyncio
    import ssl

    import aiohttp

    tok = Token()

    async def main():
        sslctx = ssl.create_default_context(cafile=ca) if ca else None
        conn = aiohttp.TCPConnector(limit=conc, ssl=sslctx if sslctx else None)
        async with aiohttp.ClientSession(connector=conn) as s:
            it = iter(ids)

            async def worker():
                ok = 0
                for i in it:
                    async with s.get(url + PATH + i,
                                     headers={"Authorization": "Bearer " + tok.get()}) as r:
                        ok += ok_body(r.status, await r.text())
                return ok

            t0 = time.perf_counter()
            res = await asyncio.gather(*(worker() for _ in range(conc)))
            return sum(res), time.perf_counter() - t0

    return asyncio.run(main())


def httpx_client(url, ids, conc, ca):
    import asyncio
    import ssl

    import httpx

    tok = Token()

    async def main():
        verify = ssl.create_default_context(cafile=ca) if ca else True
        limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
        async with httpx.AsyncClient(limits=limits, verify=verify) as s:
            it = iter(ids)

            async def worker():
                ok = 0
                for i in it:
                    r = await s.get(url + PATH + i, headers={"Authorization": "Bearer " + tok.get()})
                    ok += ok_body(r.status_code, r.text)
                return ok

            t0 = time.perf_counter()
            res = await asyncio.gather(*(worker() for _ in range(conc)))
            return sum(res), time.perf_counter() - t0

    return asyncio.run(main())


CLIENTS = {
    "kw-sync": kw_sync,
    "kw-async": kw_async,
    "kw-gather": kw_gather,
    "docs-sample": docs_sample,
    "requests-session": requests_session,
    "aiohttp": aiohttp_client,
    "httpx": httpx_client,
}


def sign(lib, n):
    """ns per token: `fresh` signs a new token each call; `cached` is the cached path."""
    now = int(time.time())
    if lib == "klingwatch":
        import klingwatch

        t0 = time.perf_counter()
        for k in range(n):
            klingwatch.sign_jwt(AK, SK, now + k % 7)
        fresh = time.perf_counter() - t0
        c = klingwatch.Client(AK, SK, base_url="http://127.0.0.1:9")
        t0 = time.perf_counter()
        for _ in range(n):
            c.token()
        cached = time.perf_counter() - t0
    elif lib == "pyjwt":
        t0 = time.perf_counter()
        for k in range(n):
            pyjwt_token(now + k % 7)
        fresh = time.perf_counter() - t0
        tok = Token()
        t0 = time.perf_counter()
        for _ in range(n):
            tok.get()
        cached = time.perf_counter() - t0
    else:
        raise SystemExit(f"unknown lib {lib}")
    print(json.dumps({"fresh_ns": round(fresh / n * 1e9), "cached_ns": round(cached / n * 1e9)}))


def main():
    if sys.argv[1] == "sign":
        sign(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 100_000)
        return
    name, url, ids_file, conc = sys.argv[1:5]
    ca = sys.argv[5] if len(sys.argv) > 5 and sys.argv[5] else None
    with open(ids_file) as f:
        ids = [line.strip() for line in f if line.strip()]
    ok, dt = CLIENTS[name](url, ids, int(conc), ca)
    print(json.dumps({"n": len(ids), "ok": ok, "errors": len(ids) - ok,
                      "seconds": round(dt, 4), "rps": round(len(ids) / dt, 1)}))


if __name__ == "__main__":
    main()
