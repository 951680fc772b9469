"""The language-neutral fault matrix (tests/faults.json): the same rows, the same expected
kinds, codes, attempts and spacing as the Rust suite (crates/klingwatch/tests/fault_matrix.rs)."""

from __future__ import annotations

import email.utils
import json
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Optional, Tuple

import pytest

from klingwatch import Client, KlingError, Task

from conftest import ROOT

MATRIX = json.loads((ROOT / "tests" / "faults.json").read_text())
AK = "klingwatch-test-ak"
SK = "klingwatch-test-sk"


def _ctl(url: str, method: str, path: str, body: Optional[dict] = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        f"{url}/__mock{path}", data=data, method=method, headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        raw = resp.read()
    return json.loads(raw) if raw else None


def _seed(url: str, status: str) -> str:
    v = _ctl(url, "POST", "/tasks", {"status": status})
    if isinstance(v.get("data"), dict):
        v = v["data"]
    return v["task_id"]


def _materialise(fault: Dict[str, Any], task_id: str) -> Dict[str, Any]:
    fault = dict(fault)
    ra = fault.get("retry_after")
    if isinstance(ra, str) and ra.startswith("@+"):
        fault["retry_after"] = email.utils.formatdate(time.time() + int(ra[2:]), usegmt=True)
    fault["match"] = {"task_id": task_id}
    return fault


def _attempt_times(url: str, task_id: str, want: int) -> List[int]:
    # The emulator logs a request when its response ends (499 when the client gave up).
    deadline = time.monotonic() + 8
    while True:
        log = _ctl(url, "GET", "/requests")["requests"]
        times = [r["at_ms"] for r in log if task_id in r["path"]]
        if len(times) >= want or time.monotonic() > deadline:
            return times
        time.sleep(0.1)


def _run(url: str, row: Dict[str, Any], batch: bool) -> Tuple[Any, List[int]]:
    task_id = _seed(url, row.get("seed_status") or "succeed")
    if row.get("fault"):
        _ctl(url, "POST", "/faults", _materialise(row["fault"], task_id))
    cfg = MATRIX["client"]
    client = Client(
        access_key=AK,
        secret_key=SK,
        base_url=url,
        max_retries=cfg["max_retries"],
        timeout=cfg["timeout_ms"] / 1000.0,
    )
    outcome: Any
    if batch:
        results = client.get_many([task_id], concurrency=4)
        assert len(results) == 1
        outcome = results[0]
    else:
        try:
            outcome = client.get_image_task(task_id)
        except KlingError as e:
            outcome = e
    return outcome, _attempt_times(url, task_id, row["expect"]["attempts"])


def _check(row: Dict[str, Any], op: str, outcome: Any, times: List[int]) -> Optional[str]:
    name, e = row["name"], row["expect"]
    if len(times) != e["attempts"]:
        return f"{name} [{op}]: emulator logged {len(times)} attempts, want {e['attempts']} ({outcome!r})"
    gaps = [b - a for a, b in zip(times, times[1:])]
    if gaps and min(gaps) < e.get("min_spacing_ms", 0):
        return f"{name} [{op}]: attempts {min(gaps)} ms apart, want >= {e['min_spacing_ms']}"
    if e["outcome"] == "ok":
        if not isinstance(outcome, Task):
            return f"{name} [{op}]: want a task, got {outcome!r}"
        if str(outcome.status) != e["status"]:
            return f"{name} [{op}]: status {outcome.status!r}, want {e['status']}"
        return None
    if not isinstance(outcome, KlingError):
        return f"{name} [{op}]: want an error, got {outcome!r}"
    got = (outcome.kind, outcome.kling_code, outcome.http_status, outcome.retryable, outcome.attempts)
    want = (e["kind"], e["kling_code"], e["http_status"], e["retryable"], e["attempts"])
    if got != want:
        return f"{name} [{op}]: got {got}, want {want}"
    return None


def test_matrix_covers_the_error_table() -> None:
    errors = json.loads((ROOT / "tests" / "vectors" / "errors.json").read_text())["rows"]
    codes = {r["fault"].get("code") for r in MATRIX["rows"] if r.get("fault")}
    assert {r["code"] for r in errors} <= codes


@pytest.mark.parametrize("op", ["get", "batch"])
def test_every_fault_row_agrees_with_rust(mock_url: str, op: str) -> None:
    rows = MATRIX["rows"]
    with ThreadPoolExecutor(max_workers=len(rows)) as pool:
        runs = list(pool.map(lambda r: (r, _run(mock_url, r, op == "batch")), rows))
    failures = [f for row, (outcome, times) in runs if (f := _check(row, op, outcome, times))]
    assert not failures, "\n".join(failures)
