"""JSON Schema export of the contracts, for pastoral systems and data engineers."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from schemas.events import DeadLetter, InterventionEvent
from schemas.marks import RegisterMark

# Marks are what we accept (validation form); events and dead letters are what we emit.
CONTRACTS: dict[str, tuple[type[BaseModel], str]] = {
    "register-mark.v1.schema.json": (RegisterMark, "validation"),
    "intervention-event.v1.schema.json": (InterventionEvent, "serialization"),
    "dead-letter.v1.schema.json": (DeadLetter, "serialization"),
}


def schema_documents() -> dict[str, dict]:
    documents = {}
    for filename, (model, mode) in CONTRACTS.items():
        document = model.model_json_schema(mode=mode)
        document["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        document["$id"] = f"https://reconnect.example/schemas/{filename}"
        documents[filename] = document
    return documents


def write_schemas(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, document in schema_documents().items():
        path = out_dir / filename
        path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written
