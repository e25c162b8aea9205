"""The port picker every test and benchmark uses for the processes it starts."""

import socket
from pathlib import Path

from tests.ports import free_port


def _ephemeral_low() -> int:
    return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])


def test_ports_are_distinct_and_outside_the_range_the_kernel_assigns():
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    assert all(10_000 <= port < _ephemeral_low() for port in ports)


def test_a_port_someone_holds_is_passed_over():
    nxt = free_port() + 1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as held:
        held.bind(("127.0.0.1", nxt))  # UDP only: SIP needs both, so the pick must skip it
        assert free_port() != nxt
