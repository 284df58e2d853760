"""Free loopback ports and waiting for a listener."""

from __future__ import annotations

import socket
import time


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


def free_port_block(count: int = 6) -> int:
    """A base port whose next ``count`` ports are free right now (for a whole stack)."""
    for _ in range(50):
        base = free_port()
        if base + count < 65000 and all(port_is_free(base + i) for i in range(count)):
            return base
    raise RuntimeError("no free block of ports")


def free_port_outside(block_base: int, *taken: int, block_size: int = 6) -> int:
    """A free port outside a block found by :func:`free_port_block` and other ports already chosen:
    a block is free, not bound, so the OS may hand one of its ports out meanwhile."""
    while True:
        port = free_port()
        if not block_base <= port < block_base + block_size and port not in taken:
            return port
