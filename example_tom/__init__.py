"""The example TOM: a TOM Toolkit project with tom_alertstreams, tom_mma and tom_mma_broker."""

from .celery import app as celery_app

__all__ = ["celery_app"]
