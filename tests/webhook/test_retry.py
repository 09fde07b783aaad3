"""The retry policy (from the settings only), full jitter, Retry-After, and what each HTTP answer means."""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
import random

import pytest

from streams.settings import Settings
from streams.webhook.http import AttemptResult, NoResponse, Verdict, verdict_for
from streams.webhook.retry import RetryPolicy, parse_retry_after


def test_the_policy_comes_from_the_settings_and_types_no_default_of_its_own():
    settings = Settings(webhook_max_attempts=4, webhook_backoff_base_s=0.25, webhook_backoff_max_s=3.0,
                        webhook_timeout_s=2.5, webhook_max_retry_after_s=30.0)
    assert RetryPolicy.from_settings(settings) == RetryPolicy(4, 0.25, 3.0, 2.5, 30.0)
    assert all(f.default is dataclasses.MISSING for f in dataclasses.fields(RetryPolicy))
    defaults = RetryPolicy.from_settings(Settings())
    assert defaults.max_attempts == Settings.model_fields["webhook_max_attempts"].default
    with pytest.raises(ValueError):
        RetryPolicy(0, 1.0, 1.0, 1.0, 1.0)


def test_backoff_is_full_jitter_capped():
    policy = RetryPolicy(max_attempts=5, backoff_base_s=1.0, backoff_max_s=8.0, timeout_s=1.0, max_retry_after_s=5.0)
    rng = random.Random(1)
    for attempt, ceiling in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0), (500, 8.0)):
        waits = [policy.backoff(attempt, rng) for _ in range(300)]
        assert all(0 <= w <= ceiling for w in waits) and max(waits) > ceiling * 0.8 and min(waits) < ceiling * 0.2
    assert policy.wait_after(1, 3.0, rng) == 3.0  # the receiver's Retry-After wins...
    assert policy.wait_after(1, 3600.0, rng) == 5.0  # ...up to the cap


def test_retry_after_reads_seconds_and_http_dates_and_nothing_else():
    assert parse_retry_after("7") == 7.0 and parse_retry_after(" 0 ") == 0.0
    when = email.utils.format_datetime(dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=30), usegmt=True)
    assert 25 <= parse_retry_after(when) <= 31
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past: retry now
    for unreadable in (None, "soon", "²", "٣", "-5", "1.5", "9" * 40, "Fri, 31 Dec 99999 23:59:59 GMT", ""):
        assert parse_retry_after(unreadable) is None, unreadable


@pytest.mark.parametrize(("status", "verdict"), [
    (200, Verdict.DELIVERED), (204, Verdict.DELIVERED), (301, Verdict.REDIRECTED), (308, Verdict.REDIRECTED),
    (400, Verdict.REJECTED), (401, Verdict.REJECTED), (410, Verdict.REJECTED), (413, Verdict.REJECTED),
    (408, Verdict.RETRY), (429, Verdict.RETRY), (500, Verdict.RETRY), (503, Verdict.RETRY), (None, Verdict.RETRY),
])
def test_each_answer_has_one_verdict(status, verdict):
    assert verdict_for(status) is verdict


def test_status_classes_are_bounded_labels():
    assert AttemptResult(None, NoResponse.TIMEOUT).status_class == "timeout"
    assert AttemptResult(None, NoResponse.CONNECTION_ERROR).status_class == "connection_error"
    assert [AttemptResult(s).status_class for s in (200, 302, 404, 429, 503)] == ["2xx", "3xx", "4xx", "429", "5xx"]
