"""A model the test handlers write to, so that tests can count handler runs."""

from django.db import models


class HandledMessage(models.Model):
    """One handler run (deliberately no unique constraint: a second run of a handler shows up)."""

    seq = models.IntegerField(db_index=True)
    topic = models.CharField(max_length=200)

    class Meta:
        app_label = "testapp"

    def __str__(self) -> str:
        return f"{self.topic}#{self.seq}"
