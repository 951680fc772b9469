"""Small helpers for the emulator's control API (/__mock), shared by the tests."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any, List, Optional


def ctl(url: str, method: str, path: str, body: Optional[dict] = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        f"{url}/__mock{path}", data=data, method=method, headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        raw = resp.read()
    return json.loads(raw) if raw else None


def seed(url: str, status: str, **fields: Any) -> str:
    """A task that keeps `status` until pinned otherwise; returns its id."""
    v = ctl(url, "POST", "/tasks", {"status": status, **fields})
    if isinstance(v.get("data"), dict):
        v = v["data"]
    return str(v["task_id"])


def pin(url: str, task_id: str, status: str) -> None:
    ctl(url, "POST", f"/tasks/{task_id}/status", {"status": status})


def requests_for(url: str, task_id: str) -> List[dict]:
    return [r for r in ctl(url, "GET", "/requests")["requests"] if task_id in r["path"]]


def settle(url: str, task_id: str, quiet: float = 0.4, limit: float = 5.0) -> int:
    """Waits until no new request for `task_id` arrived for `quiet` seconds; returns the count."""
    deadline = time.monotonic() + limit
    n = len(requests_for(url, task_id))
    while time.monotonic() < deadline:
        time.sleep(quiet)
        m = len(requests_for(url, task_id))
        if m == n:
            return n
        n = m
    return n


def statuses_until(url: str, task_id: str, status: int, limit: float = 2.0) -> List[int]:
    """The HTTP statuses the emulator logged for `task_id`, polled until `status` is among
    them or `limit` seconds passed."""
    deadline = time.monotonic() + limit
    while True:
        statuses = [r["status"] for r in requests_for(url, task_id)]
        if status in statuses or time.monotonic() >= deadline:
            return statuses
        time.sleep(0.05)
