"""URLs of the governance pages (per namespace, beside /namespaces/<slug>/members/ ...)."""

from django.urls import path

from governance import views

urlpatterns = [
    path("governance/", views.governance_index, name="governance-index"),
    path("namespaces/<slug:slug>/governance/", views.governance, name="namespace-governance"),
    path("namespaces/<slug:slug>/governance/findings.csv", views.findings_csv,
         name="namespace-governance-csv"),
    path("namespaces/<slug:slug>/governance/retention/", views.retention,
         name="namespace-retention"),
    path("namespaces/<slug:slug>/governance/holds/", views.place_hold,
         name="namespace-hold-place"),
    path("namespaces/<slug:slug>/governance/holds/<int:hold_id>/release", views.release_hold,
         name="namespace-hold-release"),
]
