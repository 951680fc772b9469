"""The language-neutral fault matrix (tests/faults.json): the same rows, the same expected
kinds, codes, attempts and spacing as the Rust suite (crates/klingwatch/tests/fault_matrix.rs)."""

from __future__ import annotations

import email.utils
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Optional, Tuple

import pytest

from klingwatch import Client, KlingError, Task

from _mockctl import ctl
from conftest import ROOT

MATRIX = json.loads((ROOT / "tests" / "faults.json").read_text())
AK = "klingwatch-test-ak"
SK = "klingwatch-test-sk"


_ctl = ctl


def _seed(url: str, status: str, extra: Optional[dict] = None) -> str:
    body: Dict[str, Any] = {"status": status}
    if extra:
        body["extra"] = extra
    v = _ctl(url, "POST", "/tasks", body)
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
    task_id = _seed(url, row.get("seed_status") or "succeed", row.get("seed_extra"))
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


def _check(row: Dict[str, Any], op: str, outcome: Any, times: List[int],
           key: str = "expect") -> Optional[str]:
    name, e = row["name"], row[key]
    if "attempts" in e and len(times) != e["attempts"]:
        return f"{name} [{op}]: emulator logged {len(times)} attempts, want {e['attempts']} ({outcome!r})"
    if "min_attempts" in e and len(times) < e["min_attempts"]:
        return f"{name} [{op}]: emulator logged {len(times)} attempts, want >= {e['min_attempts']}"
    gaps = [b - a for a, b in zip(times, times[1:])]
    if gaps and min(gaps) < e.get("min_spacing_ms", 0):
        return f"{name} [{op}]: attempts {min(gaps)} ms apart, want >= {e['min_spacing_ms']}"
    if e["outcome"] == "ok":
        if not isinstance(outcome, Task):
            return f"{name} [{op}]: want a task, got {outcome!r}"
        if str(outcome.status) != e["status"]:
            return f"{name} [{op}]: status {outcome.status!r}, want {e['status']}"
        for k, v in (row.get("seed_extra") or {}).items():
            if op != "create" and outcome.raw.get(k) != v:
                return f"{name} [{op}]: undocumented field {k!r} not kept in raw"
        return None
    if not isinstance(outcome, KlingError):
        return f"{name} [{op}]: want an error, got {outcome!r}"
    got = (outcome.kind, outcome.kling_code, outcome.http_status, outcome.retryable)
    want = (e["kind"], e["kling_code"], e["http_status"], e["retryable"])
    if key == "expect":  # a status query's error counts its own attempts
        got, want = got + (outcome.attempts,), want + (e["attempts"],)
    if "outcome_unknown" in e:
        got, want = got + (outcome.outcome_unknown,), want + (e["outcome_unknown"],)
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


def _client(url: str) -> Client:
    cfg = MATRIX["client"]
    return Client(access_key=AK, secret_key=SK, base_url=url, max_retries=cfg["max_retries"],
                  timeout=cfg["timeout_ms"] / 1000.0)


def test_every_fault_row_agrees_with_rust_for_wait(mock_url: str) -> None:
    cfg = MATRIX["client"]

    def run(row: Dict[str, Any]) -> Optional[str]:
        task_id = _seed(mock_url, row.get("seed_status") or "succeed", row.get("seed_extra"))
        if row.get("fault"):
            _ctl(mock_url, "POST", "/faults", _materialise(row["fault"], task_id))
        outcome: Any
        try:
            outcome = _client(mock_url).wait(
                task_id, timeout=cfg["wait_timeout_ms"] / 1000.0,
                poll_interval=cfg["wait_poll_ms"] / 1000.0,
                max_poll_interval=cfg["wait_poll_ms"] / 1000.0)
        except KlingError as e:
            outcome = e
        time.sleep(0.3)  # requests in flight at the deadline are logged when they end
        times = [r["at_ms"] for r in _ctl(mock_url, "GET", "/requests")["requests"]
                 if task_id in r["path"]]
        return _check(row, "wait", outcome, times, "expect_wait")

    rows = MATRIX["rows"]
    with ThreadPoolExecutor(max_workers=len(rows)) as pool:
        failures = [f for f in pool.map(run, rows) if f]
    assert not failures, "\n".join(failures)


def test_every_fault_row_agrees_with_rust_for_create(mock_url: str) -> None:
    client = _client(mock_url)
    failures = []
    # One row at a time: a create has no task id, so the fault matches every POST.
    for n, row in enumerate(MATRIX["rows"]):
        _ctl(mock_url, "DELETE", "/faults")
        _ctl(mock_url, "DELETE", "/requests")
        if row.get("fault"):
            fault = _materialise(row["fault"], "")
            fault["match"] = {"method": "POST", "path_prefix": "/v1/images/generations"}
            _ctl(mock_url, "POST", "/faults", fault)
        outcome: Any
        try:
            outcome = client.create_image_task(f"fault matrix {row['name']}",
                                               external_task_id=f"fm-py-{n}-{time.time_ns()}")
        except KlingError as e:
            outcome = e
        _ctl(mock_url, "DELETE", "/faults")
        time.sleep(0.3)
        times = [r["at_ms"] for r in _ctl(mock_url, "GET", "/requests")["requests"]
                 if r["method"] == "POST" and r["path"] == "/v1/images/generations"]
        if (f := _check(row, "create", outcome, times, "expect_create")):
            failures.append(f)
    assert not failures, "\n".join(failures)
