"""The published contract (schemas/json): it matches the code byte for byte, every schema is valid
JSON Schema, real messages validate against it, the AsyncAPI document hangs together, and the
versioning policy is stated."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from devtools.harness import REPO
from devtools.registers import MONDAY, mark
from schemas.asyncapi import (
    CONTRACT_VERSION,
    TOPICS,
    VERSIONING_POLICY,
    WEBHOOK_DELIVERY_VERSION,
    WEBHOOK_SIGNING,
    asyncapi_document,
)
from schemas.deadletter import dead_letter
from schemas.events import (
    EVENT_SCHEMA_VERSION,
    InterventionKind,
    ReasonCode,
    SupportAction,
)
from schemas.export import ASYNCAPI_FILENAME, CONTRACTS, write_schemas
from schemas.marks import MarkRejected, RejectReason
from schemas.outcomes import OutcomeEvent, WebhookDeadLetter, WebhookFailure
from streams.settings import Settings
from streams.webhook.signing import WebhookSecret, signature_headers

COMMITTED = REPO / "schemas" / "json"
REGENERATE = ("run `reconnect schema --out schemas/json` (or `python -m streams.cli schema --out schemas/json`) "
              "and commit schemas/json; first check the change follows the versioning policy in schemas/asyncapi.py "
              "(additive within a major version; anything else is a new major on a new topic)")


@pytest.fixture(scope="module")
def samples(make_event) -> dict[str, list[dict]]:
    """Real messages of every contract, built by the code that produces them."""
    event = make_event(3, kind=InterventionKind.CONCERN)
    improving = make_event(4, kind=InterventionKind.IMPROVING)
    health = make_event(5, kind=InterventionKind.HEALTH_NEEDS)
    letter = dead_letter(MarkRejected(RejectReason.UNKNOWN_CODE, "code 'ZZ' is not a DfE code"),
                         "SCH1,P1,2025-09-08,AM,ZZ", stage="ingest", source_file="marks.csv", line=7)
    binary = dead_letter(MarkRejected(RejectReason.INVALID_ENCODING, "not UTF-8"), b"\xff\xfe", stage="worker",
                         topic="reconnect.marks.v1", partition=2, offset=41)
    outcome = OutcomeEvent.from_request({"pupil_id": "P1", "school_id": "SCH1", "action": "support_plan_started",
                                         "recorded_at": "2025-10-01T10:00:00Z", "recorded_by_role": "senco",
                                         "intervention_event_id": event.event_id, "note": "review in 3 weeks"})
    bare_outcome = OutcomeEvent.from_request({"pupil_id": "P1", "school_id": "SCH1", "action": "acknowledged",
                                              "recorded_at": "2025-10-01T10:00:00Z", "recorded_by_role": "form_tutor"})
    undelivered = WebhookDeadLetter(
        reason=WebhookFailure.REJECTED, detail="HTTP 400 on attempt 1", event_id=event.event_id, attempts=1,
        last_status=400, webhook_host="pastoral.example:443", raw=event.model_dump_json(), raw_bytes=10,
        raw_sha256="0" * 64, topic="reconnect.interventions.v1", partition=0, offset=5,
        first_attempt_at=dt.datetime(2025, 10, 1, tzinfo=dt.timezone.utc),
        dead_lettered_at=dt.datetime(2025, 10, 1, 0, 0, 1, tzinfo=dt.timezone.utc))
    unreadable = WebhookDeadLetter(
        reason=WebhookFailure.TOMBSTONE, detail="the record has no value (a tombstone)", attempts=0, raw="",
        raw_bytes=0, raw_sha256="e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        topic="reconnect.interventions.v1", partition=1, offset=9,
        dead_lettered_at=dt.datetime(2025, 10, 1, tzinfo=dt.timezone.utc))
    return {
        "register-mark.v1.schema.json": [json.loads(mark("P1", MONDAY, "AM", "/").to_wire()),
                                         json.loads(mark("P2", MONDAY, "PM", "L").to_wire())],
        "intervention-event.v1.schema.json": [json.loads(event.model_dump_json()),
                                              json.loads(improving.model_dump_json()),
                                              json.loads(health.model_dump_json())],
        "dead-letter.v1.schema.json": [json.loads(letter.model_dump_json()), json.loads(binary.model_dump_json())],
        "outcome-event.v1.schema.json": [json.loads(outcome.to_wire()), json.loads(bare_outcome.to_wire())],
        "webhook-dead-letter.v1.schema.json": [json.loads(undelivered.model_dump_json()),
                                               json.loads(unreadable.model_dump_json())],
    }


def test_committed_contract_matches_the_code(tmp_path):
    write_schemas(tmp_path)
    generated = {p.name: p.read_bytes() for p in sorted(tmp_path.iterdir())}
    committed = {p.name: p.read_bytes() for p in sorted(COMMITTED.iterdir())} if COMMITTED.is_dir() else {}
    missing = sorted(set(generated) - set(committed))
    stale = sorted(set(committed) - set(generated))
    changed = sorted(name for name in set(generated) & set(committed) if generated[name] != committed[name])
    assert not (missing or stale or changed), (
        f"schemas/json has drifted from the models (missing {missing}, no longer generated {stale}, "
        f"changed {changed}): {REGENERATE}")
    assert set(generated) == set(CONTRACTS) | {ASYNCAPI_FILENAME}


@pytest.mark.parametrize("filename", sorted(CONTRACTS))
def test_every_schema_is_valid_and_real_messages_validate(filename, samples):
    schema = json.loads((COMMITTED / filename).read_text())
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    validator = Draft202012Validator(schema)
    for instance in samples[filename]:
        errors = [e.message for e in validator.iter_errors(instance)]
        assert not errors, errors


def test_vocabularies_are_closed_in_the_contract(samples):
    events = Draft202012Validator(json.loads((COMMITTED / "intervention-event.v1.schema.json").read_text()))
    event = samples["intervention-event.v1.schema.json"][0]
    assert events.is_valid(event)
    assert not events.is_valid({**event, "suggested_actions": ["issue_penalty_notice"]})
    assert not events.is_valid({**event, "kind": "warning"})
    assert not events.is_valid({k: v for k, v in event.items() if k != "event_id"})
    outcomes = Draft202012Validator(json.loads((COMMITTED / "outcome-event.v1.schema.json").read_text()))
    outcome = samples["outcome-event.v1.schema.json"][0]
    assert outcomes.is_valid(outcome)
    assert not outcomes.is_valid({**outcome, "action": "fine_issued"})
    assert not outcomes.is_valid({**outcome, "recorded_by_role": "Mrs Jones"})
    assert not outcomes.is_valid({**outcome, "pupil_id": "Jane Smith"})
    assert not outcomes.is_valid({**outcome, "note": "x" * 281})
    assert "never identifying" in json.dumps(json.loads((COMMITTED / "outcome-event.v1.schema.json").read_text()))


def _resolve(document: dict, ref: str):
    assert ref.startswith("#/"), f"external reference {ref}"
    node = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_asyncapi_document_is_complete_and_its_payloads_validate_real_messages(samples):
    document = json.loads((COMMITTED / ASYNCAPI_FILENAME).read_text())
    assert document == json.loads(json.dumps(asyncapi_document()))
    assert document["asyncapi"] == "3.0.0"
    assert int(document["info"]["version"].split(".")[0]) == EVENT_SCHEMA_VERSION == int(CONTRACT_VERSION[0])
    for ref in set(_refs(document)):
        _resolve(document, ref)  # every reference resolves inside the document

    # Topic names: the Settings defaults, each ending in the major version.
    defaults = Settings.model_fields
    assert TOPICS["marks"] == defaults["topic_marks"].default
    assert TOPICS["interventions"] == defaults["topic_interventions"].default
    assert TOPICS["deadLetter"] == defaults["topic_dead_letter"].default
    assert TOPICS["outcomes"] == defaults["topic_outcomes"].default
    assert TOPICS["webhookDeadLetter"] == defaults["topic_webhook_dead_letter"].default
    kafka_channels = {name: c for name, c in document["channels"].items() if c["address"]}
    assert {c["address"] for c in kafka_channels.values()} == set(TOPICS.values())
    assert all(c["address"].endswith(f".v{EVENT_SCHEMA_VERSION}") for c in kafka_channels.values())
    assert {"kafka", "pastoralWebhook"} <= set(document["servers"])

    actions = {}
    for name, operation in document["operations"].items():
        channel_ref = operation["channel"]["$ref"]
        for message in operation["messages"]:
            assert message["$ref"].startswith(channel_ref + "/messages/"), name
        actions.setdefault(channel_ref.split("/")[-1], set()).add(operation["action"])
    for channel in ("marks", "interventions", "outcomes"):
        assert actions[channel] == {"send", "receive"}
    assert actions["webhook"] == {"send"}

    by_topic_file = {"marks": "register-mark.v1.schema.json", "interventions": "intervention-event.v1.schema.json",
                     "deadLetter": "dead-letter.v1.schema.json", "outcomes": "outcome-event.v1.schema.json",
                     "webhookDeadLetter": "webhook-dead-letter.v1.schema.json",
                     "webhook": "intervention-event.v1.schema.json"}
    every = samples
    for channel_name, channel in document["channels"].items():
        for message_ref in channel["messages"].values():
            message = _resolve(document, message_ref["$ref"])
            payload_schema = {**message["payload"], "components": document["components"]}
            Draft202012Validator.check_schema(payload_schema)
            validator = Draft202012Validator(payload_schema)
            instances = every[by_topic_file[channel_name]]
            assert instances
            for instance in instances:
                errors = [e.message for e in validator.iter_errors(instance)]
                assert not errors, (channel_name, errors)
            assert not validator.is_valid({"schema_version": 1})  # the payload schema is not vacuous
            if "headers" in message:
                headers = Draft202012Validator({**message["headers"], "components": document["components"]})
                body = json.dumps(instances[0]).encode()
                rotating = [WebhookSecret.generate(), WebhookSecret.generate()]
                signed = {"Content-Type": "application/json",
                          **signature_headers(rotating, instances[0]["event_id"], body)}
                assert headers.is_valid(signed), list(headers.iter_errors(signed))
                for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
                    assert not headers.is_valid({k: v for k, v in signed.items() if k != name}), name
                assert not headers.is_valid({**signed, "webhook-signature": "sha256=" + "0" * 64})
                assert message["x-webhook-delivery-version"] == WEBHOOK_DELIVERY_VERSION


def test_versioning_policy_is_stated():
    document = json.loads((COMMITTED / ASYNCAPI_FILENAME).read_text())
    description = document["info"]["description"]
    assert VERSIONING_POLICY in description and WEBHOOK_SIGNING in description
    for phrase in ("additive only", "new major version on a new topic", "schema_version",
                   "reconnect.interventions.v2", "must ignore kinds they do not know", "health_needs",
                   "Standard Webhooks", "webhook-id", "webhook-timestamp", "webhook-signature", "whsec_",
                   "Breaking for receivers: yes", "Roll-out", f"delivery version {WEBHOOK_DELIVERY_VERSION}"):
        assert phrase in description, phrase
    assert Path(REPO / "schemas" / "asyncapi.py").read_text().count("Versioning policy") == 1


def test_the_values_the_policy_names_exist():
    """The policy's example of an additive change names real values (it drifts otherwise)."""
    assert InterventionKind.HEALTH_NEEDS.value in VERSIONING_POLICY
    for value in ("extended_illness",):
        assert value in {code.value for code in ReasonCode} and value in VERSIONING_POLICY
    for value in ("work_sent_home", "health_needs_education_conversation"):
        assert value in {action.value for action in SupportAction} and value in VERSIONING_POLICY
    assert int(CONTRACT_VERSION.split(".")[1]) >= 1  # health_needs came in a minor version
