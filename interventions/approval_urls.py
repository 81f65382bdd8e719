"""URLs of the approvals inbox (the API's are in interventions/urls.py)."""

from django.urls import path

from interventions import approval_views

urlpatterns = [
    path("approvals/", approval_views.inbox, name="approvals"),
    path("approvals/waiting", approval_views.waiting_count, name="approvals-waiting"),
    path("approvals/<uuid:approval_id>/decide", approval_views.decide, name="approval-decide"),
]
