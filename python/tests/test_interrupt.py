"""Ctrl-C during a long blocking call (wait, watch) raises KeyboardInterrupt promptly instead
of being ignored until the wait's own deadline."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from _mockctl import requests_for, seed, settle
from test_vectors import AK, SK

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX signals")


@pytest.mark.parametrize("call", ["client.wait(TID, timeout=120, poll_interval=0.05)",
                                  "list(client.watch([TID], timeout=120, poll_interval=0.05))"])
def test_ctrl_c_interrupts_a_blocking_call(mock_url: str, call: str) -> None:
    tid = seed(mock_url, "processing")
    code = textwrap.dedent(f"""
        import signal, sys
        # As in an interactive session (a background parent may have set SIGINT to ignored).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        from klingwatch import Client
        client = Client(access_key={AK!r}, secret_key={SK!r}, base_url={mock_url!r})
        TID = {tid!r}
        print("ready", flush=True)
        try:
            {call}
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(42)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.8)
    assert len(requests_for(mock_url, tid)) >= 2  # it is polling
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    rc = proc.wait(timeout=10)
    assert rc == 42, proc.stdout.read()
    assert time.monotonic() - sent < 2.0
    n = settle(mock_url, tid)
    time.sleep(0.4)
    assert len(requests_for(mock_url, tid)) == n
