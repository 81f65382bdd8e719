"""Creating and changing Temporal connections: the one place it happens.

A new connection gets its own agent (`temporal-<name>`), whose connector is Temporal, so that
the runs followed from the service and the commands sent to them have one owner. The API key
and the TLS client key are sealed here (`access.encryption`) and never returned, logged or
audited: the audit entry says only whether each is set.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from access.encryption import seal
from access.models import Agent, Namespace
from audit.log import record
from interventions import connector_settings
from interventions.vocabulary import ConnectorKind
from temporal.models import TemporalConnection

PLAIN_FIELDS = ("address", "temporal_namespace", "tls", "tls_server_name", "tls_ca_pem",
                "tls_client_cert_pem", "workflow_query", "approval_signal", "enabled")


class ConnectionRefused(Exception):
    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def agent_name_for(name: str) -> str:
    return f"temporal-{name}"


def describe(connection: TemporalConnection | None) -> dict | None:
    if connection is None or connection.pk is None:
        return None
    facts = {field: getattr(connection, field) for field in PLAIN_FIELDS}
    facts.pop("tls_ca_pem")
    facts.pop("tls_client_cert_pem")
    facts.update(name=connection.name, api_key_set=bool(connection.api_key_sealed),
                 tls_client_key_set=bool(connection.tls_client_key_sealed))
    return facts


def save_connection(namespace: Namespace, values: dict, *, connection=None, api_key: str = "",
                    clear_api_key: bool = False, tls_client_key: str = "",
                    clear_tls_client_key: bool = False, actor=None,
                    request=None) -> TemporalConnection:
    """Create (connection None) or change a connection. Empty secret fields keep the stored
    secret; the clear flags remove it."""
    with transaction.atomic():
        if connection is None:
            name = values["name"]
            if TemporalConnection.objects.filter(namespace=namespace, name=name).exists():
                raise ConnectionRefused("name", f"{namespace.slug} has a connection {name} already")
            if Agent.objects.filter(namespace=namespace, name=agent_name_for(name)).exists():
                raise ConnectionRefused(
                    "name", f"an agent {agent_name_for(name)} exists already; choose another name"
                )
            agent = Agent.objects.create(
                namespace=namespace, name=agent_name_for(name),
                description=f"Workflows followed from the Temporal connection {name}.",
                owner_user=actor if getattr(actor, "is_authenticated", False) else None,
            )
            connection = TemporalConnection(namespace=namespace, agent=agent, name=name,
                                            created_by=_user(actor))
            before = None
        else:
            # Two admins saving at once: one save follows the other.
            connection = TemporalConnection.objects.select_for_update().get(pk=connection.pk)
            before = describe(connection)
        for field in PLAIN_FIELDS:
            if field in values:
                setattr(connection, field, values[field])
        if clear_api_key:
            connection.api_key_sealed = ""
        elif api_key:
            connection.api_key_sealed = seal(api_key)
        if clear_tls_client_key:
            connection.tls_client_key_sealed = ""
        elif tls_client_key:
            connection.tls_client_key_sealed = seal(tls_client_key)
        connection.updated_at = timezone.now()
        connection.save()
        if before is None:
            connector_settings.configure(connection.agent, kind=ConnectorKind.TEMPORAL,
                                         actor=actor, request=request)
        record(
            "temporal.connection_changed", actor=actor, request=request, namespace=namespace,
            obj=connection, object_repr=str(connection), before=before,
            after=describe(connection),
        )
    return connection


def _user(actor):
    return actor if getattr(actor, "is_authenticated", False) else None
