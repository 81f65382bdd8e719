from django.urls import path

from access import views

urlpatterns = [
    path("namespaces/<slug:slug>/members/", views.members, name="namespace-members"),
    path(
        "namespaces/<slug:slug>/members/<int:membership_id>/remove",
        views.remove_member,
        name="namespace-remove-member",
    ),
    path("namespaces/<slug:slug>/agents/<int:agent_id>/", views.edit_agent, name="agent-edit"),
]
