"""Task, Image, Video, TaskUpdate, TaskStatus and TaskKind: immutable Python values. The
native module builds Tasks itself (from the core's typed task, without running Python code).

The value classes are small ``__slots__`` records rather than dataclasses: they take less
memory when many tasks are watched, the native module can fill a Task's slots directly, and
``import klingwatch`` does not pay for importing ``dataclasses`` (and ``inspect``).
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple, Union

from . import _native

if TYPE_CHECKING:
    from datetime import datetime

__all__ = ["Task", "TaskStatus", "TaskKind", "Image", "Video", "TaskUpdate"]


class TaskStatus(str, enum.Enum):
    SUBMITTED = "submitted"
    PROCESSING = "processing"
    SUCCEED = "succeed"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value


class TaskKind(str, enum.Enum):
    IMAGE_GENERATION = "image_generation"
    VIRTUAL_TRY_ON = "virtual_try_on"
    IMAGE_EXPAND = "image_expand"
    MULTI_IMAGE_TO_IMAGE = "multi_image_to_image"
    OMNI_IMAGE = "omni_image"
    TEXT_TO_VIDEO = "text_to_video"
    IMAGE_TO_VIDEO = "image_to_video"

    def __str__(self) -> str:
        return self.value


_TERMINAL = frozenset(("succeed", "failed"))
_STATUSES: Dict[str, TaskStatus] = {m.value: m for m in TaskStatus}
_KINDS: Dict[str, TaskKind] = {m.value: m for m in TaskKind}


def _status(value: str) -> Union[TaskStatus, str]:
    """The TaskStatus of a wire value; an unknown server value stays a plain str."""
    return _STATUSES.get(value, value)


def _kind(value: str) -> Union[TaskKind, str]:
    return _KINDS.get(value, value)


_from_timestamp: Any = None
_UTC: Any = None


def _dt(ms: Optional[int]) -> Optional["datetime"]:
    """Unix milliseconds as an aware UTC datetime (``datetime`` is imported on first use)."""
    global _from_timestamp, _UTC
    if ms is None:
        return None
    if _from_timestamp is None:
        from datetime import datetime, timezone

        _from_timestamp, _UTC = datetime.fromtimestamp, timezone.utc
    return _from_timestamp(ms / 1000.0, _UTC)  # type: ignore[no-any-return]


_set = object.__setattr__


class _Record:
    """An immutable value: fields in ``__slots__``; equality, hash, repr and pickling by
    field (``_compare`` names the fields that take part in equality, hash and repr)."""

    __slots__ = ()
    _fields: Tuple[str, ...] = ()
    _compare: Tuple[str, ...] = ()

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"cannot assign to field {name!r}: {type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}: {type(self).__name__} is immutable")

    def _key(self) -> Tuple[Any, ...]:
        return tuple(getattr(self, n) for n in self._compare)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._key() == other._key()

    def __ne__(self, other: object) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    def __hash__(self) -> int:
        return hash(tuple(tuple(v) if isinstance(v, list) else v for v in self._key()))

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in self._compare)
        return f"{type(self).__name__}({fields})"

    def __reduce__(self) -> Tuple[Any, Tuple[Any, ...]]:
        return (type(self), tuple(getattr(self, n) for n in self._fields))

    def __copy__(self) -> "_Record":
        return self

    def __deepcopy__(self, memo: Dict[int, Any]) -> "_Record":
        import copy

        return type(self)(*(copy.deepcopy(getattr(self, n), memo) for n in self._fields))


class Image(_Record):
    """One generated image: its position, URL and watermarked variant (if any)."""

    __slots__ = ("index", "url", "watermark_url")
    _fields = _compare = ("index", "url", "watermark_url")
    index: int
    url: str
    watermark_url: Optional[str]

    def __init__(self, index: int, url: str, watermark_url: Optional[str] = None) -> None:
        _set(self, "index", index)
        _set(self, "url", url)
        _set(self, "watermark_url", watermark_url)

    def to_dict(self) -> Dict[str, Any]:
        return {"index": self.index, "url": self.url, "watermark_url": self.watermark_url}


class Video(_Record):
    """One generated video: the server's id, URL, watermarked variant and duration."""

    __slots__ = ("id", "url", "watermark_url", "duration_s")
    _fields = _compare = ("id", "url", "watermark_url", "duration_s")
    id: str
    url: str
    watermark_url: Optional[str]
    duration_s: Optional[float]

    def __init__(
        self,
        id: str,
        url: str,
        watermark_url: Optional[str] = None,
        duration_s: Optional[float] = None,
    ) -> None:
        _set(self, "id", id)
        _set(self, "url", url)
        _set(self, "watermark_url", watermark_url)
        _set(self, "duration_s", duration_s)

    def to_dict(self) -> Dict[str, Any]:
        return {"id": self.id, "url": self.url, "watermark_url": self.watermark_url,
                "duration_s": self.duration_s}


def _lazy(obj: Any, slot: str, pending: type, build: Any) -> Any:
    """The value in ``slot``; while it is still of the native ``pending`` type, builds it
    with ``build`` and caches the result in the slot. A native Task is outside the cyclic
    GC until it holds a container (which its caller may make point back at it): caching one
    hands the task to the GC."""
    v = getattr(obj, slot)
    if type(v) is pending:
        v = build(v)
        _set(obj, slot, v)
        if type(v) is list or type(v) is dict:
            _native._gc_track(obj)
    return v


def _images(flat: Tuple[Any, ...]) -> List[Image]:
    """From the native flat tuple: ``index, url, watermark_url`` per image."""
    it = iter(flat)
    return [Image(*r) for r in zip(it, it, it)]


