"""The synchronous Client: argument handling only; the native core does the work with the
GIL released."""

from __future__ import annotations

import atexit
import os
from typing import (
    TYPE_CHECKING,
    Any,
    AsyncIterator,
    Callable,
    Dict,
    Iterator,
    List,
    Literal,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
    cast,
    overload,
)

from . import _native, errors
from ._task import Task, TaskKind, TaskUpdate
from .errors import KlingError

if TYPE_CHECKING:
    import pathlib

__all__ = ["Client", "AsyncClient", "TaskUpdate", "sign_jwt", "parse_callback", "verify_webhook"]

KindLike = Union[TaskKind, str]


def _k(kind: KindLike) -> str:
    return str(kind.value if isinstance(kind, TaskKind) else kind)


def _place(out: List[Any], chunk: Any) -> None:
    """Puts one native batch chunk, a flat list of ``input position, Task or the id's
    KlingError`` per position, into ``out`` (an id given twice gets equal, separate Tasks). A
    chunk that is itself a KlingError (the batch broke down, which a bug alone can cause) is
    raised."""
    if isinstance(chunk, KlingError):
        raise chunk
    it = iter(chunk)
    for p, r in zip(it, it):
        out[p] = r


# At interpreter exit, wait (at most 2 s) for the native tasks of AsyncClient calls to end:
# on a loop without `add_reader` (Windows' proactor loop) such a task takes the GIL as it
# ends, to resolve its asyncio future, and doing so while the interpreter finalizes would
# abort the process; on other loops it lets calls still in flight end. Returns at once when
# none is in flight.
atexit.register(_native._quiesce, 2.0)


async def _next(it: Any) -> Any:
    """The next item of a native stream, or None at the end. The native awaitable resolves on
    the runtime's worker; the item's Python objects are built here, on the event loop's
    thread, so the worker goes on with the requests meanwhile."""
    arrived = await it.next_async()
    return None if arrived is None else arrived.take()


def _json(value: Any) -> str:
    import json  # only the create and download paths need it; keeps `import klingwatch` lean

    return json.dumps(value)


def _paths(paths: List[str]) -> List["pathlib.Path"]:
    import pathlib

    return [pathlib.Path(p) for p in paths]


def _pem(ca_cert: Union[str, bytes, "os.PathLike[str]", None]) -> Optional[bytes]:
    if ca_cert is None:
        return None
    if isinstance(ca_cert, bytes):
        return ca_cert
    with open(ca_cert, "rb") as f:
        return f.read()


def _create_body(
    prompt: str,
    model_name: Optional[str],
    negative_prompt: Optional[str],
    n: Optional[int],
    aspect_ratio: Optional[str],
    callback_url: Optional[str],
    external_task_id: Optional[str],
    fields: Dict[str, Any],
) -> str:
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
    return _json(body)


class _Base:
    """Construction shared by Client and AsyncClient. Credentials not given are read from
    KLING_* environment variables by the core; explicit arguments win. The secrets live
    only inside the native client (and a closure used to rebuild it after ``os.fork()``),
    never in an attribute, a repr or a pickle."""

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
        token_ttl: Optional[int] = None,
        token_refresh_margin: Optional[float] = None,
    ) -> None:
        pem = _pem(ca_cert)
        args = (access_key, secret_key, api_key, region, base_url, float(timeout),
                int(max_retries), pem, None if token_ttl is None else int(token_ttl),
                None if token_refresh_margin is None else float(token_refresh_margin))

        def build() -> Any:
            return _native.NativeClient(*args)

        self.__build = build
        self.__native = build()
        self.__pid = os.getpid()

    @property
    def _native(self) -> Any:
        # After os.fork() the parent's connections and runtime are unusable in the child:
        # the child transparently gets its own native client (same settings).
        if os.getpid() != self.__pid:
            self.__native = self.__build()
            self.__pid = os.getpid()
        return self.__native

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    def __reduce__(self) -> Any:
        raise TypeError(f"{type(self).__name__} cannot be pickled (it holds credentials)")

    @property
    def base_url(self) -> str:
        return str(self.__native.base_url())

    @property
    def token_signatures(self) -> int:
        """How many JWTs this client has signed so far (one per refresh, however many
        threads or tasks asked for a token at the same time)."""
        return int(self._native.token_signatures())


