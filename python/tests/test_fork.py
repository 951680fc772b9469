"""A client used after os.fork() works in the child (it gets its own runtime and
connections) and never hangs; the raw native client refuses clearly."""

from __future__ import annotations

import os
import signal
import sys

import pytest

from klingwatch import Client
from klingwatch.errors import ConfigError

from _mockctl import seed
from test_vectors import AK, SK

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def _in_child(fn) -> int:  # type: ignore[no-untyped-def]
    pid = os.fork()
    if pid == 0:  # child
        signal.alarm(20)  # a hang becomes a SIGALRM death, which the parent sees
        code = 1
        try:
            code = 0 if fn() else 3
        except BaseException as e:  # noqa: BLE001
            sys.stderr.write(f"child failed: {e!r}\n")
            code = 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return status


def test_client_works_after_fork(mock_url: str) -> None:
    client = Client(access_key=AK, secret_key=SK, base_url=mock_url, timeout=10.0)
    tid = seed(mock_url, "succeed")
    assert client.get_image_task(tid).id == tid  # runtime and pool live in the parent

    def child() -> bool:
        return client.get_image_task(tid).id == tid and client.get_many([tid])[0].id == tid

    status = _in_child(child)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    assert client.get_image_task(tid).id == tid  # the parent is unaffected


def test_native_client_refuses_use_in_a_child(mock_url: str) -> None:
    client = Client(access_key=AK, secret_key=SK, base_url=mock_url, timeout=10.0)
    native = client._Base__native  # type: ignore[attr-defined]
    tid = seed(mock_url, "succeed")

    def child() -> bool:
        try:
            native.get_task("image_generation", tid)
        except ConfigError as e:
            return "fork" in str(e)
        return False

    status = _in_child(child)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
