"""Internal calls never reuse a connection the serving side is closing: the clients drop idle
connections well before the services' keep-alive timeout closes them."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec

from tsunagu.auth import ServiceTokenIssuer
from tsunagu.clients.internal import CLIENT_KEEP_ALIVE_S, AiohttpTransport, InternalClient
from tsunagu.service.app import SERVER_KEEP_ALIVE_S


async def test_clients_let_go_of_idle_connections_before_servers_do():
    assert CLIENT_KEEP_ALIVE_S * 2 <= SERVER_KEEP_ALIVE_S
    issuer = ServiceTokenIssuer("idp", ec.generate_private_key(ec.SECP256R1()))
    client = InternalClient("ca", "http://ca.test", issuer)
    try:
        assert isinstance(client.transport, AiohttpTransport)
        connector = client.transport.session().connector
        assert connector is not None
        assert connector._keepalive_timeout == CLIENT_KEEP_ALIVE_S  # type: ignore[attr-defined]
    finally:
        await client.aclose()
