"""The JSON Schema of the language, derived from the models, for editors (yaml-language-server) and CI."""

from __future__ import annotations

import json
from typing import Any

from pydantic import TypeAdapter

from framework.contract.spec import Contract
from framework.contract.subcontracts import Subcontract

SCHEMA_FILES = {"contract.schema.json": "contract", "subcontract.schema.json": "subcontract"}


def language_schemas() -> dict[str, str]:
    """File name → JSON text of the contract and subcontract schemas."""
    out: dict[str, str] = {}
    for file, which in SCHEMA_FILES.items():
        adapter: TypeAdapter[Any] = TypeAdapter(Contract if which == "contract" else Subcontract)
        schema = adapter.json_schema(by_alias=True)
        schema = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"https://omninode.dev/schemas/onex/{file}",
            "title": "ONEX contract" if which == "contract" else "ONEX subcontract",
            **schema,
        }
        out[file] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return out
