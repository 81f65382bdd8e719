"""Connecting to a Temporal service with a connection's settings (secrets unsealed here only,
for the life of the client, never logged).

A connection's address is chosen by a namespace admin, so it is checked as webhook URLs are
(`interventions.outbound`): an address that resolves to a loopback, private or link-local
network is refused unless it is in TEMPORAL_ALLOWED_NETWORKS. Otherwise any namespace admin
could point Flightdeck's workers at its own Redis, database or cloud metadata service, and
read from the errors which ports answer. The check runs when the form is saved and again
before every connection; temporalio resolves the name itself afterwards, so a DNS answer that
changes in between is not caught (docs/temporal.md).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from django.conf import settings
from temporalio.client import Client
from temporalio.service import TLSConfig

from access.encryption import unseal
from interventions.outbound import RefusedAddress, UnresolvableHost, check_host

# The identity Flightdeck's follower shows to the Temporal service.
FOLLOWER_IDENTITY = "flightdeck-follower"


async def connect(connection, *, identity: str = FOLLOWER_IDENTITY) -> Client:
    """A temporalio client for `connection` (a TemporalConnection). Raises RuntimeError or
    temporalio's errors when the service cannot be reached; UnreadableSecret when a stored
    secret cannot be opened; RefusedAddress when the address is not one to connect to."""
    await asyncio.to_thread(check_address, connection.address)
    # None, not False, when TLS is not configured: temporalio then turns TLS on by itself
    # whenever an API key is sent, so that a key never travels in the clear.
    tls: TLSConfig | None = None
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


def check_address(address: str, *, unresolvable_ok: bool = False) -> None:
    """Refuse (RefusedAddress, naming the `address` field) a host:port whose host resolves to
    a loopback, private or link-local address outside TEMPORAL_ALLOWED_NETWORKS.
    `unresolvable_ok`: a host that does not resolve (yet, or not from here) passes; the form
    takes it, and the check before connecting refuses it if it still does not."""
    host, _, port = address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise RefusedAddress("address: give host:port, with a port from 1 to 65535")
    try:
        check_host(host, int(port), settings.TEMPORAL_ALLOWED_NETWORKS, field="address",
                   setting="TEMPORAL_ALLOWED_NETWORKS")
    except UnresolvableHost:
        if unresolvable_ok:
            return
        raise
