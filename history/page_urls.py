"""URLs of the history app's pages (the API's are in history/urls.py)."""

from django.urls import path

from history import views

urlpatterns = [
    path("", views.run_list, name="home"),
    path("views/", views.save_view, name="save-view"),
    path("views/<uuid:view_uuid>/", views.open_view, name="open-view"),
    path("views/<uuid:view_uuid>/delete", views.delete_view, name="delete-view"),
    path("runs/<str:run_uuid>/history", views.run_history, name="run-history"),
    path("runs/<str:run_uuid>/tail", views.tail, name="run-tail"),
    path("runs/<str:run_uuid>/durability", views.durability, name="run-durability"),
    path("runs/<str:run_uuid>/verify", views.verify, name="run-verify"),
    path("runs/<str:run_uuid>/events/<int:event_id>", views.event_detail, name="event-detail"),
]
