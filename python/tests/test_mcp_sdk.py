"""`klingwatch mcp` driven by the official Python MCP SDK over stdio, as an agent's client would.

Skipped when the `mcp` package is not installed (scripts/test installs it).
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

import pytest

mcp = pytest.importorskip("mcp")
anyio = pytest.importorskip("anyio")

from mcp import ClientSession, StdioServerParameters  # noqa: E402
from mcp.client.stdio import stdio_client  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
AK, SK = "klingwatch-test-ak", "klingwatch-test-sk"


def _cli_binary() -> pathlib.Path:
    explicit = os.environ.get("KLINGWATCH_BIN")
    if explicit:
        return pathlib.Path(explicit)
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return target / "debug" / "klingwatch"


def _params(args: list[str], env: dict[str, str] | None) -> StdioServerParameters:
    binary = _cli_binary()
    if not binary.exists():
        pytest.skip(f"{binary} not built (cargo build -p klingwatch-cli)")
    return StdioServerParameters(command=str(binary), args=["mcp", *args], env=env)


def _structured(result: Any) -> dict[str, Any]:
    if result.structured_content is not None:
        return dict(result.structured_content)
    return json.loads(result.content[-1].text)


def test_sdk_client_lists_calls_waits_and_sees_errors(mock_url: str) -> None:
    env = {"KLING_BASE_URL": mock_url, "KLING_ACCESS_KEY": AK, "KLING_SECRET_KEY": SK}

    async def run() -> None:
        async with stdio_client(_params(["--allow-create"], env)) as (read, write):
            async with ClientSession(read, write) as session:
                init = await session.initialize()
                assert init.server_info.name == "klingwatch"
                names = {t.name for t in (await session.list_tools()).tools}
                assert names == {
                    "get_task_status",
                    "get_task_statuses",
                    "wait_for_task",
                    "list_tasks",
                    "create_image_task",
                }

                created = await session.call_tool("create_image_task", {"prompt": "a red fox"})
                assert not created.is_error, created
                task_id = _structured(created)["id"]

                seen: list[tuple[float, str | None]] = []

                async def on_progress(progress: float, total: float | None, message: str | None) -> None:
                    seen.append((progress, message))

                waited = await session.call_tool(
                    "wait_for_task",
                    {"task_id": task_id, "timeout_seconds": 30},
                    progress_callback=on_progress,
                )
                assert not waited.is_error, waited
                assert _structured(waited)["status"] == "succeed"
                assert seen, "no progress notification"
                assert [p for p, _ in seen] == sorted(p for p, _ in seen)
                assert "succeed" in (seen[-1][1] or "")

                status = await session.call_tool("get_task_status", {"task_id": task_id})
                assert not status.is_error
                assert task_id in status.content[0].text

                batch = await session.call_tool(
                    "get_task_statuses", {"task_ids": [task_id, "123456789012345678"]}
                )
                results = _structured(batch)["results"]
                assert results[0]["status"] == "succeed"
                assert results[1]["error"] == "not_found" and results[1]["code"] == 1203

                listed = await session.call_tool("list_tasks", {"page": 1, "page_size": 50})
                assert task_id in {t["id"] for t in _structured(listed)["tasks"]}

                missing = await session.call_tool("get_task_status", {"task_id": "123456789012345678"})
                assert missing.is_error
                err = _structured(missing)
                assert err["error"] == "not_found" and err["code"] == 1203 and err["request_id"]

                bad = await session.call_tool("list_tasks", {"page": 0})
                assert bad.is_error and _structured(bad)["error"] == "invalid_request"

                wrong_type = await session.call_tool("get_task_status", {"task_id": 7})
                assert wrong_type.is_error

                # The server is still there after all of that.
                again = await session.call_tool("get_task_status", {"task_id": task_id})
                assert not again.is_error

    anyio.run(run)


def test_sdk_client_without_allow_create_sees_no_create_tool() -> None:
    async def run() -> None:
        async with stdio_client(_params(["--mock"], {})) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                names = {t.name for t in (await session.list_tools()).tools}
                assert "create_image_task" not in names
                assert "wait_for_task" in names
                listed = await session.call_tool("list_tasks", {})
                assert len(_structured(listed)["tasks"]) >= 3

    anyio.run(run)
