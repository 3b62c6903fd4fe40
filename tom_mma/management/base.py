"""What every management command of tom-mma shares: help that ends with examples, progress bars."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from django.core.management.base import BaseCommand

__all__ = ["ExampleCommand", "StageProgress", "progress"]

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


class StageProgress:
    """Progress through the named stages of a long job: a bar on a terminal, a line per stage otherwise.

    Parameters
    ----------
    stages : sequence of str
        The stages, in order.
    desc : str
        The bar's label.
    stream : file, optional
        Where to report (default ``sys.stderr``).
    enabled : bool
        False reports nothing.

    Examples
    --------
    >>> import io
    >>> out = io.StringIO()
    >>> with StageProgress(["simulating", "fitting"], "training", out) as stage:
    ...     stage("simulating")
    ...     stage("fitting")
    >>> print(out.getvalue().strip())
    training: 1/2 simulating
    training: 2/2 fitting
    training: done
    """

    def __init__(self, stages: Iterable[str], desc: str, stream: Any = None, *, enabled: bool = True) -> None:
        self.stages = list(stages)
        self.desc = desc
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self._bar = None
        isatty = getattr(self.stream, "isatty", None)
        if enabled and isatty and isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=len(self.stages), desc=desc, file=self.stream, unit="stage")

    def __call__(self, stage: str) -> None:
        """Mark the beginning of ``stage`` (one of :attr:`stages`)."""
        if not self.enabled:
            return
        index = self.stages.index(stage)
        if self._bar is not None:
            self._bar.n = index
            self._bar.set_postfix_str(stage)
        else:
            self.stream.write(f"{self.desc}: {index + 1}/{len(self.stages)} {stage}\n")
            self.stream.flush()

    def __enter__(self) -> StageProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            if exc[0] is None:
                self._bar.n = len(self.stages)
                self._bar.refresh()
            self._bar.close()
        elif self.enabled and exc[0] is None:
            self.stream.write(f"{self.desc}: done\n")
            self.stream.flush()
