"""The klingwatch error hierarchy: one subclass of KlingError per core error kind.

The native module raises these classes (through ``_from_native``); the mapping from the
core's stable kind names to classes lives here.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Type, Union

__all__ = [
    "KlingError",
    "AuthenticationError",
    "PermissionDeniedError",
    "AccountError",
    "InvalidRequestError",
    "NotFoundError",
    "PolicyError",
    "RateLimitError",
    "ServerError",
    "RequestTimeoutError",
    "NetworkError",
    "DecodeError",
    "ConfigError",
    "TaskFailedError",
    "WaitTimeoutError",
    "SignatureError",
    "CancelledError",
]


class KlingError(Exception):
    """Any klingwatch failure. ``kind`` is the core's stable kind name."""

    kind: str = "unknown"

    def __init__(
        self,
        message: str,
        *,
        kind: Optional[str] = None,
        http_status: Optional[int] = None,
        kling_code: Optional[int] = None,
        request_id: Optional[str] = None,
        task_id: Optional[str] = None,
        retryable: bool = False,
        attempts: int = 0,
        outcome_unknown: bool = False,
    ) -> None:
        super().__init__(message)
        if kind is not None:
            self.kind = kind
        self.message = message
        self.http_status = http_status
        self.kling_code = kling_code
        self.request_id = request_id
        self.task_id = task_id
        self.retryable = retryable
        self.attempts = attempts
        #: A create that failed in a way that may still have made the task (5xx, timeout,
        #: lost answer) and whose lookup by external_task_id could not settle it.
        self.outcome_unknown = outcome_unknown

    def _fields(self) -> Dict[str, object]:
        return {
            "kind": self.kind,
            "http_status": self.http_status,
            "kling_code": self.kling_code,
            "request_id": self.request_id,
            "task_id": self.task_id,
            "retryable": self.retryable,
            "attempts": self.attempts,
            "outcome_unknown": self.outcome_unknown,
        }

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (_rebuild, (type(self), self.message, self._fields()))

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        extra = ", ".join(
            f"{k}={v!r}" for k, v in self._fields().items() if v is not None and k != "kind"
        )
        return f"{type(self).__name__}({self.message!r}, kind={self.kind!r}{', ' + extra if extra else ''})"


def _rebuild(cls: Type[KlingError], message: str, fields: Dict[str, object]) -> KlingError:
    return cls(message, **fields)  # type: ignore[arg-type]


class AuthenticationError(KlingError):
    kind = "authentication"


class PermissionDeniedError(KlingError):
    kind = "permission_denied"


class AccountError(KlingError):
    kind = "account"


class InvalidRequestError(KlingError):
    kind = "invalid_request"


class NotFoundError(KlingError):
    kind = "not_found"


class PolicyError(KlingError):
    kind = "policy"


class RateLimitError(KlingError):
    kind = "rate_limited"


class ServerError(KlingError):
    kind = "server"


class RequestTimeoutError(KlingError):
    kind = "timeout"


class NetworkError(KlingError):
    kind = "connection"


class DecodeError(KlingError):
    kind = "decode"


class ConfigError(KlingError):
    kind = "config"


class TaskFailedError(KlingError):
    kind = "task_failed"


class WaitTimeoutError(KlingError):
    kind = "wait_timeout"


class SignatureError(KlingError):
    kind = "signature"


class CancelledError(KlingError):
    kind = "cancelled"


_BY_KIND: Dict[str, Type[KlingError]] = {
    cls.kind: cls
    for cls in (
        AuthenticationError,
        PermissionDeniedError,
        AccountError,
        InvalidRequestError,
        NotFoundError,
        PolicyError,
        RateLimitError,
        ServerError,
        RequestTimeoutError,
        NetworkError,
        DecodeError,
        ConfigError,
        TaskFailedError,
        WaitTimeoutError,
        SignatureError,
        CancelledError,
    )
}


def _from_native(
    kind: str,
    message: str,
    http_status: Optional[int],
    kling_code: Optional[int],
    request_id: Optional[str],
    task_id: Optional[str],
    retryable: bool,
    attempts: int,
    outcome_unknown: bool = False,
) -> KlingError:
    """Builds the exception for a core error (the fields of the core's Error::to_json)."""
    cls = _BY_KIND.get(kind, KlingError)
    return cls(
        message,
        kind=kind,
        http_status=http_status,
        kling_code=kling_code,
        request_id=request_id,
        task_id=task_id,
        retryable=retryable,
        attempts=attempts,
        outcome_unknown=outcome_unknown,
    )


def _from_json(text: Union[str, Dict[str, Any]]) -> KlingError:
    """Called by klingwatch._native with the core's error JSON."""
    if isinstance(text, str):
        import json

        text = json.loads(text)
    d: Dict[str, Any] = text  # type: ignore[assignment]
    exc = _from_native(
        d["kind"],
        d["message"],
        d.get("http_status"),
        d.get("kling_code"),
        d.get("request_id"),
        d.get("task_id"),
        bool(d.get("retryable")),
        int(d.get("attempts") or 0),
        bool(d.get("outcome_unknown")),
    )
    cause = d.get("cause")
    if cause:
        # The underlying failure, chained like `raise ... from`: a ConnectionError for
        # transport failures, TimeoutError for timeouts, ValueError for undecodable bodies.
        exc.__cause__ = _CAUSE_TYPES.get(exc.kind, Exception)(cause)
    return exc


_CAUSE_TYPES: Dict[str, Type[Exception]] = {
    "connection": ConnectionError,
    "timeout": TimeoutError,
    "decode": ValueError,
}
