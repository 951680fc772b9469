"""download_results: every result saved whole, sync and async; a task without results is
refused before any request."""

from __future__ import annotations

import asyncio
import pathlib

import pytest

from klingwatch import AsyncClient, Client
from klingwatch.errors import InvalidRequestError, TaskFailedError

from _mockctl import ctl, seed
from test_vectors import AK, SK

PNG = b"\x89PNG\r\n\x1a\n"


def test_download_results_sync_and_async(mock_url: str, tmp_path: pathlib.Path) -> None:
    client = Client(access_key=AK, secret_key=SK, base_url=mock_url, timeout=10.0)
    t = client.create_image_task("a fox to keep", n=2)
    done = client.wait_image_task(t.id, timeout=30.0, poll_interval=0.05)
    paths = client.download_results(done, tmp_path / "sync")
    assert len(paths) == 2 == len(done.images)
    for p in paths:
        assert isinstance(p, pathlib.Path) and p.read_bytes().startswith(PNG)
        assert p.name.startswith(done.id)
    assert not [p for p in (tmp_path / "sync").iterdir() if p not in paths]  # no temp files

    # The sync call handed over the raw JSON text as received (never parsed); reading `raw`
    # first makes the async call hand over the parsed dict instead: both give the same files.
    assert done.raw["task_id"] == done.id
    aclient = AsyncClient(access_key=AK, secret_key=SK, base_url=mock_url, timeout=10.0)
    apaths = asyncio.run(aclient.download_results(done, str(tmp_path / "async")))
    assert [p.name for p in apaths] == [p.name for p in paths]
    assert [p.read_bytes() for p in apaths] == [p.read_bytes() for p in paths]


def test_download_refuses_unfinished_and_failed_tasks(mock_url: str, tmp_path: pathlib.Path) -> None:
    client = Client(access_key=AK, secret_key=SK, base_url=mock_url, timeout=10.0)
    running = client.get_image_task(seed(mock_url, "processing"))
    failed = client.get_image_task(seed(mock_url, "failed", status_msg="policy"))
    ctl(mock_url, "DELETE", "/requests")
    with pytest.raises(InvalidRequestError):
        client.download_results(running, tmp_path)
    with pytest.raises(TaskFailedError):
        client.download_results(failed, tmp_path)
    assert ctl(mock_url, "GET", "/requests")["requests"] == []
    assert list(tmp_path.iterdir()) == []
