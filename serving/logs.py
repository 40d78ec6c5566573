"""No phone number or order id in the service's logs: a logging filter that masks them in every record.

:class:`MaskingFilter` rewrites a record's message (its arguments merged in) and its exception text: mobile numbers
as :func:`models.ticket.mask_text` does (``138****5678``), and any other run of 8 or more digits (order ids,
numbers in other forms) keeps its first 3 and last 2 digits (``20240518001`` -> ``202******01``); digits inside
lower-case hex (ticket ids, uuids, hashes) are left alone.

A filter on a logger sees only the records logged on that very logger, not those its children propagate, so
:func:`install` puts it on the root logger's handlers, on ``hotline``, ``bentoml`` and ``uvicorn`` and on every
logger already created under them; loggers made later under those names get it when :func:`install` runs again
(the service calls it at start-up, after its modules are imported). Installing twice adds nothing.
"""

from __future__ import annotations

import logging
import re

from models.ticket import mask_text

# 8 or more digits, not inside a lower-case hex id (ticket ids "T-<32 hex>", uuids, hashes); "JD2024..." is masked
LONG_DIGITS = re.compile(r"(?<![0-9a-f])(\d{3})(\d{3,})(\d{2})(?![0-9a-f])")
ROOTS = ("hotline", "bentoml", "uvicorn", "serving", "models")


def mask_digits(text: str) -> str:
    """Mobile numbers masked, then every other run of 8+ digits reduced to its first 3 and last 2 digits."""
    text = mask_text(text)
    return LONG_DIGITS.sub(lambda m: m.group(1) + "*" * len(m.group(2)) + m.group(3), text)


class MaskingFilter(logging.Filter):
    """Masks numbers in a record in place (so every handler after it sees the masked text); never drops one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_hotline_masked", False):
            return True
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string: leave the record to logging's own error report
            return True
        masked = mask_digits(message)
        if masked != message or record.args:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_digits(record.exc_text)
        record._hotline_masked = True
        return True


_FILTER = MaskingFilter()


def _add(target: logging.Filterer) -> None:
    if not any(isinstance(f, MaskingFilter) for f in target.filters):
        target.addFilter(_FILTER)


def install() -> MaskingFilter:
    """Put the masking filter on the root logger and its handlers, and on the ``hotline``, ``bentoml``,
    ``uvicorn`` (and this project's module) loggers and their existing children."""
    root = logging.getLogger()
    _add(root)
    for h in root.handlers:
        _add(h)
    for name in ROOTS:
        _add(logging.getLogger(name))
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and name.split(".")[0] in ROOTS:
            _add(logger)
            for h in logger.handlers:
                _add(h)
    return _FILTER
