"""URLs of the interventions app's pages (the API's are in interventions/urls.py)."""

from django.urls import path

from interventions import views

urlpatterns = [
    path("runs/<str:run_uuid>/commands/", views.run_commands, name="run-commands"),
]
