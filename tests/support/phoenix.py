"""Arize Phoenix, a real trace UI, for the OTLP round-trip test: in its own venv, on 127.0.0.1 only.

Phoenix is not a dependency of relaychain: it lives in a virtual environment
of its own, `.ci-state/phoenix-venv` (git-ignored), created and filled from
PyPI on first use; `RELAYCHAIN_PHOENIX_PYTHON` names an interpreter that
already has `arize-phoenix` instead.

    python -m tests.support.phoenix prepare   # create the venv and install Phoenix (CI runs it in the background)

    with start_phoenix(tmp_path) as phoenix:  # HTTP, OTLP over HTTP and gRPC, all on 127.0.0.1
        phoenix.spans("my-project")           # GET /v1/projects/my-project/spans

Installing takes about two minutes; a lock file makes a test that needs
Phoenix wait for a `prepare` already running instead of installing twice.
Only the standard library here: `prepare` runs before any venv is ready.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["PhoenixServer", "is_loopback", "listening_addresses", "phoenix_python", "prepare", "start_phoenix"]

PYTHON_ENV = "RELAYCHAIN_PHOENIX_PYTHON"
# Pinned to the release whose REST API and gRPC start-up `phoenix_serve.py` was written against.
REQUIREMENT = "arize-phoenix>=20.26,<21"
REPO = Path(__file__).resolve().parents[2]
VENV = REPO / ".ci-state" / "phoenix-venv"
SERVE_SCRIPT = Path(__file__).with_name("phoenix_serve.py")


def phoenix_python() -> Path:
    """The interpreter that runs Phoenix, installing Phoenix into the repo's venv first if needed."""
    configured = os.environ.get(PYTHON_ENV)
    return Path(configured) if configured else prepare()


def prepare(venv: Path = VENV) -> Path:
    """Create `venv` and install Phoenix into it, once; concurrent callers wait for the first."""
    venv.parent.mkdir(parents=True, exist_ok=True)
    python, stamp = venv / "bin" / "python", venv / ".installed"
    with (venv.parent / f"{venv.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.is_file() and stamp.read_text() == REQUIREMENT:
            return python
        # An interrupted install may have left anything behind: start from nothing.
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", REQUIREMENT], check=True
        )
        stamp.write_text(REQUIREMENT)
    return python


@dataclass
class PhoenixServer:
    process: subprocess.Popen[bytes]
    port: int
    grpc_port: int
    working_dir: Path

    @property
    def log_path(self) -> Path:
        return self.working_dir / "phoenix.log"

    @property
    def url(self) -> str:
        """Base URL of the UI, the REST API (`/v1/...`) and the OTLP/HTTP receiver (`/v1/traces`)."""
        return f"http://127.0.0.1:{self.port}"

    def spans(self, project: str, *, limit: int = 1000) -> list[dict[str, Any]]:
        """All spans of `project`, oldest first, as the REST API returns them; [] before the project exists."""
        spans: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            query = {
                "limit": str(limit),
                "sort": "start_time",
                "order": "asc",
                **({"cursor": cursor} if cursor else {}),
            }
            path = f"/v1/projects/{urllib.parse.quote(project, safe='')}/spans?{urllib.parse.urlencode(query)}"
            try:
                page = self._get(path)
            except urllib.error.HTTPError as exc:
                if exc.code == 404:  # Phoenix creates a project when its first span arrives.
                    return []
                raise
            spans.extend(page["data"])
            cursor = page.get("next_cursor")
            if not cursor:
                return spans

    def listening_addresses(self) -> list[str]:
        """Local addresses (`host:port`) that the Phoenix process or its children listen on."""
        return listening_addresses(_process_tree(self.process.pid))

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"Phoenix exited with {self.process.returncode} while starting:\n{self.log_tail()}")
            try:
                self._get("/healthz", raw=True)
                return
            except (OSError, urllib.error.URLError):
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"Phoenix did not answer on {self.url} within {timeout:g}s:\n{self.log_tail()}"
                    ) from None
                time.sleep(0.25)

    def stop(self, timeout: float = 20.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def _get(self, path: str, *, raw: bool = False) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=10) as response:
            body = response.read()
        return body if raw else json.loads(body)


@contextmanager
def start_phoenix(
    working_dir: Path, *, python: Path | None = None, ready_timeout: float = 180.0
) -> Iterator[PhoenixServer]:
    """Phoenix on free loopback ports with its database under `working_dir`; stopped on exit."""
    from tests.support.tansu import free_port

    working_dir.mkdir(parents=True, exist_ok=True)
    port, grpc_port = free_port(), free_port()
    env = {
        **os.environ,
        "PHOENIX_WORKING_DIR": str(working_dir),
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_PORT": str(port),
        "PHOENIX_GRPC_PORT": str(grpc_port),
        "PHOENIX_TELEMETRY_ENABLED": "false",
    }
    for name in ("PHOENIX_SQL_DATABASE_URL", "PHOENIX_ENABLE_PROMETHEUS", "PHOENIX_ENABLE_AUTH"):
        env.pop(name, None)  # A developer's own Phoenix settings must not leak into the test server.
    with (working_dir / "phoenix.log").open("ab") as log:
        process = subprocess.Popen(
            # -I: the script's own directory stays off sys.path, where `phoenix.py` would shadow Phoenix.
            [str(python or phoenix_python()), "-I", str(SERVE_SCRIPT)],
            cwd=working_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # A Ctrl-C reaches pytest, which stops Phoenix in order.
        )
    server = PhoenixServer(process=process, port=port, grpc_port=grpc_port, working_dir=working_dir)
    try:
        server.wait_ready(ready_timeout)
        yield server
    finally:
        server.stop()


def listening_addresses(pids: set[int]) -> list[str]:
    """TCP listeners and bound UDP sockets of `pids`, from `ss` (iproute2)."""
    if shutil.which("ss") is None:
        raise RuntimeError("checking Phoenix's listeners needs `ss` (apt-get install iproute2)")
    output = subprocess.run(
        ["ss", "-H", "-l", "-n", "-t", "-u", "-p"], check=True, capture_output=True, text=True
    ).stdout
    addresses = []
    for line in output.splitlines():
        owners = {int(pid) for pid in re.findall(r"pid=(\d+)", line)}
        if owners & pids:
            addresses.append(line.split()[4])
    return addresses


def is_loopback(address: str) -> bool:
    """`127.0.0.1:80`, `[::1]:80`, `[::ffff:127.0.0.1]:80` are; `*:80`, `0.0.0.0:80`, `[::]:80` are not."""
    host = address.rpartition(":")[0].strip("[]").split("%", 1)[0]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _process_tree(pid: int) -> set[int]:
    found, pending = set(), [pid]
    while pending:
        current = pending.pop()
        found.add(current)
        for children in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                pending.extend(int(child) for child in children.read_text().split())
            except OSError:
                continue  # The thread ended while we looked.
    return found


def _main(argv: list[str]) -> int:
    if argv != ["prepare"]:
        print("usage: python -m tests.support.phoenix prepare", file=sys.stderr)
        return 2
    print(prepare())
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