class Client(_Base):
    """The synchronous client. Every call releases the GIL while the Rust core works, so
    threads sharing one Client run in parallel over one connection pool."""

    def token(self) -> str:
        return str(self._native.token())

    def get_task(self, task_id: str, kind: KindLike = "image_generation") -> Task:
        return cast(Task, self._native.get_task(_k(kind), task_id))

    def get_image_task(self, task_id: str) -> Task:
        return self.get_task(task_id, "image_generation")

    def get_task_by_external_id(
        self, external_task_id: str, kind: KindLike = "image_generation"
    ) -> Task:
        return cast(Task, self._native.get_task_by_external_id(_k(kind), external_task_id))

    def list_tasks(
        self, kind: KindLike = "image_generation", page: int = 1, page_size: int = 30
    ) -> List[Task]:
        data = self._native.list_tasks(_k(kind), int(page), int(page_size))
        return cast(List[Task], data)

    def iter_tasks(
        self, kind: KindLike = "image_generation", page_size: int = 500
    ) -> Iterator[Task]:
        """Every task of `kind`, page by page; an error is raised from the iterator."""
        it = self._native.iter_tasks(_k(kind), int(page_size))
        try:
            for v in it:
                if isinstance(v, KlingError):
                    raise v
                yield v
        finally:
            it.close()

    def get_many(
        self,
        task_ids: Sequence[str],
        *,
        kind: KindLike = "image_generation",
        concurrency: int = 16,
    ) -> List[Union[Task, KlingError]]:
        """One Task or KlingError per id, in order (a bad id never fails the batch)."""
        ids = list(task_ids)
        out: List[Any] = [None] * len(ids)
        # Each chunk of answers becomes Tasks here while the rest of the batch is in flight.
        it = self._native.get_many_chunks(_k(kind), ids, int(concurrency))
        try:
            for chunk in it:
                _place(out, chunk)
        finally:
            it.close()
        return out

    def create_task(self, kind: KindLike, body: Mapping[str, Any]) -> Task:
        return cast(Task, self._native.create_task(_k(kind), _json(dict(body))))

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
        body = _create_body(prompt, model_name, negative_prompt, n, aspect_ratio,
                            callback_url, external_task_id, fields)
        return cast(Task, self._native.create_task("image_generation", body))

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
        """Polls until the task succeeds or fails and returns it (a failed task is returned;
        call ``raise_for_failure()``). ``on_update`` runs on each status change; an exception
        it raises ends the wait and propagates."""
        cb = None
        if on_update is not None:
            def cb(update: Tuple[Any, ...]) -> None:
                on_update(TaskUpdate._from_native(update))

        return cast(Task, self._native.wait(
            _k(kind),
            task_id,
            float(timeout),
            float(poll_interval),
            float(max_poll_interval),
            cb,
        ))

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

    @overload
    def watch(
        self,
        task_ids: Sequence[str],
        *,
        kind: KindLike = ...,
        timeout: float = ...,
        poll_interval: float = ...,
        max_poll_interval: float = ...,
        concurrency: int = ...,
        return_exceptions: Literal[False] = ...,
    ) -> Iterator[TaskUpdate]: ...

    @overload
    def watch(
        self,
        task_ids: Sequence[str],
        *,
        kind: KindLike = ...,
        timeout: float = ...,
        poll_interval: float = ...,
        max_poll_interval: float = ...,
        concurrency: int = ...,
        return_exceptions: Literal[True],
    ) -> Iterator[Union[TaskUpdate, KlingError]]: ...

    def watch(
        self,
        task_ids: Sequence[str],
        *,
        kind: KindLike = "image_generation",
        timeout: float = 600.0,
        poll_interval: float = 1.0,
        max_poll_interval: float = 10.0,
        concurrency: int = 16,
        return_exceptions: bool = False,
    ) -> Iterator[Union[TaskUpdate, KlingError]]:
        """Yields a TaskUpdate each time one of the tasks changes status; ends when every
        task is accounted for. A task that fails for good (not found, wait timeout, ...)
        raises its KlingError from the iterator, or, with ``return_exceptions=True``, is
        yielded as that KlingError and the other tasks are still watched. Closing the
        iterator early stops the polling."""
        it = self._native.watch(
            _k(kind),
            list(task_ids),
            float(timeout),
            float(poll_interval),
            float(max_poll_interval),
            int(concurrency),
        )
        try:
            for v in it:
                if isinstance(v, KlingError):
                    if return_exceptions:
                        yield v
                        continue
                    raise v
                yield TaskUpdate._from_native(v)
        finally:
            it.close()

    def download_results(
        self, task: Task, directory: Union[str, "os.PathLike[str]"]
    ) -> List["pathlib.Path"]:
        """Saves every result of a succeeded task into ``directory`` (created if needed) as
        ``{task_id}_{index}.{ext}``; each file appears only when complete. Returns the paths."""
        return _paths(self._native.download_results(
            _k(task.kind), task._raw_json(), os.fspath(directory)))


