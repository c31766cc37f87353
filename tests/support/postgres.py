"""A throwaway PostgreSQL 16 server with pgvector for tests and CI.

The binaries come from the PyPI package `pgserver` (it bundles PostgreSQL 16
and pgvector; Debian's PostgreSQL 15 has no pgvector package). `initdb`
refuses to run as root, so when we are root the server runs as `nobody`.
It listens on 127.0.0.1 only, on a free port, with a temp data directory.

    python -m tests.support.postgres start STATE_DIR   # prints the DSN, writes STATE_DIR/dsn
    python -m tests.support.postgres stop STATE_DIR
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

SERVICE_USER = "nobody"
SUPERUSER = "postgres"


def bin_dir() -> Path:
    # Located without importing pgserver: its import creates lock files we do not need.
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("PostgreSQL for tests needs the `pgserver` package (pip install -e '.[dev]')")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class PostgresServer:
    data_dir: Path
    port: int

    @property
    def dsn(self) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/postgres"

    def stop(self, *, remove: bool = True) -> None:
        _run([str(bin_dir() / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"], check=False)
        if remove:
            shutil.rmtree(self.data_dir.parent, ignore_errors=True)


def start(port: int | None = None) -> PostgresServer:
    """Initialise a data dir, start the server and wait until it accepts connections."""
    root = Path(tempfile.mkdtemp(prefix="relaychain-pg-"))
    data_dir = root / "data"
    data_dir.mkdir()
    _give_to_service_user(root)
    port = port or free_port()
    binaries = bin_dir()
    _run([str(binaries / "initdb"), "-D", str(data_dir), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-sync"])
    options = f"-h 127.0.0.1 -p {port} -k {data_dir} -c fsync=off -c full_page_writes=off"
    _run(
        [
            str(binaries / "pg_ctl"),
            "-D",
            str(data_dir),
            "-o",
            options,
            "-l",
            str(root / "log"),
            "-w",
            "-t",
            "60",
            "start",
        ]
    )
    server = PostgresServer(data_dir=data_dir, port=port)
    _run(
        [
            str(binaries / "psql"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            SUPERUSER,
            "-d",
            "postgres",
            "-v",
            "ON_ERROR_STOP=1",
            "-qc",
            "CREATE EXTENSION IF NOT EXISTS vector",
        ]
    )
    return server


def _as_root() -> bool:
    return os.geteuid() == 0


def _give_to_service_user(path: Path) -> None:
    if not _as_root():
        return
    user = pwd.getpwnam(SERVICE_USER)
    for item in (path, *path.rglob("*")):
        os.chown(item, user.pw_uid, user.pw_gid)


def _run(argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    if _as_root():
        argv = ["runuser", "-u", SERVICE_USER, "--", *argv]
    # cwd must be readable by the service user, or postgres tools complain.
    result = subprocess.run(argv, cwd="/", capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr or result.stdout}")
    return result


def _main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("start", "stop"):
        print("usage: python -m tests.support.postgres start|stop STATE_DIR", file=sys.stderr)
        return 2
    command, state = argv[0], Path(argv[1])
    state.mkdir(parents=True, exist_ok=True)
    if command == "start":
        server = start()
        (state / "postgres.data").write_text(str(server.data_dir))
        (state / "postgres.port").write_text(str(server.port))
        (state / "postgres.dsn").write_text(server.dsn)
        print(server.dsn)
        return 0
    data_file = state / "postgres.data"
    if not data_file.exists():
        return 0
    PostgresServer(Path(data_file.read_text()), int((state / "postgres.port").read_text())).stop()
    for name in ("postgres.data", "postgres.port", "postgres.dsn"):
        (state / name).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
