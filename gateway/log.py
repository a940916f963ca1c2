"""Logging setup: one line per event, plain text for a console or JSON for a collector.

Loggers are named per subsystem (``gateway.ami``, ``gateway.calls``, ``gateway.http`` ...).
Messages use ``key=value`` pairs with %-style arguments, and untrusted text goes through
``%r`` so a caller ID name cannot forge a log line.
"""

from __future__ import annotations

import json
import logging
import sys
import time

_STD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STD:
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        formatter.converter = time.gmtime
        handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's access log is noisy at INFO for a panel that polls nothing; keep warnings
    logging.getLogger("aiohttp.access").setLevel(max(logging.WARNING, root.level))
