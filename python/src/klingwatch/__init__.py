"""klingwatch: sign Kling AI credentials and track Kling generation tasks.

``Client`` (threads) and ``AsyncClient`` (asyncio) over the Rust core; see README.md.
"""

from . import errors
from ._client import AsyncClient, Client, TaskUpdate, parse_callback, sign_jwt, verify_webhook
from ._task import Image, Task, TaskKind, TaskStatus, Video
from .errors import *  # noqa: F401,F403
from .errors import __all__ as _errors_all

__all__ = [
    "Client",
    "AsyncClient",
    "TaskUpdate",
    "Task",
    "TaskStatus",
    "TaskKind",
    "Image",
    "Video",
    "sign_jwt",
    "parse_callback",
    "verify_webhook",
    "errors",
    *_errors_all,
]
