"""Structured logs: one JSON object per line with the context of the event in hand."""

from __future__ import annotations

import io
import json
import logging

from framework.runtime.logs import configure, log_context


def test_json_lines_carry_context_and_extras() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        configure("INFO", stream)
        token = log_context.set({"correlation_id": "c-1", "event_id": "e-1"})
        try:
            logging.getLogger("onex.test").info("handled %s", "it", extra={"topic": "t"})
            logging.getLogger("onex.test").debug("hidden")
        finally:
            log_context.reset(token)
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("onex.test").error("failed", exc_info=True)
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 2
    first, second = lines
    assert first["msg"] == "handled it" and first["level"] == "info" and first["logger"] == "onex.test"
    assert first["correlation_id"] == "c-1" and first["event_id"] == "e-1" and first["topic"] == "t"
    assert "correlation_id" not in second
    assert second["error"] == "ValueError: boom" and "Traceback" in second["traceback"]
