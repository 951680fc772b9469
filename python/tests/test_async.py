"""AsyncClient against the emulator: same results and errors as Client, the event loop never
blocked, and asyncio cancellation stopping the Rust work (seen in the emulator's log)."""

from __future__ import annotations

import asyncio
import time
from typing import List

import pytest

from klingwatch import AsyncClient, Client, KlingError, Task, TaskStatus, TaskUpdate
from klingwatch.errors import InvalidRequestError, NotFoundError

from _mockctl import ctl, pin, requests_for, seed, settle, statuses_until
from test_vectors import AK, SK


@pytest.fixture()
def aclient(mock_url: str) -> AsyncClient:
    return AsyncClient(access_key=AK, secret_key=SK, base_url=mock_url, timeout=10.0)


@pytest.fixture()
def client(mock_url: str) -> Client:
    return Client(access_key=AK, secret_key=SK, base_url=mock_url, timeout=10.0)


def test_async_calls_match_sync(aclient: AsyncClient, client: Client, mock_url: str) -> None:
    async def main() -> None:
        t = await aclient.create_image_task("an async fox", external_task_id="async-ext-1")
        assert isinstance(t, Task) and t.external_task_id == "async-ext-1"
        got = await aclient.get_image_task(t.id)
        assert got.id == t.id
        by_ext = await aclient.get_task_by_external_id("async-ext-1")
        assert by_ext.id == t.id
        page = await aclient.list_tasks(page=1, page_size=500)
        assert t.id in {x.id for x in page}
        tok = await aclient.token()
        assert tok.count(".") == 2
        results = await aclient.get_many([t.id, "nope-missing-1", t.id, "bad/id"], concurrency=4)
        assert [type(r) for r in results] == [Task, NotFoundError, Task, InvalidRequestError]
        sync_results = client.get_many([t.id, "nope-missing-1", t.id, "bad/id"], concurrency=4)
        for a, s in zip(results, sync_results):
            if isinstance(a, KlingError):
                assert isinstance(s, KlingError)
                assert (a.kind, a.kling_code, a.http_status, a.retryable) == (
                    s.kind, s.kling_code, s.http_status, s.retryable)
        with pytest.raises(NotFoundError) as ei:
            await aclient.get_image_task("nope-missing-2")
        assert ei.value.kling_code is not None and ei.value.http_status == 404
        with pytest.raises(InvalidRequestError):
            await aclient.get_image_task("../etc/passwd")

    asyncio.run(main())


def test_async_wait_with_coroutine_callback(aclient: AsyncClient) -> None:
    async def main() -> None:
        t = await aclient.create_image_task("a fox waiting")
        seen: List[TaskUpdate] = []

        async def on_update(u: TaskUpdate) -> None:
            await asyncio.sleep(0)
            seen.append(u)

        done = await aclient.wait_image_task(t.id, timeout=30.0, poll_interval=0.05,
                                             on_update=on_update)
        assert done.status == TaskStatus.SUCCEED
        assert seen[0].previous is None and seen[-1].task.status == TaskStatus.SUCCEED
        for a, b in zip(seen, seen[1:]):
            assert b.previous == a.task.status

    asyncio.run(main())


class Boom(Exception):
    pass


def test_async_wait_callback_exception_propagates_and_stops_polling(
    aclient: AsyncClient, mock_url: str
) -> None:
    tid = seed(mock_url, "processing")

    def cb(u: TaskUpdate) -> None:
        raise Boom(u.task.id)

    async def main() -> None:
        with pytest.raises(Boom):
            await aclient.wait(tid, timeout=30.0, poll_interval=0.05, on_update=cb)

    asyncio.run(main())
    n = settle(mock_url, tid)
    time.sleep(0.5)
    assert len(requests_for(mock_url, tid)) == n


def test_cancelling_a_wait_stops_polling(aclient: AsyncClient, mock_url: str) -> None:
    tid = seed(mock_url, "processing")

    async def main() -> None:
        task = asyncio.ensure_future(aclient.wait(tid, timeout=60.0, poll_interval=0.05,
                                                  max_poll_interval=0.05))
        await asyncio.sleep(0.6)
        assert len(requests_for(mock_url, tid)) >= 3  # it was polling
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    n = settle(mock_url, tid)
    time.sleep(0.6)
    assert len(requests_for(mock_url, tid)) == n, "polling went on after cancellation"


