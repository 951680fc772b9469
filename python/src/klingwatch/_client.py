"""The synchronous Client: argument handling only; the native core does the work with the
GIL released."""

from __future__ import annotations

import json
import os
import dataclasses
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from . import _native
from ._task import Task, TaskKind, TaskStatus, _status
from .errors import KlingError

__all__ = ["Client", "TaskUpdate", "sign_jwt", "parse_callback", "verify_webhook"]

KindLike = Union[TaskKind, str]


@dataclasses.dataclass(frozen=True)
class TaskUpdate:
    """A status change: the task as now seen and the status before (None on first sight)."""

    task: Task
    previous: Optional[Union[TaskStatus, str]]

    @classmethod
    def _from_native(cls, text: str) -> "TaskUpdate":
        d = json.loads(text)
        prev = d.get("previous")
        return cls(Task._from_native(d["task"]), None if prev is None else _status(prev))


def _k(kind: KindLike) -> str:
    return str(kind.value if isinstance(kind, TaskKind) else kind)


class Client:
    """A Kling API client. Credentials not given are read from KLING_* environment
    variables by the core; explicit arguments win."""

    def __init__(
        self,
        access_key: Optional[str] = None,
        secret_key: Optional[str] = None,
        api_key: Optional[str] = None,
        region: str = "global",
        base_url: Optional[str] = None,
        timeout: float = 30.0,
        max_retries: int = 3,
        ca_cert: Union[str, bytes, "os.PathLike[str]", None] = None,
    ) -> None:
        pem: Optional[bytes] = None
        if ca_cert is not None:
            if isinstance(ca_cert, bytes):
                pem = ca_cert
            else:
                with open(ca_cert, "rb") as f:
                    pem = f.read()
        self._native = _native.NativeClient(
            access_key, secret_key, api_key, region, base_url, float(timeout), int(max_retries), pem
        )

    def __repr__(self) -> str:
        return f"Client(base_url={self._native.base_url()!r})"

    @property
    def base_url(self) -> str:
        return str(self._native.base_url())

    def token(self) -> str:
        return str(self._native.token())

    def get_task(self, task_id: str, kind: KindLike = "image_generation") -> Task:
        return Task._from_native(self._native.get_task(_k(kind), task_id))

    def get_image_task(self, task_id: str) -> Task:
        return self.get_task(task_id, "image_generation")

    def get_task_by_external_id(
        self, external_task_id: str, kind: KindLike = "image_generation"
    ) -> Task:
        return Task._from_native(self._native.get_task_by_external_id(_k(kind), external_task_id))

    def list_tasks(
        self, kind: KindLike = "image_generation", page: int = 1, page_size: int = 30
    ) -> List[Task]:
        data = json.loads(self._native.list_tasks(_k(kind), int(page), int(page_size)))
        return [Task._from_native(d) for d in data]

    def iter_tasks(
        self, kind: KindLike = "image_generation", page_size: int = 30
    ) -> Iterator[Task]:
        """Every task of `kind`, page by page; an error is raised from the iterator."""
        for item in self._native.iter_tasks(_k(kind), int(page_size)):
            if isinstance(item, str):
                yield Task._from_native(item)
            else:
                raise item

    def get_many(
        self,
        task_ids: Sequence[str],
        *,
        kind: KindLike = "image_generation",
        concurrency: int = 16,
    ) -> List[Union[Task, KlingError]]:
        out: List[Union[Task, KlingError]] = []
        for r in self._native.get_many(_k(kind), list(task_ids), int(concurrency)):
            out.append(Task._from_native(r) if isinstance(r, str) else r)
        return out

    def create_task(self, kind: KindLike, body: Mapping[str, Any]) -> Task:
        return Task._from_native(self._native.create_task(_k(kind), json.dumps(dict(body))))

    def create_image_task(
        self,
        prompt: str,
        *,
        model_name: Optional[str] = None,
        negative_prompt: Optional[str] = None,
        n: Optional[int] = None,
        aspect_ratio: Optional[str] = None,
        callback_url: Optional[str] = None,
        external_task_id: Optional[str] = None,
        **fields: Any,
    ) -> Task:
        body: Dict[str, Any] = {"prompt": prompt}
        for key, value in (
            ("model_name", model_name),
            ("negative_prompt", negative_prompt),
            ("n", n),
            ("aspect_ratio", aspect_ratio),
            ("callback_url", callback_url),
            ("external_task_id", external_task_id),
        ):
            if value is not None:
                body[key] = value
        body.update({k: v for k, v in fields.items() if v is not None})
        return self.create_task("image_generation", body)

    def wait(
        self,
        task_id: str,
        *,
        kind: KindLike = "image_generation",
        timeout: float = 600.0,
        poll_interval: float = 1.0,
        max_poll_interval: float = 10.0,
        on_update: Optional[Callable[[TaskUpdate], Any]] = None,
    ) -> Task:
        cb = None
        if on_update is not None:
            def cb(text: str) -> None:
                on_update(TaskUpdate._from_native(text))

        return Task._from_native(
            self._native.wait(
                _k(kind),
                task_id,
                float(timeout),
                float(poll_interval),
                float(max_poll_interval),
                cb,
            )
        )

    def watch(
        self,
        task_ids: Sequence[str],
        *,
        kind: KindLike = "image_generation",
        timeout: float = 600.0,
        poll_interval: float = 1.0,
        max_poll_interval: float = 10.0,
        concurrency: int = 16,
    ) -> Iterator[TaskUpdate]:
        """Yields a TaskUpdate each time one of the tasks changes status; ends when every
        task is terminal. A task that fails for good (not found, wait timeout, ...) raises
        its KlingError from the iterator, which ends the watch."""
        it = self._native.watch(
            _k(kind),
            list(task_ids),
            float(timeout),
            float(poll_interval),
            float(max_poll_interval),
            int(concurrency),
        )
        try:
            for item in it:
                if isinstance(item, str):
                    yield TaskUpdate._from_native(item)
                else:
                    raise item
        finally:
            it.close()

    def wait_image_task(
        self,
        task_id: str,
        *,
        timeout: float = 600.0,
        poll_interval: float = 1.0,
        max_poll_interval: float = 10.0,
        on_update: Optional[Callable[[TaskUpdate], Any]] = None,
    ) -> Task:
        return self.wait(
            task_id,
            kind="image_generation",
            timeout=timeout,
            poll_interval=poll_interval,
            max_poll_interval=max_poll_interval,
            on_update=on_update,
        )


def sign_jwt(access_key: str, secret_key: str, now: Optional[int] = None, ttl: int = 1800) -> str:
    return str(_native.sign_jwt(access_key, secret_key, now, int(ttl)))


def parse_callback(body: Union[bytes, str]) -> Task:
    if isinstance(body, str):
        body = body.encode("utf-8")
    return Task._from_native(_native.parse_callback(bytes(body)))


def verify_webhook(
    secret: str,
    headers: Union[Mapping[str, str], Sequence[Tuple[str, str]]],
    body: Union[bytes, str],
    tolerance: float = 300.0,
) -> None:
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    if isinstance(body, str):
        body = body.encode("utf-8")
    _native.verify_webhook(secret, [(str(k), str(v)) for k, v in pairs], bytes(body), float(tolerance))
