"""Connecting to a Temporal service with a connection's settings (secrets unsealed here only,
for the life of the client, never logged)."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from temporalio.client import Client
from temporalio.service import TLSConfig

from access.encryption import unseal

# The identity Flightdeck's follower shows to the Temporal service.
FOLLOWER_IDENTITY = "flightdeck-follower"


async def connect(connection, *, identity: str = FOLLOWER_IDENTITY) -> Client:
    """A temporalio client for `connection` (a TemporalConnection). Raises RuntimeError or
    temporalio's errors when the service cannot be reached; UnreadableSecret when a stored
    secret cannot be opened."""
    tls: TLSConfig | bool = False
    if connection.tls:
        tls = TLSConfig(
            server_root_ca_cert=connection.tls_ca_pem.encode() or None,
            domain=connection.tls_server_name or None,
            client_cert=connection.tls_client_cert_pem.encode() or None,
            client_private_key=(
                unseal(connection.tls_client_key_sealed).encode()
                if connection.tls_client_key_sealed else None
            ),
        )
    return await Client.connect(
        connection.address,
        namespace=connection.temporal_namespace,
        tls=tls,
        api_key=unseal(connection.api_key_sealed) if connection.api_key_sealed else None,
        identity=identity,
        connect_timeout=timedelta(seconds=settings.TEMPORAL_RPC_TIMEOUT_SECONDS),
    )
