"""The import graph of both apps against a layer map that this test declares.

Read with ``ast``: every import counts, at module level or inside a function (that is how circles hide).
The layers, lowest first; a module may import its own layer and the ones below, never one above:

0. ``base``: settings, signals, message and payload formats, pure parsers and the classifier's pure parts;
1. ``models``;
2. ``services``: everything not named elsewhere (ingest, ranking, rules, the outbox, ...);
3. ``handlers``: the topic handlers, thin over services;
4. ``entry``: what Django, Celery or a person calls: tasks, receivers, views, admin, commands, checks, the
   stream class, the broker query class, facilities, the app configs.

And ``tom_mma`` never imports ``tom_mma_broker`` (the broker connects to tom_mma's signals and reads its
state only through documented functions).
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APPS = ("tom_mma", "tom_mma_broker")

LAYERS = ["base", "models", "services", "handlers", "entry"]
# (pattern on the dotted module name, layer), first match wins; the rest are services
LAYER_MAP = [
    (r"^tom_mma(_broker)?\.(conf|appsettings|signals)$", "base"),
    (r"^tom_mma\.(hopmessages|deferred|inflate|batching)$", "base"),  # batching: pure, a handler's batch
    (r"^tom_mma(_broker)?\.schemas(\..*)?$", "base"),
    (r"^tom_mma_broker\.(formats|subjects)$", "base"),  # subjects: pure text of a message
    (r"^tom_mma\.gw\.(skymaps|notices|healpix)$", "base"),
    (r"^tom_mma_broker\.classifier\.(bands|features|kernels|surveys|synthetic|datasets)$", "base"),
    (r"^tom_mma(_broker)?\.models(\..*)?$", "models"),
    (r"^tom_mma(_broker)?\.handlers(\..*)?$", "handlers"),
    (
        r"^tom_mma(_broker)?\.(gw\.|oidc\.)?(tasks|receivers|views|urls|admin|apps|checks|checks_derived|alerts|auth)$",
        "entry",
    ),
    (r"^tom_mma\.checks_oidc$", "entry"),
    (r"^tom_mma\.dataservices(\..*)?$", "entry"),  # tomtoolkit 3's Data Services: query forms and services
    (r"^tom_mma(_broker)?\.(management|templatetags|facilities)(\..*)?$", "entry"),
    (r"^tom_mma(_broker)?\.api(\..*)?$", "entry"),  # the REST API: viewsets, serializers, filters, routes
    (r"^tom_mma_broker\.(streams|fink|demo)$", "entry"),  # stream classes for ALERT_STREAMS
    (r"^tom_mma(_broker)?$", "entry"),  # the packages' __init__
]


def layer_of(module: str) -> str:
    for pattern, layer in LAYER_MAP:
        if re.match(pattern, module):
            return layer
    return "services"


def modules() -> dict[str, Path]:
    found = {}
    for app in APPS:
        for path in (ROOT / app).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules ``name`` imports (the longest known prefix of each imported name)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            # "from package import module" imports the module; "from module import name", the module
            candidates = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for candidate in candidates:
            while candidate and candidate not in known:
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != name:
                targets.add(candidate)
    return targets


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def test_the_map_is_read(graph):
    assert len(graph) > 60
    assert "tom_mma.gw.ranking" in graph["tom_mma.gw.tasks"]  # an import inside a function counts
    assert {layer_of(name) for name in graph} == set(LAYERS)


def test_tom_mma_never_imports_the_broker(graph):
    crossing = sorted(f"{a} -> {b}" for a, bs in graph.items() if not a.startswith("tom_mma_broker")
                      for b in bs if b.startswith("tom_mma_broker"))  # fmt: skip
    assert crossing == []


def test_no_import_against_the_layers(graph):
    rank = {layer: i for i, layer in enumerate(LAYERS)}
    against = sorted(
        f"{a} ({layer_of(a)}) -> {b} ({layer_of(b)})"
        for a, bs in graph.items()
        for b in bs
        if rank[layer_of(b)] > rank[layer_of(a)] and not b.startswith(a + ".")  # a package may name its parts
    )
    assert against == []


def test_no_import_circle(graph):
    # Tarjan's strongly connected components; a package's own __init__ re-exporting its parts is not a circle
    edges = {a: {b for b in bs if not b.startswith(a + ".")} for a, bs in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    assert circles == []


def test_layers_by_name(graph):
    by_layer = defaultdict(list)
    for name in graph:
        by_layer[layer_of(name)].append(name)
    assert "tom_mma.tasks" in by_layer["entry"] and "tom_mma.rules" in by_layer["services"]
    assert "tom_mma_broker.handlers" in by_layer["handlers"] and "tom_mma.models" in by_layer["models"]


def test_every_import_of_a_project_module_resolves():
    """Imports inside functions run only when called: a moved name would fail at run time, not at import."""
    import importlib

    missing = []
    for package in (*APPS, "tests", "bench"):
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            here = ".".join(parts[:-1]) if parts[-1] != "__init__" else ".".join(parts[:-1])
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.ImportFrom):
                    continue
                module = node.module or ""
                if node.level:
                    up = here.split(".")[: len(here.split(".")) - node.level + 1]
                    module = ".".join(up + ([module] if module else []))
                if not module.startswith(("tom_mma", "tests")):
                    continue
                imported = importlib.import_module(module)
                for alias in node.names:
                    if alias.name == "*" or hasattr(imported, alias.name):
                        continue
                    try:
                        importlib.import_module(f"{module}.{alias.name}")
                    except ImportError:
                        missing.append(f"{path.relative_to(ROOT)}:{node.lineno}: {module}.{alias.name}")
    assert missing == []


def test_only_the_data_services_import_tom_dataservices():
    """A TOM without ``tom_dataservices`` imports none of it: only ``tom_mma.dataservices`` does, and only that
    app imports those modules (through ``TomMmaConfig.data_services()``, which names none without it)."""
    importers = set()
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            found = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and not node.level:
                found = [node.module or ""]
            if any(n == "tom_dataservices" or n.startswith("tom_dataservices.") for n in found):
                importers.add(name)
    assert importers and all(name.startswith("tom_mma.dataservices.") for name in importers), sorted(importers)
