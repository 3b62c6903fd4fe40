"""The documentation: it builds with Sphinx (warnings as errors) and covers what the code has.

Every settings key of both apps, every system check id and every management command of both apps must be in
the docs; the message schemas published there must describe what the code really sends.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from django.core.management import get_commands

from tom_mma.conf import DEFAULTS as MMA_DEFAULTS
from tom_mma_broker.conf import DEFAULTS as BROKER_DEFAULTS
from tom_mma_broker.snews.decider import Decider
from tom_mma_broker.snews.messages import parse_message, parse_time_ns

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CHECK_ID = re.compile(r"tom_mma(?:_broker)?\.[EW]\d{3}")


def _docs_text() -> str:
    return "\n".join(p.read_text() for p in sorted(DOCS.glob("*.md"))) + (ROOT / "README.md").read_text()


def _settings_section(app_dict: str) -> str:
    text = (DOCS / "settings.md").read_text()
    start = text.index(f"## `{app_dict}`")
    following = text.find("\n## ", start + 1)
    return text[start : following if following > 0 else None]


@pytest.mark.parametrize(("name", "defaults"), [("TOM_MMA", MMA_DEFAULTS), ("TOM_MMA_BROKER", BROKER_DEFAULTS)])
def test_every_setting_is_in_the_settings_reference(name, defaults):
    section = _settings_section(name)
    missing = [key for key in defaults if f"`{key}`" not in section]
    assert not missing, f"docs/settings.md, section {name}, lacks {missing}"


def test_every_check_id_is_documented():
    sources = [p for app in ("tom_mma", "tom_mma_broker") for p in (ROOT / app).rglob("*.py")]
    code = "\n".join(p.read_text() for p in sources if "migrations" not in p.parts)
    ids = set(re.findall(r'id=f?"(' + CHECK_ID.pattern + ')"', code))
    assert len(ids) > 10  # the pattern finds the checks at all
    documented = set(CHECK_ID.findall(_docs_text()))
    assert ids - documented == set(), "check ids the docs do not name"


def test_every_command_of_both_apps_is_on_the_commands_page():
    ours = sorted(name for name, app in get_commands().items() if app in ("tom_mma", "tom_mma_broker"))
    assert "mmademo" in ours and "rankcandidates" in ours
    page = (DOCS / "commands.md").read_text()
    missing = [name for name in ours if f"{{command-help}} {name}\n" not in page]
    assert not missing, f"docs/commands.md does not document {missing}"


def test_the_install_page_includes_the_readmes_install_section():
    readme = (ROOT / "README.md").read_text()
    start = readme.index("<!-- install:start")
    end = readme.index("<!-- install:end -->")
    assert start < end and "```python\n# settings.py" in readme[start:end]
    include = (DOCS / "install.md").read_text()
    assert "```{include} ../README.md" in include
    assert readme[start : readme.index("-->", start) + 3] in include


def _snews_outcomes() -> tuple[list[dict], list[dict]]:
    """Real decider output: a coincidence, its update, a retraction, a lone message, in two lanes."""
    decider = Decider()
    base = parse_time_ns("2030-01-01T12:35:00")

    def message(detector: str, second: int, **extra) -> dict:
        body = {"tier": "CoincidenceTier", "detector_name": detector, "p_val": 0.07, "uuid": f"{detector}-{second}"}
        body["neutrino_time_utc"] = f"2030-01-01T12:34:{second:02d}.123456"
        body.update(extra)
        return body

    bodies = [
        message("XENONnT", 40),
        message("DS-20K", 42),
        message("KamLAND", 44),
        message("Super-K", 44, is_test=True),
        message("IceCube", 45, is_test=True),
        message("XENONnT", 40, retract_latest=True, tier="Retraction", uuid="retract-1"),
        message("JUNO", 59, is_test=True, uuid="lonely"),
    ]
    alerts, lonely = [], []
    for i, body in enumerate(bodies):
        decision = Decider.process(decider, parse_message(body), arrival_ns=base + i * 10**9)
        alerts += [a.to_dict() for a in decision.alerts]
        if decision.no_coincidence is not None:
            lonely.append(decision.no_coincidence.to_dict())
    return alerts, lonely


def test_snews_alerts_match_their_published_schemas():
    alerts, lonely = _snews_outcomes()
    assert {a["lane"] for a in alerts} == {"observation", "test"}
    assert len(alerts) >= 3
    for doc, name in ((alerts, "snews-alert-v1.json"), (lonely, "snews-no-coincidence-v1.json")):
        schema = json.loads((DOCS / "schemas" / name).read_text())
        validator = jsonschema.Draft202012Validator(schema)
        for item in doc:
            errors = [e.message for e in validator.iter_errors(item)]
            assert not errors, (name, item, errors)


@pytest.mark.once
@pytest.mark.slow
def test_the_docs_build_with_warnings_as_errors(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(DOCS), str(tmp_path / "html")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    index = (tmp_path / "html" / "index.html").read_text()
    assert "Commands" in index and "Architecture" in index
    commands = (tmp_path / "html" / "commands.html").read_text()
    assert "--once" in commands  # a command's own option, read from its parser
    reference = (tmp_path / "html" / "reference" / "index.html").read_text()
    assert "tom_mma.targets" in reference
