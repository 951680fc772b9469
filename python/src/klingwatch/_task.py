"""Task, Image, Video, TaskStatus and TaskKind: plain Python values built from the JSON the
native module returns."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Union

__all__ = ["Task", "TaskStatus", "TaskKind", "Image", "Video"]


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


_TERMINAL = {"succeed", "failed"}


def _status(value: str) -> Union[TaskStatus, str]:
    try:
        return TaskStatus(value)
    except ValueError:
        return value  # an unknown server value stays a plain str


def _kind(value: str) -> Union[TaskKind, str]:
    try:
        return TaskKind(value)
    except ValueError:
        return value


def _dt(ms: Optional[int]) -> Optional[datetime]:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000.0, tz=timezone.utc)


@dataclass(frozen=True)
class Image:
    index: int
    url: str
    watermark_url: Optional[str] = None


@dataclass(frozen=True)
class Video:
    id: str
    url: str
    watermark_url: Optional[str] = None
    duration_s: Optional[float] = None


@dataclass(frozen=True)
class Task:
    id: str
    kind: Union[TaskKind, str]
    status: Union[TaskStatus, str]
    status_msg: Optional[str] = None
    external_task_id: Optional[str] = None
    created_at: Optional[datetime] = None
    updated_at: Optional[datetime] = None
    final_unit_deduction: Optional[str] = None
    images: List[Image] = field(default_factory=list)
    videos: List[Video] = field(default_factory=list)
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def is_terminal(self) -> bool:
        return str(self.status) in _TERMINAL

    def raise_for_failure(self) -> "Task":
        """Raises TaskFailedError when the task failed; returns the task otherwise."""
        if str(self.status) == "failed":
            from .errors import TaskFailedError

            msg = f"task {self.id} failed"
            if self.status_msg:
                msg += f": {self.status_msg}"
            raise TaskFailedError(msg, task_id=self.id)
        return self

    def to_dict(self) -> Dict[str, Any]:
        return {
            "id": self.id,
            "kind": str(self.kind),
            "status": str(self.status),
            "status_msg": self.status_msg,
            "external_task_id": self.external_task_id,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
            "final_unit_deduction": self.final_unit_deduction,
            "images": [vars(i).copy() for i in self.images],
            "videos": [vars(v).copy() for v in self.videos],
            "raw": self.raw,
        }

    @classmethod
    def _from_native(cls, data: Union[str, Dict[str, Any]]) -> "Task":
        d = json.loads(data) if isinstance(data, str) else data
        return cls(
            id=d["id"],
            kind=_kind(d["kind"]),
            status=_status(d["status"]),
            status_msg=d.get("status_msg"),
            external_task_id=d.get("external_task_id"),
            created_at=_dt(d.get("created_at_ms")),
            updated_at=_dt(d.get("updated_at_ms")),
            final_unit_deduction=d.get("final_unit_deduction"),
            images=[Image(**i) for i in d.get("images", [])],
            videos=[Video(**v) for v in d.get("videos", [])],
            raw=d.get("raw") or {},
        )
