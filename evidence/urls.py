from django.urls import path

from evidence import views

urlpatterns = [
    path("evidence/", views.evidence_home, name="evidence"),
    path("evidence/export", views.export_form, name="evidence-export-form"),
    path("evidence/exports/<str:export_id>/", views.export_status, name="evidence-export"),
    path("evidence/exports/<str:export_id>/download", views.export_download,
         name="evidence-download"),
    path("evidence/public-key.pem", views.public_key, name="evidence-public-key"),
    path("evidence/runs.csv", views.runs_csv, name="evidence-runs-csv"),
]
