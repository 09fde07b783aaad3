"""The AsyncAPI 3.0.0 document of Reconnect's topics and webhook, generated from the pydantic models.

`reconnect schema --out schemas/json` writes it beside the JSON Schemas; tests/test_contract.py
fails when the committed copy differs from what the models generate, so the published contract
cannot drift from the code silently.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from schemas import topics
from schemas.deadletter import DeadLetter
from schemas.events import InterventionEvent
from schemas.marks import RegisterMark
from schemas.outcomes import OutcomeEvent, WebhookDeadLetter

ASYNCAPI_VERSION = "3.0.0"
# Semantic version of the whole contract. Major = the topics' `.vN` suffix and every message's
# `schema_version`; minor = an additive change; patch = documentation only.
# 1.1.0: the `health_needs` kind and new reason codes and support actions (additive); new webhook
# dead-letter reasons (additive); webhook delivery version 2 (Standard Webhooks signing).
# 1.2.0: the `same_weekday_pattern` reason code, and the window counts `same_weekday_days_off_40` and
# `same_weekday` (additive, optional); the wellbeing check-in's text no longer names only Mondays and Fridays.
CONTRACT_VERSION = "1.2.0"
# The webhook delivery (HTTP headers and signature) is versioned on its own: it is not a topic, and
# changing it changes no message. 1: X-Reconnect-* headers, hex HMAC (contract 1.0.0). 2: Standard Webhooks.
WEBHOOK_DELIVERY_VERSION = 2
KAFKA_BINDING_VERSION = "0.5.0"
HTTP_BINDING_VERSION = "0.3.0"

# Default topic names (the Settings defaults; deployments may rename them with RECONNECT_TOPIC_*).
TOPICS = {
    "marks": topics.MARKS,
    "interventions": topics.INTERVENTIONS,
    "deadLetter": topics.DEAD_LETTER,
    "outcomes": topics.OUTCOMES,
    "webhookDeadLetter": topics.WEBHOOK_DEAD_LETTER,
}

VERSIONING_POLICY = """\
## Versioning policy

* Every message carries `schema_version`, the contract's **major version**, and every topic name ends
  in it (`reconnect.interventions.v1`).
* **Within a major version, changes are additive only**: a new optional field, a new message on a
  new topic, a new value in an open vocabulary (below), clearer documentation. Consumers must ignore
  fields they do not know. Such a change raises the minor version of `info.version`.
* **Open vocabularies** grow within a major version: the intervention `kind`, the reason `code`, the
  `suggested_actions`, and the dead letters' `reason`. Consumers must ignore kinds they do not know
  (skip the event, perhaps log it), and show the `text` of a reason or the `suggested_actions_text`
  of an action they do not know. The JSON Schemas list the values of this version, so a consumer
  that validates strictly must treat an unknown value as "ignore", not as an error. Every value ever
  added is supportive: none can express an enforcement step. Example: the `health_needs` kind
  (contract 1.1.0), raised when illness absence reaches 15 school days, with its own reasons and
  actions (`extended_illness`, `work_sent_home`, `health_needs_education_conversation`).
* **Closed vocabularies** do not grow within a major version: the tier (a scale), and what we accept
  from others (outcome action, staff role, register session and code).
* Anything else is **breaking and gets a new major version on a new topic**: removing or renaming a
  field or a value, changing a type, format or meaning, making an optional field required, or adding
  a value to a closed vocabulary. The new major is published on its own topic
  (`reconnect.interventions.v2`) beside the old one for a migration period; an existing topic never
  changes major version.
* The webhook delivery (headers and signature) has its own version (`x-webhook-delivery-version`),
  because changing it changes no topic and no message; see below.
* The JSON Schemas and this document are generated from the code (`reconnect schema --out
  schemas/json`) and committed; a test fails if they drift from the code."""

WEBHOOK_SIGNING = f"""\
## Webhook delivery (`reconnect bridge`), delivery version {WEBHOOK_DELIVERY_VERSION}

