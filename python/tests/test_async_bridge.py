"""How AsyncClient's awaitables reach the event loop: on a loop that watches sockets (every
selector loop) the runtime queues finished calls and wakes the loop once for many; a loop
without `add_reader` (Windows' proactor loop) gets pyo3-async-runtimes' path. Both must give
each awaitable its own result, on the right loop, and stop the Rust work when cancelled."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any, Callable, Dict, List

import pytest

from klingwatch import AsyncClient, Task
from klingwatch.errors import NotFoundError

from _mockctl import ctl, seed, statuses_until
from test_fork import _in_child
from test_vectors import AK, SK


class NoReaderLoop(asyncio.SelectorEventLoop):
    """A loop that cannot watch a socket, as the proactor loop on Windows."""

    def add_reader(self, fd: Any, callback: Callable[..., Any], *args: Any) -> None:
        raise NotImplementedError


def run_on(new_loop: Callable[[], asyncio.AbstractEventLoop], coro: Any) -> Any:
    loop = new_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


LOOPS = {"selector": asyncio.SelectorEventLoop, "no_reader": NoReaderLoop}


@pytest.fixture(params=sorted(LOOPS))
def new_loop(request: pytest.FixtureRequest) -> Callable[[], asyncio.AbstractEventLoop]:
    return LOOPS[request.param]


def client(url: str) -> AsyncClient:
    return AsyncClient(access_key=AK, secret_key=SK, base_url=url, timeout=10.0)


def test_many_awaitables_each_get_their_own_result(new_loop: Any, mock_url: str) -> None:
    ids = [seed(mock_url, "succeed") for _ in range(40)]
    c = client(mock_url)

    async def one(i: int) -> Any:
        tid = ids[i % len(ids)] if i % 5 else f"missing-{i}"
        try:
            return (tid, await c.get_image_task(tid))
        except NotFoundError as e:
            return (tid, e)

    async def main() -> List[Any]:
        return await asyncio.gather(*(one(i) for i in range(400)))

    got = run_on(new_loop, main())
    assert len(got) == 400
    for tid, r in got:
        if tid.startswith("missing-"):
            assert isinstance(r, NotFoundError)
        else:
            assert isinstance(r, Task) and r.id == tid


def test_cancelling_an_awaitable_stops_its_request(new_loop: Any, mock_url: str) -> None:
    tid = seed(mock_url, "succeed")
    ctl(mock_url, "POST", "/faults", {"fault": "delay", "delay_ms": 3000, "match": {"task_id": tid}})
    c = client(mock_url)

    async def main() -> None:
        start = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(c.get_image_task(tid), timeout=0.3)
        assert time.monotonic() - start < 1.0
        # The loop goes on resolving other calls after the cancelled one.
        assert (await c.get_image_task(seed(mock_url, "succeed"))).status.value == "succeed"

    run_on(new_loop, main())
    # The emulator saw the client go away (499) well before its 3 s delay ended.
    statuses = statuses_until(mock_url, tid, 499)
    assert 499 in statuses, statuses


def test_loops_in_two_threads_at_once_each_get_their_results(mock_url: str) -> None:
    ids = [seed(mock_url, "succeed") for _ in range(20)]
    c = client(mock_url)
    out: Dict[str, Any] = {}

    def worker(name: str, new_loop: Callable[[], asyncio.AbstractEventLoop]) -> None:
        async def main() -> List[str]:
            loop = asyncio.get_running_loop()
            tasks = await asyncio.gather(*(c.get_image_task(t) for t in ids * 5))
            # Still on this thread's loop after every await.
            assert asyncio.get_running_loop() is loop
            return [t.id for t in tasks]

        try:
            out[name] = run_on(new_loop, main())
        except BaseException as e:  # noqa: BLE001
            out[name] = e

    threads = [
        threading.Thread(target=worker, args=(f"{kind}-{n}", LOOPS[kind]))
        for n in range(2)
        for kind in sorted(LOOPS)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(out) == 4
    for name, got in out.items():
        assert got == ids * 5, (name, got)


def test_loop_after_loop_in_one_thread(mock_url: str) -> None:
    tid = seed(mock_url, "succeed")
    c = client(mock_url)
    for _ in range(5):
        assert asyncio.run(c.get_image_task(tid)).id == tid


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_async_calls_in_a_forked_child(mock_url: str) -> None:
    tid = seed(mock_url, "succeed")
    c = client(mock_url)
    kept = asyncio.new_event_loop()
    assert kept.run_until_complete(c.get_image_task(tid)).id == tid  # a bridge in the parent

    def child() -> bool:
        fresh = asyncio.run(c.get_image_task(tid)).id == tid
        # The parent's loop, carried over the fork, takes the fallback in the child.
        carried = kept.run_until_complete(c.get_image_task(tid)).id == tid
        return fresh and carried

    status = _in_child(child)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    # The parent's loop still gets its wake-ups.
    assert kept.run_until_complete(c.get_image_task(tid)).id == tid
    kept.close()
