"""Pages of the Temporal app, under /namespaces/<slug>/temporal/."""

from django.urls import path

from temporal import connection_views, views

urlpatterns = [
    path("namespaces/<slug:slug>/temporal/", connection_views.connections,
         name="temporal-connections"),
    path("namespaces/<slug:slug>/temporal/connections/<slug:name>/",
         connection_views.edit_connection, name="temporal-connection"),
    path("namespaces/<slug:slug>/temporal/import/", views.import_page,
         name="temporal-import-page"),
    path("namespaces/<slug:slug>/temporal/imports/<uuid:import_uuid>/", views.import_detail,
         name="temporal-import"),
]
