"""URLs of the namespace admins' interventions settings: approval policies, agents' connectors
(beside the members and agent pages of access/urls.py, under /namespaces/<slug>/)."""

from django.urls import path

from interventions import settings_views

urlpatterns = [
    path("namespaces/<slug:slug>/approval-policies/", settings_views.policies,
         name="namespace-approval-policies"),
    path("namespaces/<slug:slug>/approval-policies/<int:policy_id>/", settings_views.edit_policy,
         name="approval-policy-edit"),
    path("namespaces/<slug:slug>/approval-policies/<int:policy_id>/delete",
         settings_views.delete_policy, name="approval-policy-delete"),
    path("namespaces/<slug:slug>/agents/<int:agent_id>/connector/",
         settings_views.agent_connector, name="agent-connector"),
]
