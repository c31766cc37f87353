"""`relaychain worker AGENT` subprocesses on the test broker, for the process-level end-to-end tests.

The built-in agents read the fixed `relaychain.*` topics (`relaychain/topology.py`)
in the fixed `relaychain.<agent>` groups. On the shared session broker only the
end-to-end modules use them, and each leaves them drained: workers are stopped
with SIGTERM, which finishes in-flight work and commits.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from relaychain.app import topic_specs
from relaychain.bus.kafka import KafkaBus, KafkaSettings
from tests.support.tansu import fast_group_timing

HEALTH_PORT = re.compile(r"health on :(\d+)")


@dataclass
class WorkerProcess:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    @property
    def running(self) -> bool:
        return "running (pid" in self.output()

    @property
    def health_port(self) -> int:
        found = HEALTH_PORT.search(self.output())
        assert found, self.output()
        return int(found.group(1))

    def kill(self) -> None:
        """SIGKILL: no drain, no commit; what it had in flight is redelivered to the group."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def wait(self, timeout: float = 30) -> int:
        """The exit code; a worker still alive after `timeout` is killed (and its code is -9)."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


@dataclass
class WorkerPool:
    """Workers sharing one config, data dir (or PostgreSQL) and broker; each logs and traces to its own file."""

    directory: Path
    bootstrap: str
    env: dict[str, str]
    workers: list[WorkerProcess] = field(default_factory=list)

    def environment(self, name: str) -> dict[str, str]:
        timing = fast_group_timing()
        return os.environ | {
            "RELAYCHAIN_BUS": f"kafka://{self.bootstrap}",
            "RELAYCHAIN_OBSERVABILITY__JSONL_PATH": str(self.directory / f"traces-{name}.jsonl"),
            "RELAYCHAIN_OBSERVABILITY__SERVICE_NAME": name,
            "RELAYCHAIN_RUNTIME__CREATE_TOPICS": "false",
            "RELAYCHAIN_KAFKA__COMMIT_INTERVAL_S": "0.2",
            "RELAYCHAIN_KAFKA__SESSION_TIMEOUT_MS": str(timing["session_timeout_ms"]),
            "RELAYCHAIN_KAFKA__HEARTBEAT_INTERVAL_MS": str(timing["heartbeat_interval_ms"]),
            "RELAYCHAIN_HEALTH_PORT": "0",
            "HF_HUB_OFFLINE": "1",
            # Seven processes on a small machine: one torch thread each.
            "OMP_NUM_THREADS": "1",
            **self.env,
        }

    def start(self, agent: str, *, name: str | None = None) -> WorkerProcess:
        name = name or agent
        log = self.directory / f"{name}.log"
        command = [sys.executable, "-m", "relaychain.cli", "worker", agent]
        with log.open("wb") as out:
            process = subprocess.Popen(command, env=self.environment(name), stdout=out, stderr=subprocess.STDOUT)
        worker = WorkerProcess(name, process, log)
        self.workers.append(worker)
        return worker

    def wait_running(self, workers: Iterable[WorkerProcess], timeout: float = 120) -> None:
        pending = list(workers)
        deadline = time.monotonic() + timeout
        while pending:
            for worker in pending:
                assert worker.process.poll() is None, f"worker {worker.name} exited:\n{worker.output()}"
            pending = [w for w in pending if not w.running]
            if pending and time.monotonic() > deadline:
                raise AssertionError(f"workers {[w.name for w in pending]} not running within {timeout}s")
            time.sleep(0.1)

    def stop_all(self) -> dict[str, int]:
        """SIGTERM every live worker once, all at once (each drains and commits); their exit codes by name.

        Once: after the drain the worker's signal handler is gone, and a second SIGTERM would kill it.
        """
        live = [w for w in self.workers if w.process.poll() is None]
        for worker in live:
            worker.process.send_signal(signal.SIGTERM)
        return {worker.name: worker.wait() for worker in live}


def create_relaychain_topics(bootstrap: str) -> None:
    """The topics the built-in agents read, created up front so seven starting workers do not race."""

    async def create() -> None:
        bus = KafkaBus(KafkaSettings(bootstrap_servers=[bootstrap]))
        await bus.start()
        try:
            await bus.create_topics(topic_specs())
        finally:
            await bus.stop()

    asyncio.run(create())
