"""A Sphinx directive that documents a management command from the command itself.

``{command-help} mmademo`` renders the command's help text, its own options (not Django's common ones) and
the examples its ``--help`` ends with, so the commands page cannot drift from the code.
"""

from __future__ import annotations

import argparse

from django.core.management import get_commands, load_command_class
from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

__all__ = ["CommandHelpDirective", "setup"]

#: Options every Django command has; the page lists only a command's own.
COMMON_DESTS = {
    "help",
    "version",
    "verbosity",
    "settings",
    "pythonpath",
    "traceback",
    "no_color",
    "force_color",
    "skip_checks",
}


def _options(parser: argparse.ArgumentParser) -> list[tuple[str, str]]:
    rows = []
    for action in parser._actions:  # argparse keeps no public list of a parser's arguments
        if action.dest in COMMON_DESTS:
            continue
        if action.option_strings:
            name = ", ".join(action.option_strings)
            if action.nargs != 0:
                name += f" {action.metavar or action.dest.upper()}"
        else:
            name = action.metavar or action.dest
            if action.nargs in ("+", "*"):
                name += " ..."
        help_text = (action.help or "").replace("%(default)s", str(action.default)).replace("%%", "%")
        if action.choices and not action.option_strings:
            help_text = f"one of {', '.join(map(str, action.choices))}. {help_text}".strip()
        rows.append((name, help_text))
    return rows


class CommandHelpDirective(SphinxDirective):
    """Render one management command's help: ``{command-help} NAME``."""

    required_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        """The command's section: its help, usage, own options and examples."""
        name = self.arguments[0]
        app = get_commands().get(name)
        if app is None:
            raise self.error(f"no management command {name!r} is installed")
        command = load_command_class(app, name)
        parser = command.create_parser("manage.py", name)
        section = nodes.section(ids=[nodes.make_id(f"command-{name}")])
        section += nodes.title(text=name)
        section += nodes.paragraph(text=f"From {app}. {command.help}".strip())
        usage = parser.format_usage().replace("usage: ", "").strip()
        section += nodes.literal_block(text=usage, language="text")
        rows = _options(parser)
        if rows:
            items = nodes.definition_list()
            for option, help_text in rows:
                item = nodes.definition_list_item()
                term = nodes.term()
                term += nodes.literal(text=option)
                item += term
                definition = nodes.definition()
                definition += nodes.paragraph(text=help_text or "(no help text)")
                item += definition
                items += item
            section += items
        if parser.epilog:
            section += nodes.literal_block(text=parser.epilog.strip(), language="text")
        return [section]


def setup(app: Sphinx) -> dict:
    """Register the directive."""
    app.add_directive("command-help", CommandHelpDirective)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
