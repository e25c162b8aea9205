"""Shared fixtures: real peers (Kamailio, pjsua2 phones), started per test on loopback."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from tests.peers.harness import BridgeProcess, Kamailio
from tests.postgres import PostgresServer


def pytest_configure(config: pytest.Config) -> None:
    # A missing peer is a failure, never a skip: CI installs them all.
    for tool in ("kamailio", "sipp", "baresip", "linphonec"):
        if shutil.which(tool) is None:
            raise pytest.UsageError(f"{tool} is not installed (see .ci/run)")


@pytest.fixture
def peers() -> Iterator[list]:
    """Collects Kamailio instances, phones (ours, baresip, linphone) and bridges to stop after
    the test."""
    started: list = []
    yield started
    for peer in reversed(started):
        if isinstance(peer, Kamailio):
            peer.cleanup()
        elif isinstance(peer, BridgeProcess):
            peer.stop()
        else:  # Phone, Baresip, Linphone
            peer.close()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the session (each test gets its own database)."""
    server = PostgresServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_target(request: pytest.FixtureRequest, tmp_path):  # type: ignore[no-untyped-def]
    """Where a store lives, once per backend: a new SQLite file, or a new PostgreSQL
    database. The store contract suite runs on both."""
    if request.param == "sqlite":
        return tmp_path / "state" / "bridge.sqlite3"
    return request.getfixturevalue("postgres").create_database()
