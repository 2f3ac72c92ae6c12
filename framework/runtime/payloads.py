"""Payload validation against a contract's models: each validator is compiled once, when the node is built.

Every payload a node receives or publishes is checked, so the check is on the hot path of every event. Two
validators of the same schema share the work: ``jsonschema_rs`` (compiled, ~1 µs for a typical payload) answers
whether the data is valid; ``jsonschema`` (~50 µs), the reference, is asked only about data the first refused, and
its errors are what a caller sees. Data is accepted when either accepts it, so the Rust validator can only make a
check faster, never stricter: where the two differ (Python's ``re`` against ECMA regular expressions, a format only
one of them checks), ``jsonschema`` decides. ``tests/runtime/test_payloads.py`` holds them to agreeing on the shipped
models.
"""

from __future__ import annotations

from typing import Any

import jsonschema_rs
from jsonschema import Draft202012Validator, FormatChecker

from framework.contract.subcontracts import JsonSchema
from framework.errors import PayloadInvalid

_FORMATS = FormatChecker()
MAX_REPORTED = 5


class PayloadValidator:
    """Checks data against one named model. ``$ref: '#/$defs/Other'`` resolves among the models declared beside it."""

    def __init__(self, name: str, schema: JsonSchema, siblings: dict[str, JsonSchema]) -> None:
        self.name = name
        # The schema was checked when the contract was validated (framework.contract.schema_subset); not again here.
        root = {"$defs": siblings, **schema}
        self._validator = Draft202012Validator(root, format_checker=_FORMATS)
        self._fast = jsonschema_rs.Draft202012Validator(root, validate_formats=True)

    def check(self, data: Any, *, what: str) -> None:
        """Raise :class:`PayloadInvalid` naming each problem (up to five) with its path, e.g.
        ``payload of stamp-requested does not match StampRequested: namespace: 5 is not of type 'string'``."""
        try:
            if self._fast.is_valid(data):
                return
        except ValueError:  # a value JSON has no type for (a datetime, say): the reference validator says what
            pass
        errors = sorted(self._validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
        if not errors:
            return
        parts = []
        for err in errors[:MAX_REPORTED]:
            where = ".".join(str(p) for p in err.absolute_path) or "(root)"
            parts.append(f"{where}: {err.message}")
        more = f" (and {len(errors) - MAX_REPORTED} more)" if len(errors) > MAX_REPORTED else ""
        raise PayloadInvalid(f"{what} does not match {self.name}: {'; '.join(parts)}{more}")