Each intervention is POSTed to the pastoral system's webhook, in order per partition, at least once,
signed per the [Standard Webhooks](https://www.standardwebhooks.com/) specification, so any Standard
Webhooks library (most languages have one) verifies it:

* body: the event's JSON exactly as published on the interventions topic (`Content-Type: application/json`);
* `webhook-id`: the event's `event_id`, deterministic for a decision and the same on every retry.
  Receivers must de-duplicate by it and answer **2xx to a duplicate**;
* `webhook-timestamp`: Unix time in whole seconds when this attempt was signed (each attempt is signed
  afresh);
* `webhook-signature`: `v1,` + base64 of HMAC-SHA256 over `{{webhook-id}}.{{webhook-timestamp}}.{{body}}`,
  keyed with the secret's bytes (the secret is `whsec_` + base64 of 24 to 64 random bytes). During a
  secret rotation the header carries one signature per secret, separated by spaces; accept the request
  if any matches. Verify over the raw body before parsing it, compare in constant time, and reject a
  timestamp more than 5 minutes from your clock (replay protection).
* Timeouts, connection errors, 5xx, 408 and 429 are retried with exponential backoff and full jitter;
  `Retry-After` is honoured on 429 and 503. Any other 4xx, or 3xx, is final. An event that cannot be
  delivered, and any record on the topic that is not a readable intervention event of this major
  version, goes to `reconnect.webhook-dead-letter.v1` with the reason, the attempts and the record.

### The change to Standard Webhooks (delivery version 1 to 2, contract 1.1.0)

* **Breaking for receivers: yes.** Delivery version 1 sent `X-Reconnect-Timestamp`,
  `X-Reconnect-Signature: sha256=<hex HMAC of "timestamp.body">`, `Idempotency-Key` and
  `X-Reconnect-Event-Id`, keyed with the secret's text. Version 2 sends only the Standard Webhooks
  headers, signs the id too, encodes in base64, and keys with the decoded `whsec_` secret: a version-1
  verifier refuses every version-2 delivery, and the reverse.
* **Not breaking for any topic**: no message changes, so topics stay `.v1`, `schema_version` stays 1
  and `info.version` takes a minor step; the delivery has its own version.
* **Roll-out**: issue the receiver a `whsec_` secret; stop the bridge (interventions wait on the topic,
  nothing is lost); switch the receiver to a Standard Webhooks verifier (one that must not pause
  accepts both schemes for the switch); start the new bridge with `RECONNECT_WEBHOOK_SECRET` set to
  the new secret: it resumes from its committed offsets. A delivery refused while the two ends
  disagree (401) is dead-lettered as `rejected` with the event, to re-send.
* Later changes stay additive where the specification allows: a new signature scheme (e.g. `v1a`,
  asymmetric) is added beside `v1` in `webhook-signature`, which version-2 receivers skip."""

DESCRIPTION = f"""\
Reconnect turns school register marks into early, explained, supportive signals for pastoral teams.
Marks come in; intervention events (a concern, or a flagged pupil's attendance improving) go out;
pastoral staff record what they did as outcome events. Every id is a pseudonym: no message carries
a name. The vocabularies of suggested actions and of outcome actions are closed and supportive: no
message can express an enforcement step.

{VERSIONING_POLICY}

{WEBHOOK_SIGNING}
"""

# (component message name, model, JSON Schema mode, title, summary, kafka key description)
MESSAGES: list[tuple[str, type[BaseModel], str, str, str, str]] = [
    ("registerMark", RegisterMark, "validation", "Register mark",
     "One register mark: a pupil, a school day, a session and the DfE code recorded.", "pupil_id"),
    ("interventionEvent", InterventionEvent, "serialization", "Intervention event",
     "A supportive signal for the pastoral team about one pupil, with its reasons in plain English.", "pupil_id"),
    ("deadLetter", DeadLetter, "serialization", "Dead letter",
     "A mark that could not be used, with the reason and where it came from.",
     "the source line number (ingest) or the original message key (worker)"),
    ("outcomeEvent", OutcomeEvent, "validation", "Outcome event",
     "What pastoral staff did about a pupil: acknowledged, spoke with the family, support plan started or "
     "closed, or closed.", "pupil_id"),
    ("webhookDeadLetter", WebhookDeadLetter, "serialization", "Webhook dead letter",
     "A record the webhook bridge could not deliver, with the reason, the attempts and the record.",
     "the original intervention's key (pupil_id)"),
]

CHANNELS: list[tuple[str, str, str, str]] = [
    # (channel, topic key, message, description)
    ("marks", "marks", "registerMark",
     "Register marks in, keyed by pupil. Published by `reconnect ingest` from a school's MIS export."),
    ("interventions", "interventions", "interventionEvent",
     "Supportive intervention events out, keyed by pupil. Published by the stream worker; read by pastoral "
     "systems directly or through `reconnect bridge` (webhook)."),
    ("deadLetter", "deadLetter", "deadLetter",
     "Marks that could not be used, with the reason, for a data engineer to fix and re-ingest."),
    ("outcomes", "outcomes", "outcomeEvent",
     "Outcome events recorded by pastoral staff (through the worker's HTTP endpoint), keyed by pupil."),
    ("webhookDeadLetter", "webhookDeadLetter", "webhookDeadLetter",
     "Records the webhook bridge could not deliver, to inspect and re-send."),
]

OPERATIONS: list[tuple[str, str, str, str]] = [
    # (operation, action, channel, summary) -- from the point of view of Reconnect's components
    ("ingestMarks", "send", "marks", "`reconnect ingest` publishes validated marks."),
    ("consumeMarks", "receive", "marks", "The stream worker reads marks into per-pupil state."),
    ("publishInterventions", "send", "interventions", "The stream worker publishes intervention events."),
    ("consumeInterventions", "receive", "interventions",
     "Pastoral systems, and the webhook bridge (group `<app_id>-webhook-bridge`), read interventions."),
    ("publishDeadLetters", "send", "deadLetter", "Ingest and the worker dead-letter unusable marks."),
    ("publishOutcomes", "send", "outcomes", "The worker's outcome endpoint publishes what staff recorded."),
    ("consumeOutcomes", "receive", "outcomes", "The stream worker reads outcomes (suppression, follow-up)."),
    ("publishWebhookDeadLetters", "send", "webhookDeadLetter", "The webhook bridge dead-letters undeliverable records."),
    ("deliverWebhook", "send", "webhook",
     "The webhook bridge POSTs each intervention, signed per Standard Webhooks, to the pastoral system."),
]

WEBHOOK_HEADERS: dict[str, Any] = {
    "type": "object",
    "title": "WebhookHeaders",
    "description": "HTTP headers of a webhook delivery (Standard Webhooks). The signature covers the id, the "
                   "timestamp and the body.",
    "required": ["Content-Type", "webhook-id", "webhook-timestamp", "webhook-signature"],
    "properties": {
        "Content-Type": {"type": "string", "const": "application/json"},
        "webhook-id": {"type": "string", "pattern": "^[A-Za-z0-9_:-]{1,256}$",
                       "description": "The event's event_id, the same on every retry. De-duplicate by it."},
        "webhook-timestamp": {"type": "string", "pattern": "^[0-9]{1,12}$",
                              "description": "Unix time in whole seconds when this attempt was signed."},
        "webhook-signature": {
            "type": "string", "pattern": "^[a-z0-9]+,[A-Za-z0-9+/]+={0,2}( [a-z0-9]+,[A-Za-z0-9+/]+={0,2})*$",
            "description": "Space-separated signatures, one per signing secret: v1,<base64 HMAC-SHA256(key, "
                           "webhook-id + '.' + webhook-timestamp + '.' + body)>.",
        },
    },
}


def component_schemas() -> dict[str, dict]:
    """Every model's JSON Schema under #/components/schemas, nested models shared by reference."""
    keys, top = models_json_schema([(model, mode) for _, model, mode, *_ in MESSAGES],
                                   ref_template="#/components/schemas/{model}")
    schemas = dict(top.get("$defs", {}))
    schemas["WebhookHeaders"] = WEBHOOK_HEADERS
    return {name: schemas[name] for name in sorted(schemas)}


def payload_refs() -> dict[str, str]:
    """Component message name -> the $ref of its payload schema."""
    keys, _ = models_json_schema([(model, mode) for _, model, mode, *_ in MESSAGES],
                                 ref_template="#/components/schemas/{model}")
    return {name: keys[(model, mode)]["$ref"] for name, model, mode, *_ in MESSAGES}


def asyncapi_document() -> dict[str, Any]:
    refs = payload_refs()
    messages: dict[str, Any] = {}
    for name, model, mode, title, summary, key in MESSAGES:
        messages[name] = {
            "name": name, "title": title, "summary": summary, "contentType": "application/json",
            "payload": {"$ref": refs[name]},
            "bindings": {"kafka": {"key": {"type": "string", "description": f"Message key: {key}."},
                                   "bindingVersion": KAFKA_BINDING_VERSION}},
        }
    messages["webhookDelivery"] = {
        "name": "webhookDelivery", "title": "Webhook delivery",
        "summary": "An intervention event POSTed to a pastoral system, signed per Standard Webhooks; its "
                   "webhook-id is the idempotency key.",
        "x-webhook-delivery-version": WEBHOOK_DELIVERY_VERSION,
        "contentType": "application/json",
        "headers": {"$ref": "#/components/schemas/WebhookHeaders"},
        "payload": {"$ref": refs["interventionEvent"]},
        "bindings": {"http": {"bindingVersion": HTTP_BINDING_VERSION}},
    }
    kafka = {"$ref": "#/servers/kafka"}
    channels: dict[str, Any] = {}
    for channel, topic, message, description in CHANNELS:
        channels[channel] = {
            "address": TOPICS[topic], "title": TOPICS[topic], "description": description, "servers": [kafka],
            "messages": {message: {"$ref": f"#/components/messages/{message}"}},
            "bindings": {"kafka": {"topic": TOPICS[topic], "bindingVersion": KAFKA_BINDING_VERSION}},
        }
    channels["webhook"] = {
        "address": None, "title": "Pastoral system webhook",
        "description": "The URL given to `reconnect bridge --webhook`, set per deployment.",
        "servers": [{"$ref": "#/servers/pastoralWebhook"}],
        "messages": {"webhookDelivery": {"$ref": "#/components/messages/webhookDelivery"}},
    }
    operations: dict[str, Any] = {}
    for operation, action, channel, summary in OPERATIONS:
        (message,) = channels[channel]["messages"]
        operations[operation] = {
            "action": action, "channel": {"$ref": f"#/channels/{channel}"}, "summary": summary,
            "messages": [{"$ref": f"#/channels/{channel}/messages/{message}"}],
        }
    operations["deliverWebhook"]["bindings"] = {"http": {"method": "POST", "bindingVersion": HTTP_BINDING_VERSION}}
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "id": "urn:reconnect:events",
        "info": {
            "title": "Reconnect events",
            "version": CONTRACT_VERSION,
            "description": DESCRIPTION,
            "license": {"name": "MIT"},
        },
        "defaultContentType": "application/json",
        "servers": {
            "kafka": {"host": "kafka:9092", "protocol": "kafka",
                      "description": "Apache Kafka (docker-compose); clients take the bootstrap servers from "
                                     "KAFKA_BOOTSTRAP_SERVERS."},
            "pastoralWebhook": {"host": "pastoral-system.example", "protocol": "https",
                                "description": "A pastoral system's webhook receiver (any host; set per deployment)."},
        },
        "channels": channels,
        "operations": operations,
        "components": {"schemas": component_schemas(), "messages": messages},
    }
