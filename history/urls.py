from django.urls import path
from rest_framework.routers import SimpleRouter

from history import api

router = SimpleRouter(trailing_slash=False)
router.register("runs", api.RunViewSet, basename="run")

urlpatterns = [
    path("ingest", api.IngestView.as_view(), name="ingest"),
    *router.urls,
]
