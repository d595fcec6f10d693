"""Per-request logging context shared by the audit API and the log4j layouts.

The MDC is structlog's contextvars context (``structlog.contextvars.bind_contextvars``), so a
value bound once shows up as ``mdc`` in JSON audit envelopes and as ``%X{key}`` in
PatternLayout lines alike. The NDC (``%x``) is a stack of strings in its own ContextVar.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import structlog

_ndc: ContextVar[tuple[str, ...]] = ContextVar("logbridge_ndc", default=())


def bind_mdc(**values: Any) -> None:
    """Bind MDC keys for the current context (thread / asyncio task)."""
    structlog.contextvars.bind_contextvars(**values)


def unbind_mdc(*keys: str) -> None:
    structlog.contextvars.unbind_contextvars(*keys)


def clear_mdc() -> None:
    structlog.contextvars.clear_contextvars()


def get_mdc() -> dict[str, Any]:
    """A copy of the current MDC."""
    return structlog.contextvars.get_contextvars()


@contextmanager
def mdc(**values: Any) -> Iterator[None]:
    """Bind MDC keys for the duration of a ``with`` block."""
    with structlog.contextvars.bound_contextvars(**values):
        yield


def push_ndc(message: str) -> None:
    _ndc.set(_ndc.get() + (message,))


def pop_ndc() -> str | None:
    stack = _ndc.get()
    if not stack:
        return None
    _ndc.set(stack[:-1])
    return stack[-1]


def clear_ndc() -> None:
    _ndc.set(())


def get_ndc() -> str | None:
    """The NDC as log4j prints it with ``%x``: the stack joined by spaces, or None when empty."""
    stack = _ndc.get()
    return " ".join(stack) if stack else None
