"""Fixtures: the repository root and the klingwatch-mock emulator on an ephemeral port."""

from __future__ import annotations

import os
import pathlib
import subprocess
from typing import Iterator

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
VECTORS = ROOT / "tests" / "vectors"


def _mock_binary() -> pathlib.Path:
    explicit = os.environ.get("KLINGWATCH_MOCK_BIN")
    if explicit:
        return pathlib.Path(explicit)
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return target / "debug" / "klingwatch-mock"


@pytest.fixture(scope="session")
def mock_url() -> Iterator[str]:
    binary = _mock_binary()
    if not binary.exists():
        subprocess.run(["cargo", "build", "-p", "klingwatch-mock"], cwd=ROOT, check=True)
    proc = subprocess.Popen(
        [str(binary), "--port", "0", "--time-scale", "0.05"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = None
        for line in proc.stdout:
            if line.startswith("klingwatch-mock listening on "):
                url = line.split("listening on ", 1)[1].strip()
                break
        assert url, "klingwatch-mock did not report its URL"
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
