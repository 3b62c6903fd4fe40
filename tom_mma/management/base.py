"""What every management command of tom-mma shares: help that ends with examples, progress bars."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from django.core.management.base import BaseCommand

__all__ = ["ExampleCommand", "progress"]

T = TypeVar("T")


class ExampleCommand(BaseCommand):
    """A management command whose ``--help`` ends with worked examples.

    Subclasses set :attr:`examples`, one command line (with an optional ``#`` comment) per item.
    """

    #: example command lines shown at the end of ``--help``
    examples: tuple[str, ...] = ()

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> argparse.ArgumentParser:
        """Django's parser, with :attr:`examples` as its epilog."""
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        if self.examples:
            parser.formatter_class = argparse.RawDescriptionHelpFormatter
            lines = "\n".join(f"  {line}" for line in self.examples)
            parser.epilog = f"examples:\n{lines}"
        return parser


def progress(items: Iterable[T], total: int | None, desc: str, stream: Any = None) -> Iterator[T]:
    """Iterate ``items`` with a progress bar on ``stream`` (standard error) when it is a terminal.

    Parameters
    ----------
    items : iterable
        What to iterate.
    total : int or None
        How many items there are, if known.
    desc : str
        The bar's label.
    stream : file, optional
        Where the bar goes (default ``sys.stderr``); no bar unless it is a terminal, so that logs and
        tests read only the command's own lines.
    """
    from tqdm import tqdm

    stream = stream or sys.stderr
    yield from tqdm(items, total=total, desc=desc, file=stream, disable=not stream.isatty(), unit="msg")