def _videos(flat: Tuple[Any, ...]) -> List[Video]:
    """From the native flat tuple: ``id, url, watermark_url, duration_s`` per video."""
    it = iter(flat)
    return [Video(*r) for r in zip(it, it, it, it)]


def _json_loads(text: str) -> Any:
    import json

    return json.loads(text)


_TASK_FIELDS = ("id", "kind", "status", "status_msg", "external_task_id", "created_at",
                "updated_at", "final_unit_deduction", "images", "videos", "raw")
# The slots the native layer fills as it builds a Task (its one list of them). The fields
# that cost to build (datetimes, Image/Video lists, the raw dict parsed from its JSON text)
# are kept in native form (Unix ms, flat tuples, JSON text) in the underscored slots and
# built on first read, then cached.
_TASK_SLOTS = _native.TASK_SLOTS


class Task(_Record):
    """A Kling task as last seen: typed fields plus ``raw``, the object as the server sent
    it (unknown fields kept). Immutable; equal when every field but ``raw`` is equal."""

    __slots__ = _TASK_SLOTS
    _fields = _TASK_FIELDS
    _compare = _TASK_FIELDS[:-1]
    id: str
    kind: Union[TaskKind, str]
    status: Union[TaskStatus, str]
    status_msg: Optional[str]
    external_task_id: Optional[str]
    final_unit_deduction: Optional[str]
    _created: Union[int, "datetime", None]
    _updated: Union[int, "datetime", None]
    _images: Union[List[Image], Tuple[Any, ...]]
    _videos: Union[List[Video], Tuple[Any, ...]]
    _raw: Union[str, Dict[str, Any]]

    def __init__(
        self,
        id: str,
        kind: Union[TaskKind, str],
        status: Union[TaskStatus, str],
        status_msg: Optional[str] = None,
        external_task_id: Optional[str] = None,
        created_at: Optional["datetime"] = None,
        updated_at: Optional["datetime"] = None,
        final_unit_deduction: Optional[str] = None,
        images: Optional[List[Image]] = None,
        videos: Optional[List[Video]] = None,
        raw: Optional[Dict[str, Any]] = None,
    ) -> None:
        _set(self, "id", id)
        _set(self, "kind", _kind(kind) if type(kind) is str else kind)
        _set(self, "status", _status(status) if type(status) is str else status)
        _set(self, "status_msg", status_msg)
        _set(self, "external_task_id", external_task_id)
        _set(self, "final_unit_deduction", final_unit_deduction)
        _set(self, "_created", created_at)
        _set(self, "_updated", updated_at)
        _set(self, "_images", [] if images is None else list(images))
        _set(self, "_videos", [] if videos is None else list(videos))
        _set(self, "_raw", {} if raw is None else raw)

    @property
    def created_at(self) -> Optional["datetime"]:
        """Creation time (aware, UTC)."""
        return _lazy(self, "_created", int, _dt)  # type: ignore[no-any-return]

    @property
    def updated_at(self) -> Optional["datetime"]:
        """Last update time (aware, UTC)."""
        return _lazy(self, "_updated", int, _dt)  # type: ignore[no-any-return]

    @property
    def images(self) -> List[Image]:
        """Image results, in order."""
        return _lazy(self, "_images", tuple, _images)  # type: ignore[no-any-return]

    @property
    def videos(self) -> List[Video]:
        """Video results, in order."""
        return _lazy(self, "_videos", tuple, _videos)  # type: ignore[no-any-return]

    @property
    def raw(self) -> Dict[str, Any]:
        """The task object as the server sent it (unknown fields kept)."""
        return _lazy(self, "_raw", str, _json_loads)  # type: ignore[no-any-return]

    def _raw_json(self) -> str:
        """``raw`` as JSON text: the native text itself while ``raw`` was never read (no
        parse and re-serialise just to hand it back to the core)."""
        r = self._raw
        if type(r) is str:
            return r
        import json

        return json.dumps(r)

    @property
    def is_terminal(self) -> bool:
        return str(self.status) in _TERMINAL

    def raise_for_failure(self) -> "Task":
        """Raises TaskFailedError when the task failed; returns the task otherwise (the
        core's wording: ``task {id} failed: {status_msg or 'no reason given'}``)."""
        if str(self.status) == "failed":
            from .errors import TaskFailedError

            reason = self.status_msg or "no reason given"
            raise TaskFailedError(f"task {self.id} failed: {reason}", task_id=self.id)
        return self

    def to_dict(self) -> Dict[str, Any]:
        created, updated = self.created_at, self.updated_at
        return {
            "id": self.id,
            "kind": str(self.kind),
            "status": str(self.status),
            "status_msg": self.status_msg,
            "external_task_id": self.external_task_id,
            "created_at": created.isoformat() if created else None,
            "updated_at": updated.isoformat() if updated else None,
            "final_unit_deduction": self.final_unit_deduction,
            "images": [i.to_dict() for i in self.images],
            "videos": [v.to_dict() for v in self.videos],
            "raw": self.raw,
        }


# The native module builds every Task it returns (slots filled in place of `__init__`, see
# `task_py` in bindings/python): it is handed the class and the enums once, here.
_native._register_task_class(Task, _STATUSES, _KINDS)


class TaskUpdate(_Record):
    """A status change: the task as now seen and the status before (None on first sight)."""

    __slots__ = ("task", "previous")
    _fields = _compare = ("task", "previous")
    task: Task
    previous: Optional[Union[TaskStatus, str]]

    def __init__(self, task: Task, previous: Optional[Union[TaskStatus, str]]) -> None:
        _set(self, "task", task)
        _set(self, "previous", previous)

    @classmethod
    def _from_native(cls, r: Tuple[Any, ...]) -> "TaskUpdate":
        """From the native ``(Task, previous status or None)``."""
        task, prev = r
        return cls(task, None if prev is None else _status(prev))
