"""Secrets never appear in reprs, error messages or logs; explicit credentials beat env vars."""

from __future__ import annotations

import logging
import pickle

import pytest

from klingwatch import Client, KlingError
from klingwatch.errors import AuthenticationError

CANARY_SK = "sk-LEAKCANARY-py-91c2"
CANARY_API = "api-LEAKCANARY-py-77aa"


def _texts(e: BaseException) -> list:
    return [str(e), repr(e), repr(e.args), repr(pickle.loads(pickle.dumps(e))), repr(e.__cause__)]


def test_wrong_secret_never_leaks(mock_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = Client(access_key="klingwatch-test-ak", secret_key=CANARY_SK, base_url=mock_url, max_retries=1)
    token = client.token()
    with pytest.raises(AuthenticationError) as info:
        client.get_image_task("123456")
    assert info.value.kind == "authentication"
    assert info.value.kling_code in (1000, 1001, 1002)
    api = Client(api_key=CANARY_API, base_url=mock_url, max_retries=1)
    with pytest.raises(KlingError) as info2:
        api.get_image_task("123456")
    texts = _texts(info.value) + _texts(info2.value) + [repr(client), repr(api), str(client), caplog.text]
    for t in texts:
        assert CANARY_SK not in t
        assert CANARY_API not in t
        assert token not in t
        assert token.rsplit(".", 1)[1] not in t


def test_explicit_credentials_beat_env(mock_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLING_ACCESS_KEY", "env-ak-wrong")
    monkeypatch.setenv("KLING_SECRET_KEY", "env-sk-wrong")
    seeded = Client(access_key="klingwatch-test-ak", secret_key="klingwatch-test-sk", base_url=mock_url)
    task = seeded.create_image_task("a lighthouse")
    assert seeded.get_image_task(task.id).id == task.id
    with pytest.raises(AuthenticationError):
        Client(base_url=mock_url, max_retries=0).get_image_task(task.id)


def test_a_rust_panic_reaches_python_as_a_kling_error() -> None:
    import asyncio

    from klingwatch import _native
    from klingwatch.errors import ConfigError

    with pytest.raises(ConfigError) as ei:
        _native._panic_for_tests()
    assert "panic" in str(ei.value) and isinstance(ei.value, KlingError)

    async def main() -> None:
        with pytest.raises(ConfigError):
            await _native._panic_for_tests(True)

    asyncio.run(main())


def test_transport_failures_chain_their_cause(mock_url: str) -> None:
    """A KlingError from a transport or decode failure carries the underlying error as
    __cause__ (ConnectionError / ValueError), secret-free."""
    from _mockctl import ctl, seed
    from klingwatch.errors import DecodeError, NetworkError

    client = Client(access_key="klingwatch-test-ak", secret_key="klingwatch-test-sk",
                    base_url=mock_url, max_retries=0, timeout=2.0)
    dropped, malformed = seed(mock_url, "succeed"), seed(mock_url, "succeed")
    ctl(mock_url, "POST", "/faults", {"fault": "drop_connection", "match": {"task_id": dropped}})
    ctl(mock_url, "POST", "/faults", {"fault": "malformed_json", "match": {"task_id": malformed}})
    with pytest.raises(NetworkError) as net:
        client.get_image_task(dropped)
    assert isinstance(net.value.__cause__, ConnectionError) and str(net.value.__cause__)
    with pytest.raises(DecodeError) as dec:
        client.get_image_task(malformed)
    assert isinstance(dec.value.__cause__, ValueError) and str(dec.value.__cause__)
    for t in _texts(net.value) + _texts(dec.value):
        assert "klingwatch-test-sk" not in t