def test_wait_for_timeout_cancels_an_in_flight_request(aclient: AsyncClient, mock_url: str) -> None:
    tid = seed(mock_url, "succeed")
    ctl(mock_url, "POST", "/faults", {"fault": "delay", "delay_ms": 3000, "match": {"task_id": tid}})

    async def main() -> None:
        start = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(aclient.get_image_task(tid), timeout=0.3)
        assert time.monotonic() - start < 1.0

    asyncio.run(main())
    # The emulator saw the client go away (499) well before its 3 s delay ended.
    statuses = statuses_until(mock_url, tid, 499)
    assert 499 in statuses, statuses


def test_event_loop_keeps_running_during_a_slow_request(aclient: AsyncClient, mock_url: str) -> None:
    tid = seed(mock_url, "succeed")
    ctl(mock_url, "POST", "/faults", {"fault": "delay", "delay_ms": 800, "match": {"task_id": tid},
                                      "times": 1})

    async def main() -> int:
        ticks = 0
        stop = False

        async def ticker() -> None:
            nonlocal ticks
            while not stop:
                ticks += 1
                await asyncio.sleep(0.01)

        t = asyncio.ensure_future(ticker())
        task = await aclient.get_image_task(tid)
        stop = True
        await t
        assert task.id == tid
        return ticks

    ticks = asyncio.run(main())
    assert ticks >= 30, f"the loop ticked only {ticks} times during an 800 ms request"


def test_async_watch_and_return_exceptions(aclient: AsyncClient) -> None:
    async def main() -> None:
        ids = [(await aclient.create_image_task(f"fox {i}")).id for i in range(3)]
        updates = []
        async for u in aclient.watch(ids + ["missing-in-watch"], timeout=30.0, poll_interval=0.05,
                                     max_poll_interval=0.2, return_exceptions=True):
            updates.append(u)
        errors = [u for u in updates if isinstance(u, KlingError)]
        assert [type(e) for e in errors] == [NotFoundError]
        assert errors[0].task_id == "missing-in-watch"
        finals = {u.task.id: u.task.status for u in updates
                  if isinstance(u, TaskUpdate) and u.task.is_terminal}
        assert finals == {i: TaskStatus.SUCCEED for i in ids}
        with pytest.raises(NotFoundError):
            async for _ in aclient.watch(["missing-in-watch-2"], timeout=10.0, poll_interval=0.05):
                pass

    asyncio.run(main())


def test_async_iter_tasks(aclient: AsyncClient) -> None:
    async def main() -> None:
        ids = {(await aclient.create_image_task(f"async page fox {i}")).id for i in range(4)}
        seen = set()
        async for t in aclient.iter_tasks(page_size=2):
            seen.add(t.id)
        assert ids <= seen

    asyncio.run(main())


def test_breaking_out_of_async_watch_stops_polling(aclient: AsyncClient, mock_url: str) -> None:
    tid = seed(mock_url, "processing")

    async def main() -> None:
        gen = aclient.watch([tid], timeout=60.0, poll_interval=0.05, max_poll_interval=0.05)
        async for u in gen:
            assert u.task.id == tid
            break
        await gen.aclose()  # type: ignore[attr-defined]

    asyncio.run(main())
    n = settle(mock_url, tid)
    time.sleep(0.5)
    assert len(requests_for(mock_url, tid)) == n
    pin(mock_url, tid, "succeed")


@pytest.mark.parametrize("add_reader", [True, False], ids=["selector", "no_reader"])
def test_exit_waits_for_native_tasks_still_in_flight(mock_url: str, add_reader: bool) -> None:
    # On a loop without add_reader (the proactor loop), an AsyncClient task resolves its
    # asyncio future with the GIL held: were the interpreter finalizing by then, the process
    # would abort. At exit, klingwatch waits for such tasks, and for the bridged ones of other
    # loops, so that a call in flight ends.
    import subprocess
    import sys

    tid = seed(mock_url, "succeed")
    ctl(mock_url, "POST", "/faults", {"fault": "delay", "delay_ms": 400, "match": {"task_id": tid}})
    script = f"""
import asyncio
from klingwatch import AsyncClient
c = AsyncClient(access_key={AK!r}, secret_key={SK!r}, base_url={mock_url!r})
async def start():
    return c._native.get_task_async("image_generation", {tid!r})  # left in flight
class NoReaderLoop(asyncio.SelectorEventLoop):
    def add_reader(self, *args):
        raise NotImplementedError
loop = asyncio.new_event_loop() if {add_reader!r} else NoReaderLoop()
loop.run_until_complete(start())
"""
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - start >= 0.35, "the exit did not wait for the request"
    assert [r["status"] for r in requests_for(mock_url, tid)] == [200]
