"""`reconnect receiver` and `reconnect bridge` as a user runs them: secrets from the environment or a file,
never from the command line and never printed; a malformed secret is a clear error."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

from streams.webhook.signing import signature_headers


def test_the_receiver_command_serves_verifies_and_stops_on_sigterm(tmp_path, secret, make_event, post, wait_until):
    secret_file = tmp_path / "webhook.secret"
    secret_file.write_text(secret.serialise() + "\n")
    out = tmp_path / "receiver.out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONNECT_")}
    with out.open("wb") as stdout:
        process = subprocess.Popen([sys.executable, "-m", "streams.cli", "receiver", "--port", "0", "--secret-file",
                                    str(secret_file)], env=env, stdout=stdout, stderr=subprocess.STDOUT)
    try:
        found = wait_until(lambda: re.search(r"Receiving at (http://127\.0\.0\.1:\d+/webhook)", out.read_text()),
                           timeout=30, what="the receiver to print its URL")
        url = found.group(1)
        event = make_event(9)
        body = event.model_dump_json().encode()
        assert post(url, body, signature_headers([secret], event.event_id, body))[0] == 200
        assert post(url, body + b" ", signature_headers([secret], event.event_id, body))[0] == 401
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
    printed = out.read_text()
    assert "received 1 events, 0 duplicates, 1 unauthorised" in printed
    assert secret.serialise() not in printed and secret.serialise()[6:20] not in printed


def test_the_bridge_command_refuses_a_malformed_secret_without_printing_it(tmp_path):
    bad = "not-a-standard-webhooks-secret-0123456789"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RECONNECT_")},
           "RECONNECT_WEBHOOK_URL": "http://127.0.0.1:9/webhook", "RECONNECT_WEBHOOK_SECRET": bad}
    result = subprocess.run([sys.executable, "-m", "streams.cli", "bridge", "--no-metrics"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "whsec_" in result.stderr and bad not in result.stdout + result.stderr
    help_text = subprocess.run([sys.executable, "-m", "streams.cli", "bridge", "--help"], capture_output=True,
                               text=True, timeout=60).stdout
    assert "--secret-file" in help_text and "--secret " not in help_text
