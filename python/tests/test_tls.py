"""TLS: an emulator with a certificate from an unknown CA is refused (a typed error, before
any task data is read) unless that CA is given; no option turns verification off."""

from __future__ import annotations

import asyncio
import inspect
import pathlib
import subprocess
from typing import Iterator, Tuple

import pytest

from klingwatch import AsyncClient, Client
from klingwatch.errors import NetworkError

from conftest import _mock_binary
from test_vectors import AK, SK


@pytest.fixture(scope="module")
def tls_mock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tuple[str, pathlib.Path]]:
    ca = tmp_path_factory.mktemp("tls") / "ca.pem"
    proc = subprocess.Popen([str(_mock_binary()), "--port", "0", "--tls", "--ca-out", str(ca)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        url = None
        for line in proc.stdout:
            if "listening on " in line:
                url = line.split("listening on ", 1)[1].strip()
                break
        assert url and url.startswith("https://"), url
        yield url, ca
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_untrusted_certificate_is_refused(tls_mock: Tuple[str, pathlib.Path]) -> None:
    url, _ = tls_mock
    client = Client(access_key=AK, secret_key=SK, base_url=url, timeout=5.0, max_retries=0)
    with pytest.raises(NetworkError) as ei:
        client.get_image_task("any-task")
    assert "certificate" in str(ei.value).lower() or "tls" in str(ei.value).lower(), str(ei.value)
    aclient = AsyncClient(access_key=AK, secret_key=SK, base_url=url, timeout=5.0, max_retries=0)
    with pytest.raises(NetworkError):
        asyncio.run(aclient.get_image_task("any-task"))


def test_given_ca_is_trusted_as_path_or_bytes(tls_mock: Tuple[str, pathlib.Path]) -> None:
    url, ca = tls_mock
    for ca_cert in (ca, str(ca), ca.read_bytes()):
        client = Client(access_key=AK, secret_key=SK, base_url=url, ca_cert=ca_cert)
        t = client.create_image_task("a fox over TLS")
        assert client.get_image_task(t.id).id == t.id


def test_no_option_disables_verification() -> None:
    params = set(inspect.signature(Client.__init__).parameters)
    assert not {p for p in params if "verify" in p or "insecure" in p}, params
