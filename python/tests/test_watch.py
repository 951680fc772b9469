"""watch() and wait(on_update=...) against the emulator."""

from __future__ import annotations

import pytest

from klingwatch import Client, TaskStatus, TaskUpdate
from klingwatch.errors import KlingError

from test_vectors import AK, SK


@pytest.fixture()
def client(mock_url):
    return Client(access_key=AK, secret_key=SK, base_url=mock_url, timeout=10.0)


def test_wait_on_update_sees_each_change(client):
    t = client.create_image_task("a fox")
    seen = []
    done = client.wait_image_task(t.id, timeout=30.0, poll_interval=0.05, on_update=seen.append)
    assert done.status == TaskStatus.SUCCEED
    assert seen and all(isinstance(u, TaskUpdate) for u in seen)
    assert seen[0].previous is None
    assert seen[-1].task.status == TaskStatus.SUCCEED
    assert seen[-1].previous is not None and seen[-1].previous != TaskStatus.SUCCEED
    for a, b in zip(seen, seen[1:]):
        assert b.previous == a.task.status


class Boom(Exception):
    pass


def test_on_update_exception_propagates(client):
    t = client.create_image_task("a fox")

    def cb(u):
        raise Boom(u.task.id)

    with pytest.raises(Boom) as ei:
        client.wait(t.id, timeout=30.0, poll_interval=0.05, on_update=cb)
    assert str(ei.value) == t.id


def test_on_update_runs_on_the_calling_thread_and_nested_calls_are_refused(client):
    import threading

    from klingwatch.errors import ConfigError

    t = client.create_image_task("a fox")
    threads = set()
    client.wait(t.id, timeout=30.0, poll_interval=0.05,
                on_update=lambda u: threads.add(threading.get_ident()))
    assert threads == {threading.get_ident()}

    # A blocking call from inside the callback would deadlock: it is refused with a clear
    # error, which propagates out of wait like any exception of the callback.
    def nested(u):
        client.get_task(u.task.id)

    with pytest.raises(ConfigError, match="inside another one"):
        client.wait(t.id, timeout=30.0, poll_interval=0.05, on_update=nested)
    # The client still works afterwards.
    assert client.get_task(t.id).id == t.id


def test_watch_many(client):
    ids = [client.create_image_task(f"fox {i}").id for i in range(3)]
    updates = list(client.watch(ids, timeout=30.0, poll_interval=0.05, max_poll_interval=0.2))
    assert all(isinstance(u, TaskUpdate) for u in updates)
    finals = {u.task.id: u.task.status for u in updates if u.task.is_terminal}
    assert finals == {i: TaskStatus.SUCCEED for i in ids}
    with pytest.raises(Exception):
        updates[0].task = None  # frozen


def test_watch_not_found_raises(client):
    with pytest.raises(KlingError):
        list(client.watch(["does-not-exist-123"], timeout=10.0, poll_interval=0.05))


def test_watch_early_close(client):
    ids = [client.create_image_task("fox").id]
    it = client.watch(ids, timeout=30.0, poll_interval=0.05)
    first = next(it)
    assert first.task.id == ids[0]
    it.close()


def test_iter_tasks_pages(client):
    ids = {client.create_image_task(f"page fox {i}").id for i in range(5)}
    seen = [t.id for t in client.iter_tasks(page_size=2)]
    assert ids <= set(seen)
    assert len(seen) == len(set(seen))


def test_task_and_update_pickle_round_trip(client):
    import pickle

    t = client.create_image_task("pickled fox")
    done = client.wait_image_task(t.id, timeout=30.0, poll_interval=0.05)
    back = pickle.loads(pickle.dumps(done))
    assert back == done and back.images == done.images and back.raw == done.raw


@pytest.mark.parametrize("kind", sorted(__import__("klingwatch.errors").errors._BY_KIND))
def test_every_error_kind_pickles(kind):
    import pickle

    from klingwatch.errors import _BY_KIND, _from_native

    e = _from_native(kind, "msg", 429, 1303, "req-1", "task-1", True, 2)
    assert type(e) is _BY_KIND[kind]
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is type(e) and str(back) == str(e)
    for attr in ("http_status", "kling_code", "request_id", "task_id"):
        assert getattr(back, attr, None) == getattr(e, attr, None)