class AsyncClient(_Base):
    """The asyncio client: the same methods as :class:`Client`, as coroutines (``watch``
    and ``iter_tasks`` as async iterators). The Rust core runs the requests on its own
    threads, never blocking the event loop; cancelling a task (or ``asyncio.timeout`` /
    ``asyncio.wait_for``) drops the Rust work, which stops its requests and polling."""

    async def token(self) -> str:
        return str(await self._native.token_async())

    async def get_task(self, task_id: str, kind: KindLike = "image_generation") -> Task:
        return cast(Task, await self._native.get_task_async(_k(kind), task_id))

    async def get_image_task(self, task_id: str) -> Task:
        return await self.get_task(task_id, "image_generation")

    async def get_task_by_external_id(
        self, external_task_id: str, kind: KindLike = "image_generation"
    ) -> Task:
        n = self._native
        return cast(Task, await n.get_task_by_external_id_async(_k(kind), external_task_id))

    async def list_tasks(
        self, kind: KindLike = "image_generation", page: int = 1, page_size: int = 30
    ) -> List[Task]:
        data = await self._native.list_tasks_async(_k(kind), int(page), int(page_size))
        return cast(List[Task], data)

    async def iter_tasks(
        self, kind: KindLike = "image_generation", page_size: int = 500
    ) -> AsyncIterator[Task]:
        it = self._native.iter_tasks(_k(kind), int(page_size))
        try:
            while True:
                v = await _next(it)
                if v is None:
                    return
                if isinstance(v, KlingError):
                    raise v
                yield v
        finally:
            it.close()

    async def get_many(
        self,
        task_ids: Sequence[str],
        *,
        kind: KindLike = "image_generation",
        concurrency: int = 16,
    ) -> List[Union[Task, KlingError]]:
        """One Task or KlingError per id, in order (a bad id never fails the batch)."""
        ids = list(task_ids)
        out: List[Any] = [None] * len(ids)
        it = self._native.get_many_chunks(_k(kind), ids, int(concurrency))
        try:
            while True:
                chunk = await _next(it)
                if chunk is None:
                    return out
                _place(out, chunk)
        finally:
            it.close()

    async def create_task(self, kind: KindLike, body: Mapping[str, Any]) -> Task:
        data = await self._native.create_task_async(_k(kind), _json(dict(body)))
        return cast(Task, data)

    async def create_image_task(
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
        body = _create_body(prompt, model_name, negative_prompt, n, aspect_ratio,
                            callback_url, external_task_id, fields)
        return cast(Task, await self._native.create_task_async("image_generation", body))

    async def wait(
        self,
        task_id: str,
        *,
        kind: KindLike = "image_generation",
        timeout: float = 600.0,
        poll_interval: float = 1.0,
        max_poll_interval: float = 10.0,
        on_update: Optional[Callable[[TaskUpdate], Any]] = None,
    ) -> Task:
        """As :meth:`Client.wait`. ``on_update`` runs on the event loop (it may be a
        coroutine function); an exception it raises ends the wait and propagates."""
        it = self._native.wait_updates(
            _k(kind), task_id, float(timeout), float(poll_interval), float(max_poll_interval)
        )
        last: Optional[Task] = None
        try:
            while True:
                v = await _next(it)
                if v is None:
                    break
                if isinstance(v, KlingError):
                    raise v
                update = TaskUpdate._from_native(v)
                last = update.task
                if on_update is not None:
                    r = on_update(update)
                    if r is not None and hasattr(r, "__await__"):
                        await r
        finally:
            it.close()
        if last is None:  # the core always ends with a terminal update or an error
            raise errors.KlingError("the wait ended without a result", kind="decode")
        return last

    async def wait_image_task(
        self,
        task_id: str,
        *,
        timeout: float = 600.0,
        poll_interval: float = 1.0,
        max_poll_interval: float = 10.0,
        on_update: Optional[Callable[[TaskUpdate], Any]] = None,
    ) -> Task:
        return await self.wait(
            task_id,
            kind="image_generation",
            timeout=timeout,
            poll_interval=poll_interval,
            max_poll_interval=max_poll_interval,
            on_update=on_update,
        )

    @overload
    def watch(
        self,
        task_ids: Sequence[str],
        *,
        kind: KindLike = ...,
        timeout: float = ...,
        poll_interval: float = ...,
        max_poll_interval: float = ...,
        concurrency: int = ...,
        return_exceptions: Literal[False] = ...,
    ) -> AsyncIterator[TaskUpdate]: ...

    @overload
    def watch(
        self,
        task_ids: Sequence[str],
        *,
        kind: KindLike = ...,
        timeout: float = ...,
        poll_interval: float = ...,
        max_poll_interval: float = ...,
        concurrency: int = ...,
        return_exceptions: Literal[True],
    ) -> AsyncIterator[Union[TaskUpdate, KlingError]]: ...

    async def watch(
        self,
        task_ids: Sequence[str],
        *,
        kind: KindLike = "image_generation",
        timeout: float = 600.0,
        poll_interval: float = 1.0,
        max_poll_interval: float = 10.0,
        concurrency: int = 16,
        return_exceptions: bool = False,
    ) -> AsyncIterator[Union[TaskUpdate, KlingError]]:
        """As :meth:`Client.watch`, as an async iterator."""
        it = self._native.watch(
            _k(kind),
            list(task_ids),
            float(timeout),
            float(poll_interval),
            float(max_poll_interval),
            int(concurrency),
        )
        try:
            while True:
                v = await _next(it)
                if v is None:
                    return
                if isinstance(v, KlingError):
                    if return_exceptions:
                        yield v
                        continue
                    raise v
                yield TaskUpdate._from_native(v)
        finally:
            it.close()

    async def download_results(
        self, task: Task, directory: Union[str, "os.PathLike[str]"]
    ) -> List["pathlib.Path"]:
        paths = await self._native.download_results_async(
            _k(task.kind), task._raw_json(), os.fspath(directory))
        return _paths(paths)


def sign_jwt(access_key: str, secret_key: str, now: Optional[int] = None, ttl: int = 1800) -> str:
    return str(_native.sign_jwt(access_key, secret_key, now, int(ttl)))


def parse_callback(body: Union[bytes, str]) -> Task:
    if isinstance(body, str):
        body = body.encode("utf-8")
    return _native.parse_callback(bytes(body))


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
