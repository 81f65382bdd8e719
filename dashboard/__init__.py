"""Flightdeck's project package: settings, URLs, the Celery app and the pages that compose
several apps."""

from dashboard.celery import app as celery_app

__all__ = ("celery_app",)
