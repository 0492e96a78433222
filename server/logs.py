"""The log line format of every process: one line per record, text or JSON ([log] format, level).

Owns `StructuredFormatter` (text: `time level process[pid] logger: message key=value...`, a value
with spaces or quotes in JSON string form; or one JSON object per line) and `configure_logging`,
which the supervisor, each role and the CLI's `serve` call once at start. Fields come from
`extra={...}` on the logging call, so each line stays grep-able like Postfix's.

Security: formats what callers pass; callers never pass passwords, keys or message bodies.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys

from courriel import config as config_mod

_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class StructuredFormatter(logging.Formatter):
    """One line per record: text `time level process[pid] logger: message key=value...`,
    or one JSON object. Fields come from `extra={...}`."""

    def __init__(self, process: str, json_lines: bool = False):
        super().__init__()
        self.process = process
        self.json_lines = json_lines

    def format(self, record: logging.LogRecord) -> str:
        moment = dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds")
        moment = moment.replace("+00:00", "Z")
        fields = {k: v for k, v in vars(record).items() if k not in _RECORD_ATTRIBUTES and not k.startswith("_")}
        fields.pop("color_message", None)  # uvicorn's terminal variant of the message
        message = record.getMessage()
        error = self.formatException(record.exc_info) if record.exc_info else None
        if self.json_lines:
            document = {
                "time": moment,
                "level": record.levelname.lower(),
                "process": self.process,
                "pid": record.process,
                "logger": record.name,
                "message": message,
                **{k: v if isinstance(v, str | int | float | bool | None) else str(v) for k, v in fields.items()},
            }
            if error:
                document["exception"] = error
            return json.dumps(document, ensure_ascii=False)
        line = f"{moment} {record.levelname.lower():<7} {self.process}[{record.process}] {record.name}: {message}"
        for key, value in fields.items():
            text = str(value)
            if not text or any(c.isspace() or c in '"=' for c in text):
                text = json.dumps(text, ensure_ascii=False)
            line += f" {key}={text}"
        if error:
            line += "\n" + error
        return line


def configure_logging(config: config_mod.Config, process: str) -> None:
    """Send every logger's records to stderr in the configured format ([log] format, level)."""
    log_format = str(config.get("log", "format")).lower()
    if log_format not in ("text", "json"):
        raise config_mod.ConfigError(f"log.format must be text or json, got {log_format!r}")
    level = logging.getLevelName(str(config.get("log", "level")).upper())
    if not isinstance(level, int):
        raise config_mod.ConfigError(
            f"log.level must be debug, info, warning or error, got {config.get('log', 'level')!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(StructuredFormatter(process, json_lines=log_format == "json"))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("alembic").setLevel(max(level, logging.WARNING))  # per-migration chatter
