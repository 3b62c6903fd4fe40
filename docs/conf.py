"""Sphinx configuration of tom-mma's documentation (``sphinx-build -W -b html docs docs/_build/html``).

The pages are Markdown (MyST); the API reference comes from the docstrings (numpydoc, read by napoleon),
which needs Django set up: the example TOM's settings are used, with a fixed secret key so that building the
docs writes nothing beside the project.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "docs" / "_ext"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_tom.settings")
os.environ.setdefault("DJANGO_SECRET_KEY", "sphinx-build-only")

import django  # noqa: E402

django.setup()

from tom_mma import __version__  # noqa: E402

project = "tom-mma"
author = "tom-mma developers"
copyright = "2026, tom-mma developers"  # noqa: A001
release = __version__
version = ".".join(__version__.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "commandhelp",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
autodoc_member_order = "bysource"
autodoc_typehints = "description"
# each object on the page of the module that defines it (several modules re-export names in their __all__)
autodoc_default_options = {"members": True, "show-inheritance": True, "ignore-module-all": True}
# Django model fields and the packages we plug into are not documented here: do not try to resolve them.
nitpicky = False
suppress_warnings = ["myst.xref_missing"] if os.environ.get("TOM_MMA_DOCS_LAX") else []

html_theme = "alabaster"
html_title = f"tom-mma {release}"
html_static_path: list[str] = []
