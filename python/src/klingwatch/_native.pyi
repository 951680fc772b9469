"""Type stubs of the compiled module (bindings/python). Checked against the built module by
mypy.stubtest in the test suite. Tasks cross as klingwatch.Task objects, built natively (the
class is handed over once by ``_register_task_class``); errors as klingwatch.errors (returned
as values in batches and streams)."""

from os import PathLike
from typing import Any, Awaitable, Callable, Dict, List, Optional, Sequence, Tuple, Union

from ._task import Task
from .errors import KlingError

from typing_extensions import final

__all__ = [
    "NativeClient",
    "StreamIter",
    "Arrived",
    "sign_jwt",
    "parse_callback",
    "verify_webhook",
    "error_kinds",
    "task_kinds",
    "_panic_for_tests",
    "_quiesce",
    "_register_task_class",
    "_gc_track",
    "TASK_SLOTS",
]

# A Task, an update (Task, previous status), the error of a failure, or a batch chunk: a
# flat list, input position then Task or error, per answer.
_Item = Union[Task, Tuple[Task, Optional[str]], KlingError, List[Any]]

@final

class NativeClient:
    def __new__(
        cls,
        access_key: Optional[str] = None,
        secret_key: Optional[str] = None,
        api_key: Optional[str] = None,
        region: str = "global",
        base_url: Optional[str] = None,
        timeout: float = 30.0,
        max_retries: int = 3,
        ca_cert: Optional[bytes] = None,
        token_ttl: Optional[int] = None,
        token_refresh_margin: Optional[float] = None,
    ) -> NativeClient: ...
    def base_url(self) -> str: ...
    def token_signatures(self) -> int: ...
    def token(self) -> str: ...
    def get_task(self, kind: str, task_id: str) -> Task: ...
    def get_task_by_external_id(self, kind: str, external_task_id: str) -> Task: ...
    def list_tasks(self, kind: str, page: int, page_size: int) -> List[Task]: ...
    def get_many_chunks(
        self, kind: str, task_ids: Sequence[str], concurrency: int
    ) -> StreamIter: ...
    def create_task(self, kind: str, body: str) -> Task: ...
    def download_results(
        self, kind: str, task: str, directory: Union[str, PathLike[str]]
    ) -> List[str]: ...
    def wait(
        self,
        kind: str,
        task_id: str,
        timeout: float = 600.0,
        poll_interval: float = 1.0,
        max_poll_interval: float = 10.0,
        on_update: Optional[Callable[[Tuple[Any, ...]], Any]] = None,
    ) -> Task: ...
    def wait_updates(
        self, kind: str, task_id: str, timeout: float, poll_interval: float,
        max_poll_interval: float,
    ) -> StreamIter: ...
    def iter_tasks(self, kind: str, page_size: int) -> StreamIter: ...
    def watch(
        self,
        kind: str,
        task_ids: Sequence[str],
        timeout: float = 600.0,
        poll_interval: float = 1.0,
        max_poll_interval: float = 10.0,
        concurrency: int = 16,
    ) -> StreamIter: ...
    def token_async(self) -> Awaitable[str]: ...
    def get_task_async(self, kind: str, task_id: str) -> Awaitable[Task]: ...
    def get_task_by_external_id_async(
        self, kind: str, external_task_id: str
    ) -> Awaitable[Task]: ...
    def list_tasks_async(self, kind: str, page: int, page_size: int) -> Awaitable[List[Task]]: ...
    def create_task_async(self, kind: str, body: str) -> Awaitable[Task]: ...
    def download_results_async(
        self, kind: str, task: str, directory: Union[str, PathLike[str]]
    ) -> Awaitable[List[str]]: ...

@final
class Arrived:
    def take(self) -> Optional[_Item]: ...

@final

class StreamIter:
    def __iter__(self) -> StreamIter: ...
    def __next__(self) -> _Item: ...
    def next_async(self) -> Awaitable[Optional[Arrived]]: ...
    def close(self) -> None: ...

def _quiesce(timeout: float) -> bool: ...
TASK_SLOTS: Tuple[str, ...]

def _gc_track(obj: object) -> None: ...
def _register_task_class(
    cls: type, statuses: Dict[str, Any], kinds: Dict[str, Any]
) -> None: ...
def sign_jwt(access_key: str, secret_key: str, now: Optional[int] = None, ttl: int = 1800) -> str: ...
def parse_callback(body: bytes) -> Task: ...
def verify_webhook(
    secret: str, headers: Sequence[Tuple[str, str]], body: bytes, tolerance: float = 300.0
) -> None: ...
def error_kinds() -> List[str]: ...
def task_kinds() -> List[str]: ...
def _panic_for_tests(awaitable_: bool = False) -> Any: ...
