"""The development tools leave nothing behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest

from devtools.broker import free_port, wait_for_port
from streams.settings import REPO_ROOT


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        return open(f"/proc/{pid}/stat").read().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.broker
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_the_broker_command_stops_its_child_on_sigterm_and_sigint(stop_signal, wait_until):
    port = free_port()
    command = subprocess.Popen([sys.executable, "-m", "devtools.cli", "broker", "--port", str(port)], cwd=REPO_ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        banner = command.stdout.readline()
        child = int(re.search(r"pid (\d+)", banner).group(1))
        assert wait_for_port("127.0.0.1", port, 30) and _alive(child)
        command.send_signal(stop_signal)
        assert command.wait(timeout=30) is not None
        wait_until(lambda: not _alive(child), timeout=15, what="the tansu child to exit")
    finally:
        if command.poll() is None:
            command.kill()
