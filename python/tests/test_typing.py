"""Static typing: the stubs of the compiled module match it (mypy.stubtest), and the package
plus a typed usage example pass `mypy --strict`."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent
PKG = HERE.parent / "src" / "klingwatch"

pytest.importorskip("mypy")


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                          cwd=HERE.parent, timeout=600)


def test_stubs_match_the_compiled_module() -> None:
    r = _run("mypy.stubtest", "klingwatch._native")
    assert r.returncode == 0, r.stdout + r.stderr


def test_package_and_usage_example_pass_mypy_strict() -> None:
    assert (PKG / "py.typed").exists()
    for target in (["-p", "klingwatch"], [str(HERE / "typing" / "usage.py")]):
        r = _run("mypy", "--strict", "--no-incremental", *target)
        assert r.returncode == 0, r.stdout + r.stderr
