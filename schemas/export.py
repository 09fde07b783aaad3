"""JSON Schema and AsyncAPI export of the contracts, for pastoral systems and data engineers.

`reconnect schema --out schemas/json` writes them; the committed copies in schemas/json are
checked against the code by tests/test_contract.py, so the contract cannot drift silently.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from schemas.deadletter import DeadLetter
from schemas.events import InterventionEvent
from schemas.marks import RegisterMark
from schemas.outcomes import OutcomeEvent, WebhookDeadLetter

ASYNCAPI_FILENAME = "asyncapi.json"

# What we accept is in validation form (marks, outcomes); what we emit in serialization form.
CONTRACTS: dict[str, tuple[type[BaseModel], str]] = {
    "register-mark.v1.schema.json": (RegisterMark, "validation"),
    "intervention-event.v1.schema.json": (InterventionEvent, "serialization"),
    "dead-letter.v1.schema.json": (DeadLetter, "serialization"),
    "outcome-event.v1.schema.json": (OutcomeEvent, "validation"),
    "webhook-dead-letter.v1.schema.json": (WebhookDeadLetter, "serialization"),
}


def schema_documents() -> dict[str, dict]:
    documents = {}
    for filename, (model, mode) in CONTRACTS.items():
        document = model.model_json_schema(mode=mode)
        document["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        document["$id"] = f"https://reconnect.example/schemas/{filename}"
        documents[filename] = document
    return documents


def contract_documents() -> dict[str, dict]:
    """Every file of the published contract: the JSON Schemas and the AsyncAPI document."""
    from schemas.asyncapi import asyncapi_document

    return {**schema_documents(), ASYNCAPI_FILENAME: asyncapi_document()}


def render(document: dict) -> str:
    """The exact bytes written (stable: sorted keys, two-space indent, final newline)."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_schemas(out_dir: Path) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, document in contract_documents().items():
        path = out_dir / filename
        path.write_text(render(document), encoding="utf-8")
        written.append(path)
    return written
