"""By-hand A/B of the AsyncClient paths (a profiling aid; `bench/run` does not use it).

    python bench/async-ab.py MODE URL CA_PEM N      # MODE: async-many | gather

Runs one batch of N seeded ids (`bench-000001`...) at concurrency 64 after one warm-up call,
and prints req/s and the process's CPU per query over the batch alone (no start-up):
`async-many` is `AsyncClient.get_many`, `gather` one `AsyncClient.get_task` per id under
`asyncio.gather` with a semaphore of 64. Run it from two venvs (two wheels), alternating, to
compare builds; docs/benchmarks.md quotes such runs."""

import asyncio
import resource
import sys
import time

import klingwatch

AK, SK = "klingwatch-test-ak", "klingwatch-test-sk"


async def main(mode: str, url: str, ca: str, n: int) -> None:
    ids = [f"bench-{i:06d}" for i in range(1, n + 1)]
    c = klingwatch.AsyncClient(AK, SK, base_url=url, ca_cert=ca or None)
    await c.get_task(ids[0])
    t0 = time.perf_counter()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    if mode == "async-many":
        res = await c.get_many(ids, concurrency=64)
    elif mode == "gather":
        sem = asyncio.Semaphore(64)

        async def one(i: str) -> object:
            async with sem:
                return await c.get_task(i)

        res = await asyncio.gather(*(one(i) for i in ids))
    else:
        raise SystemExit(f"unknown mode {mode}")
    dt = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    ok = sum(isinstance(r, klingwatch.Task) for r in res)
    cpu = (r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) / n * 1e6
    print(f"{mode} ok={ok} req/s={n / dt:.0f} cpu_us/q={cpu:.1f}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
