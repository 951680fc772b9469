"""The shared vectors of tests/vectors and a first pass against the emulator."""

from __future__ import annotations

import json
import pickle

import pytest

import klingwatch
from klingwatch import Client, Task, TaskStatus
from klingwatch.errors import (
    ConfigError,
    InvalidRequestError,
    KlingError,
    NotFoundError,
    SignatureError,
)

from conftest import VECTORS

AK = "klingwatch-test-ak"
SK = "klingwatch-test-sk"


def _jwt_vectors():
    return json.loads((VECTORS / "jwt.json").read_text())["vectors"]


@pytest.mark.parametrize("v", _jwt_vectors(), ids=lambda v: v["access_key"])
def test_sign_jwt_vectors(v):
    assert klingwatch.sign_jwt(v["access_key"], v["secret_key"], now=v["now"]) == v["token"]


def test_sign_jwt_empty_key_is_config_error():
    with pytest.raises(ConfigError) as info:
        klingwatch.sign_jwt("", "sk", now=1)
    assert info.value.kind == "config"
    assert isinstance(info.value, KlingError)


def _response_cases():
    # Cases with "expect_error" are HTTP error responses: they need the emulator's fault
    # injection to be exercised (not done yet), not parse_callback.
    cases = json.loads((VECTORS / "responses.json").read_text())["cases"]
    return [c for c in cases if "expect" in c]


@pytest.mark.parametrize("case", _response_cases(), ids=lambda c: c["name"])
def test_parse_callback_response_vectors(case):
    expect = case["expect"]
    body = json.dumps(case["body"])
    try:
        task = klingwatch.parse_callback(body)
    except KlingError as e:
        assert "error_kind" in expect or "error" in expect, f"unexpected {e!r}"
        return
    for key in ("id", "status_msg", "external_task_id"):
        if key in expect:
            assert getattr(task, key) == expect[key], key
    if "status" in expect:
        assert str(task.status) == expect["status"]
    if "image_urls" in expect:
        assert [i.url for i in task.images] == expect["image_urls"]
    if "is_terminal" in expect:
        assert task.is_terminal == expect["is_terminal"]
    if expect.get("created_at_ms") is not None:
        assert int(task.created_at.timestamp() * 1000) == pytest.approx(expect["created_at_ms"], abs=1)
        assert task.created_at.tzinfo is not None


def test_parse_callback_unknown_status_is_plain_str():
    task = klingwatch.parse_callback(b'{"task_id": "t1", "task_status": "mystery"}')
    assert task.status == "mystery"
    assert not isinstance(task.status, TaskStatus)
    assert not task.is_terminal


def test_parse_callback_bad_json_is_decode_error():
    with pytest.raises(klingwatch.DecodeError):
        klingwatch.parse_callback(b"{nope")


def test_verify_webhook_rejects_garbage():
    with pytest.raises(SignatureError):
        klingwatch.verify_webhook(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            {"webhook-id": "x", "webhook-timestamp": "1", "webhook-signature": "v1,AAAA"},
            b"{}",
        )


def test_errors_pickle():
    err = NotFoundError("gone", http_status=404, kling_code=1203, task_id="t", attempts=1)
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is NotFoundError
    assert (back.kind, back.http_status, back.kling_code, back.task_id) == ("not_found", 404, 1203, "t")


def test_error_kinds_cover_core():
    from klingwatch import _native
    from klingwatch.errors import _BY_KIND

    assert set(_native.error_kinds()) == set(_BY_KIND)


# --- against the emulator -------------------------------------------------------------


@pytest.fixture()
def client(mock_url):
    return Client(access_key=AK, secret_key=SK, base_url=mock_url, timeout=10.0)


def test_repr_has_no_secret(client):
    assert SK not in repr(client)
    assert client.token().count(".") == 2


def test_create_wait_get(client):
    created = client.create_image_task("a fox in the snow")
    assert isinstance(created, Task)
    assert created.id
    done = client.wait_image_task(created.id, timeout=30.0, poll_interval=0.05)
    assert done.status == TaskStatus.SUCCEED
    assert done.is_terminal
    assert done.images
    again = client.get_image_task(created.id)
    assert again.id == created.id
    listed = client.list_tasks(page=1, page_size=30)
    assert any(t.id == created.id for t in listed)
    many = client.get_many([created.id, created.id, "does-not-exist-123"])
    assert isinstance(many[0], Task) and many[0].id == created.id
    assert isinstance(many[2], KlingError)


def test_create_task_validation_is_local(client):
    with pytest.raises(InvalidRequestError):
        client.create_task("image_generation", {"prompt": ""})


def test_not_found(client):
    with pytest.raises(NotFoundError) as info:
        client.get_image_task("999999999999")
    assert info.value.http_status is not None


def test_bad_credentials(mock_url):
    c = Client(access_key="nope", secret_key="nope", base_url=mock_url, max_retries=0)
    with pytest.raises(klingwatch.AuthenticationError):
        c.get_image_task("123")
