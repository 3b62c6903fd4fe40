"""``./manage.py trainkilonova``: the former name of ``trainclassifier``, kept as an alias."""

from __future__ import annotations

from .trainclassifier import Command as TrainClassifier


class Command(TrainClassifier):
    help = "Alias of trainclassifier. " + TrainClassifier.help
    examples = ("./manage.py trainkilonova --out ./kilonova-classifier",)
