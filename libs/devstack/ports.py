"""Free loopback ports and waiting for a listener."""

from __future__ import annotations

import random
import socket
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((host, port)) != 0


def wait_for_port(port: int, timeout_s: float = 15.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout_s} s")


def _ephemeral_range() -> tuple[int, int]:
    """The ports the OS hands out for outgoing connections (Linux: ip_local_port_range)."""
    try:
        low, high = (int(v) for v in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        return 32768, 60999
    return low, high


def _bindable(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _stable_candidates(count: int) -> list[int]:
    """Bases of blocks below (or above) the ephemeral range, in random order. A port from
    ``free_port()`` lies inside the ephemeral range, where any outgoing connection — the services'
    own database and broker clients while the stack starts — may take it before its service
    binds; ports outside it are only ever taken by a bind."""
    low, high = _ephemeral_range()
    bases = [*range(20000, max(20000, low - count), count), *range(high + 1, 65535 - count, count)]
    random.shuffle(bases)
    return bases


def free_port_block(count: int = 6) -> int:
    """A base port whose next ``count`` ports are free right now (for a whole stack), outside the
    ephemeral range."""
    for base in _stable_candidates(count)[:500]:
        if all(_bindable(base + i) and port_is_free(base + i) for i in range(count)):
            return base
    raise RuntimeError("no free block of ports")


def free_port_outside(block_base: int, *taken: int, block_size: int = 6) -> int:
    """A free port outside the ephemeral range, a block found by :func:`free_port_block` and
    other ports already chosen (for listeners a stack starts later: the broker, the sandbox)."""
    for port in _stable_candidates(1):
        if block_base <= port < block_base + block_size or port in taken:
            continue
        if _bindable(port) and port_is_free(port):
            return port
    raise RuntimeError("no free port")
