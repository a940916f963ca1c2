"""Last success and last error of a connector, for ``/health``."""

from __future__ import annotations

import time
from collections.abc import Callable

from connectors.base import ConnectorHealth


class HealthTracker:
    """Mutable record behind ``CrmConnector.health()``; error texts never hold secrets."""

    __slots__ = ("_clock", "_last_error", "_last_error_at", "_last_success", "name")

    def __init__(self, name: str, clock: Callable[[], float] = time.time) -> None:
        self.name = name
        self._clock = clock
        self._last_success: float | None = None
        self._last_error: str | None = None
        self._last_error_at: float | None = None

    def success(self) -> None:
        self._last_success = self._clock()

    def error(self, message: str) -> None:
        self._last_error = message[:500]
        self._last_error_at = self._clock()

    def snapshot(self) -> ConnectorHealth:
        return ConnectorHealth(
            name=self.name,
            last_success=self._last_success,
            last_error=self._last_error,
            last_error_at=self._last_error_at,
        )
