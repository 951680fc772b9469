"""Task, Image, Video and TaskUpdate as values: every field the core serialises arrives, they
are immutable, compare and hash by field (not raw), pickle and copy; importing the package stays
lean (no dataclasses/inspect/json/pathlib at import time)."""

from __future__ import annotations

import copy
import json
import pickle
import subprocess
import sys
from datetime import datetime, timezone

import pytest

import klingwatch
from klingwatch import Image, Task, TaskKind, TaskStatus, TaskUpdate, Video

BODY = {
    "task_id": "t-values",
    "task_status": "succeed",
    "task_status_msg": "",
    "created_at": 1722769557708,
    "updated_at": 1722769567708,
    "final_unit_deduction": "1",
    "task_info": {"external_task_id": "ext-1"},
    "task_result": {
        "images": [
            {"index": 0, "url": "https://cdn.example/a.png"},
            {"index": 1, "url": "https://cdn.example/b.png", "watermark_url": "https://cdn.example/bw.png"},
        ]
    },
    "an_undocumented_field": {"nested": [1, 2.5, None, True, "x"]},
}


def _task(**changes):
    body = dict(BODY, **changes)
    return klingwatch.parse_callback(json.dumps(body))


def test_every_serialised_field_arrives_typed():
    t = _task()
    assert t.id == "t-values"
    assert t.kind is TaskKind.IMAGE_GENERATION
    assert t.status is TaskStatus.SUCCEED
    assert t.status_msg == ""
    assert t.external_task_id == "ext-1"
    assert t.created_at == datetime.fromtimestamp(1722769557.708, tz=timezone.utc)
    assert t.updated_at is not None and t.updated_at.tzinfo is not None
    assert t.final_unit_deduction == "1"
    assert t.images == [
        Image(0, "https://cdn.example/a.png"),
        Image(1, "https://cdn.example/b.png", "https://cdn.example/bw.png"),
    ]
    assert t.videos == []
    assert t.is_terminal
    # raw is the object as the server sent it, unknown fields and JSON types included.
    assert t.raw["an_undocumented_field"] == {"nested": [1, 2.5, None, True, "x"]}
    assert t.to_dict()["images"][1]["watermark_url"] == "https://cdn.example/bw.png"


def test_videos_arrive_typed():
    body = {"task_id": "v1", "task_status": "succeed",
            "task_result": {"videos": [{"id": "vid", "url": "https://cdn.example/v.mp4",
                                        "duration": "5.1"}]}}
    t = klingwatch.parse_callback(json.dumps(body))
    assert t.videos == [Video("vid", "https://cdn.example/v.mp4", None, 5.1)]


def test_values_are_immutable():
    t = _task()
    with pytest.raises(AttributeError):
        t.status = TaskStatus.FAILED  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del t.id  # type: ignore[misc]
    with pytest.raises(AttributeError):
        t.images[0].url = "https://elsewhere/"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        t.not_a_field = 1  # type: ignore[attr-defined]


def test_equality_and_hash_ignore_raw():
    a = _task()
    b = _task(an_undocumented_field="different")
    assert a == b and hash(a) == hash(b)
    assert a != _task(task_status="failed")
    assert len({a, b, _task(task_status="processing")}) == 2
    assert a != "t-values"


def test_pickle_and_copy_round_trip():
    t = _task()
    for back in (pickle.loads(pickle.dumps(t)), copy.copy(t), copy.deepcopy(t)):
        assert back == t
        assert back.raw == t.raw
        assert back.status is TaskStatus.SUCCEED
    u = TaskUpdate(t, TaskStatus.PROCESSING)
    assert pickle.loads(pickle.dumps(u)) == u


def test_repr_is_readable_and_leaves_raw_out():
    r = repr(_task())
    assert r.startswith("Task(id='t-values', kind=")
    assert "an_undocumented_field" not in r


def test_constructed_by_hand_like_from_the_server():
    t = Task("t1", "image_generation", "failed", status_msg="policy")
    assert t.kind is TaskKind.IMAGE_GENERATION and t.status is TaskStatus.FAILED
    assert t.images == [] and t.raw == {}
    with pytest.raises(klingwatch.TaskFailedError, match="task t1 failed: policy"):
        t.raise_for_failure()
    # The core's wording when the server gave no reason.
    with pytest.raises(klingwatch.TaskFailedError, match="task t2 failed: no reason given"):
        Task("t2", "image_generation", "failed").raise_for_failure()


def test_a_native_task_equals_one_built_by_hand():
    # The native module fills a Task's slots itself (no __init__): the same value results.
    t = _task()
    by_hand = Task(
        "t-values", TaskKind.IMAGE_GENERATION, TaskStatus.SUCCEED, status_msg="",
        external_task_id="ext-1",
        created_at=datetime.fromtimestamp(1722769557.708, timezone.utc),
        updated_at=datetime.fromtimestamp(1722769567.708, timezone.utc),
        final_unit_deduction="1",
        images=[Image(0, "https://cdn.example/a.png"),
                Image(1, "https://cdn.example/b.png", "https://cdn.example/bw.png")],
    )
    assert type(t) is Task and t == by_hand and hash(t) == hash(by_hand)
    assert repr(t) == repr(by_hand)


def test_the_native_module_takes_only_a_class_with_the_task_slots():
    from klingwatch import _native

    class NotATask:
        __slots__ = ("id",)

    with pytest.raises(AttributeError):
        _native._register_task_class(NotATask, {}, {})
    # The refused class left the registered one in place.
    assert type(_task()) is Task


def test_a_native_task_joins_the_cyclic_gc_once_it_holds_a_container():
    import gc
    import weakref

    t = _task()
    # Only atoms and tuples of atoms until `raw` or `images` is read: nothing to collect.
    assert not gc.is_tracked(t)
    assert t.created_at is not None and not gc.is_tracked(t)
    t.raw["myself"] = t  # the caller's own cycle, through the raw dict

    class Marker:
        pass

    m = Marker()
    t.raw["marker"] = m
    assert gc.is_tracked(t)
    gone = weakref.ref(m)
    del t, m
    gc.collect()
    assert gone() is None, "a cycle through a task's raw dict is collected"
    u = _task()
    assert u.images and gc.is_tracked(u)


def test_import_stays_lean():
    code = ("import sys; import klingwatch; "
            "print(','.join(m for m in ('dataclasses', 'inspect', 'json', 'pathlib', 'datetime', "
            "'asyncio') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"imported at `import klingwatch`: {out.stdout.strip()}"
