from django.urls import path

from interventions import api, pull_channel

urlpatterns = [
    path("runs/<str:run_uuid>/commands", api.RunCommandsView.as_view(), name="api-run-commands"),
    path("agent/commands", pull_channel.long_poll, name="api-agent-commands"),
    path("agent/commands/<uuid:command_id>/ack", api.CommandAckView.as_view(),
         name="api-command-ack"),
    path("approvals", api.ApprovalListView.as_view(), name="api-approvals"),
    path("approvals/<uuid:approval_id>/decision", api.ApprovalDecisionView.as_view(),
         name="api-approval-decision"),
]
