from django.urls import path

from temporal import api

urlpatterns = [
    path("import/temporal", api.TemporalImportView.as_view(), name="api-temporal-import-new"),
    path("import/temporal/<uuid:import_uuid>", api.TemporalImportDetailView.as_view(),
         name="api-temporal-import"),
]
