"""Delivering intervention events to a pastoral system's webhook, and a reference receiver.

One module per concern:

* `signing`: Standard Webhooks signatures (`webhook-id`, `webhook-timestamp`, `webhook-signature`,
  `whsec_` secrets), made by the bridge and checked by the receiver;
* `retry`: the `RetryPolicy` (from the settings), full-jitter backoff, `Retry-After`;
* `http`: one HTTP attempt and its `Verdict`;
* `records`: reading a consumed record into an event, or the reason it cannot be delivered;
* `sink`: `WebhookSink.add(record)` / `flush()`, delivering or dead-lettering every record;
* `metrics`: the bridge's Prometheus metrics;
* `bridge`: the consumer loop, committing only what a flush finished (`run_bridge`);
* `receiver`: the reference receiver (`ReferenceReceiver`, `run_receiver`).
"""
