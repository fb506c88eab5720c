"""Sphinx configuration: the API reference, built from the docstrings (``./dev docs``)."""

from __future__ import annotations

import mstls

project = "mstls"
author = "the mstls developers"
release = mstls.__version__
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "myst_parser"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_class_signature = "separated"
autodoc_default_options = {"members": True, "show-inheritance": True}
nitpicky = False
myst_heading_anchors = 3
html_theme = "alabaster"
suppress_warnings = ["myst.header"]
