"""A typed usage example: `mypy --strict` must accept it (run by test_typing.py). It is
never executed; it pins the public types users program against."""

from __future__ import annotations

import asyncio
import pathlib
from datetime import datetime
from typing import Dict, List, Optional, Union

import klingwatch
from klingwatch import (
    AsyncClient,
    Client,
    Image,
    KlingError,
    Task,
    TaskKind,
    TaskStatus,
    TaskUpdate,
    parse_callback,
    sign_jwt,
    verify_webhook,
)
from klingwatch.errors import NotFoundError, RateLimitError


def sync_usage() -> None:
    client = Client(access_key="ak", secret_key="sk", region="global", timeout=10.0,
                    max_retries=3, token_ttl=1800)
    token: str = client.token()
    task: Task = client.get_image_task("id-1")
    status: Union[TaskStatus, str] = task.status
    created: Optional[datetime] = task.created_at
    images: List[Image] = task.images
    url: str = images[0].url
    done: bool = task.is_terminal
    other: Task = client.get_task("id-2", kind=TaskKind.IMAGE_GENERATION)
    listed: List[Task] = client.list_tasks(page=1, page_size=30)
    for t in client.iter_tasks(page_size=100):
        print(t.id)
    results: List[Union[Task, KlingError]] = client.get_many(["a", "b"], concurrency=8)
    for r in results:
        if isinstance(r, KlingError):
            kind: str = r.kind
            code: Optional[int] = r.kling_code
            retryable: bool = r.retryable
        else:
            print(r.status)
    new: Task = client.create_image_task("a fox", n=2, aspect_ratio="16:9", callback_url=None)
    raw: Task = client.create_task("image_generation", {"prompt": "x"})

    def on_update(u: TaskUpdate) -> None:
        print(u.previous, u.task.status)

    finished: Task = client.wait_image_task(new.id, timeout=60.0, on_update=on_update)
    finished.raise_for_failure()
    for u in client.watch([new.id, raw.id], timeout=60.0):
        print(u.task.id)
    for item in client.watch([new.id], return_exceptions=True):
        if isinstance(item, KlingError):
            print(item.task_id)
        else:
            print(item.task.status)
    paths: List[pathlib.Path] = client.download_results(finished, "out")
    data: Dict[str, object] = finished.to_dict()
    try:
        client.get_image_task("missing")
    except NotFoundError as e:
        print(e.request_id, e.http_status)
    except RateLimitError as e:
        print(e.attempts)
    print(token, status, created, url, done, other, listed, paths, data, kind, code, retryable)


async def async_usage() -> None:
    client = AsyncClient(api_key="key", base_url="http://127.0.0.1:8080")
    task: Task = await client.get_image_task("id-1")
    many: List[Union[Task, KlingError]] = await client.get_many(["a"])
    async for t in client.iter_tasks():
        print(t.id)

    async def on_update(u: TaskUpdate) -> None:
        await asyncio.sleep(0)

    done: Task = await asyncio.wait_for(client.wait(task.id, on_update=on_update), timeout=5)
    async for u in client.watch([task.id]):
        print(u.task.status)
    paths: List[pathlib.Path] = await client.download_results(done, pathlib.Path("out"))
    print(many, paths, await client.token())


def helpers() -> None:
    jwt: str = sign_jwt("ak", "sk", now=1_700_000_000, ttl=1800)
    t: Task = parse_callback(b"{}")
    verify_webhook("whsec_x", {"webhook-id": "1"}, b"{}", tolerance=300.0)
    err: type[KlingError] = klingwatch.errors.SignatureError
    print(jwt, t, err)
