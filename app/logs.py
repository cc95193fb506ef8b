"""Logging hygiene: tokens never reach the logs.

Uvicorn logs request lines, including WebSocket URLs whose query carries a
participant or facilitator token and personal rejoin links (`?t=`); this filter
masks them wherever they appear. It sits on the loggers that write such lines
(uvicorn's, and `app` itself); the app's own modules never log tokens.
"""

from __future__ import annotations

import logging
import re

# `t` is the participant token in a personal rejoin link (/w/<id>/rejoin?t=...); the
# lookbehind keeps it from matching the end of another name (`format=`).
_SECRET_QUERY = re.compile(r"((?:token|password|(?<![\w-])t)=)[^&\s\"']+", re.IGNORECASE)
_BEARER = re.compile(r"(bearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE)


def redact(text: str) -> str:
    return _BEARER.sub(r"\1[redacted]", _SECRET_QUERY.sub(r"\1[redacted]", text))


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.args = tuple(
                redact(a) if isinstance(a, str) else a
                for a in (record.args if isinstance(record.args, tuple) else (record.args,))
            )
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


def install() -> None:
    for name in ("uvicorn.access", "uvicorn.error", "uvicorn", "app"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSecrets) for f in logger.filters):
            logger.addFilter(RedactSecrets())
