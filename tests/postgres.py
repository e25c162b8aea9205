"""A real PostgreSQL server for the tests: Debian's binaries, a fresh cluster in a temporary
directory, run as an unprivileged user (PostgreSQL refuses to run as root), listening on a
loopback port only, trust authentication (nothing but this machine's loopback can reach it).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.ports import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")
RUN_AS = "nobody"  # any unprivileged account will do; nobody exists on every Debian system


class PostgresServer:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="bridge-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self._created = 0

    def _as_user(self, *argv: str | Path) -> list[str]:
        argv_s = [str(a) for a in argv]
        return argv_s if os.geteuid() != 0 else ["runuser", "-u", RUN_AS, "--", *argv_s]

    def start(self) -> None:
        if os.geteuid() == 0:
            user = pwd.getpwnam(RUN_AS)
            os.chown(self.root, user.pw_uid, user.pw_gid)
        subprocess.run(self._as_user(PG_BIN / "initdb", "-D", self.data, "-A", "trust",
                                     "-U", "bridge", "--no-sync", "-E", "UTF8"),
                       check=True, stdout=subprocess.DEVNULL)
        options = (f"-c listen_addresses=127.0.0.1 -c port={self.port} "
                   f"-c unix_socket_directories='' -c fsync=off -c full_page_writes=off "
                   f"-c max_connections=100")
        subprocess.run(self._as_user(PG_BIN / "pg_ctl", "-D", self.data, "-l",
                                     self.root / "server.log", "-o", options, "-w", "start"),
                       check=True, stdout=subprocess.DEVNULL)

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            subprocess.run(self._as_user(PG_BIN / "pg_ctl", "-D", self.data, "-m", "immediate",
                                         "-w", "stop"), check=True, stdout=subprocess.DEVNULL)
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://bridge@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database on this server; returns its URL."""
        import psycopg

        self._created += 1
        name = f"t{os.getpid()}_{self._created}_{int(time.time() * 1000) % 100000}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)
