"""Structured logging in logfmt (default, like Prometheus exporters) or JSON, with ``extra`` fields kept."""

from __future__ import annotations

import json
import logging
import sys
import time

from agent.kernel.redact import redact

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


def _fields(record: logging.LogRecord) -> dict[str, object]:
    out: dict[str, object] = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    for k, v in record.__dict__.items():
        if k not in _STANDARD and not k.startswith("_"):
            out[k] = v
    if record.exc_info:
        out["exc"] = logging.Formatter().formatException(record.exc_info)
    return out


def _logfmt_value(v: object) -> str:
    s = str(v)
    if s == "" or any(c in s for c in ' ="\n\t'):
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return s


# Every line goes through the redactor: text from outside (a receiver's error body, a device's answer,
# a library's exception) may quote a configured secret, whichever logger carries it.


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(" ".join(f"{k}={_logfmt_value(v)}" for k, v in _fields(record).items()))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(json.dumps(_fields(record), ensure_ascii=False, default=str))


def setup_logging(level: str = "info", fmt: str = "logfmt") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Third-party debug output can include credentials (pysnmp prints keys): keep it quiet.
    for noisy in ("pysnmp", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    # APScheduler warns on every skipped or missed run; the scheduler counts those itself
    # (giamsat_collector_skipped_total) and logs them at debug, so a slow target is not a line per run.
    logging.getLogger("apscheduler").setLevel(max(logging.ERROR, root.level))
    # paramiko logs every failed handshake at ERROR with a traceback (about 20 lines for a host that
    # accepts TCP and never speaks), each run; the SSH collector reports those failures itself, as
    # reason metrics and one line per change of state.
    logging.getLogger("paramiko").setLevel(logging.CRITICAL)
