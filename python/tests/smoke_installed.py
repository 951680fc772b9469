"""Run by scripts/test with the interpreter of a fresh venv where `pip install ./python` was
done: the installed package (not the source tree) imports, signs, and queries the emulator."""

from __future__ import annotations

import asyncio
import os
import pathlib
import subprocess
import sys
import tempfile

os.chdir(tempfile.gettempdir())  # never import the source tree by accident
import klingwatch  # noqa: E402

assert "site-packages" in pathlib.Path(klingwatch.__file__).parts, klingwatch.__file__
assert (pathlib.Path(klingwatch.__file__).parent / "py.typed").exists()
assert klingwatch.sign_jwt("ak", "sk", now=1_700_000_000).count(".") == 2

proc = subprocess.Popen([os.environ["KLINGWATCH_MOCK_BIN"], "--port", "0"],
                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
try:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    url = line.split("listening on ", 1)[1].strip()
    client = klingwatch.Client(access_key="klingwatch-test-ak", secret_key="klingwatch-test-sk", base_url=url)
    t = client.create_image_task("an installed fox")
    assert client.get_image_task(t.id).id == t.id
    aclient = klingwatch.AsyncClient(access_key="klingwatch-test-ak", secret_key="klingwatch-test-sk", base_url=url)
    assert asyncio.run(aclient.get_image_task(t.id)).id == t.id
    try:
        client.get_image_task("missing-smoke")
    except klingwatch.NotFoundError as e:
        assert e.kind == "not_found"
    else:
        raise AssertionError("expected NotFoundError")
finally:
    proc.terminate()
    proc.wait(timeout=10)
print(f"installed package OK: {klingwatch.__file__}", file=sys.stderr)
