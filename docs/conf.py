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
autodoc_class_signature = "mixed"
autodoc_default_options = {"members": True, "show-inheritance": True}
nitpicky = False
myst_heading_anchors = 3
html_theme = "alabaster"
suppress_warnings = ["myst.header"]

#: Classes whose instances come from connect/listen/accept/open_stream: their
#: ``__init__`` arguments are internal (a driver core, a handler), not API.
NO_CONSTRUCTOR = {
    f"{module}.{name}"
    for module in ("mstls", "mstls.trio")
    for name in ("Connection", "Listener", "Stream")
}


def _hide_internal_signature(
    app: object,
    what: str,
    name: str,
    obj: object,
    options: object,
    signature: str | None,
    return_annotation: str | None,
) -> tuple[str, str | None] | None:
    """The class pages show no internal ``__init__`` arguments (issue 13)."""
    if what == "class" and name in NO_CONSTRUCTOR:
        return "", None
    return None


def setup(app: object) -> None:
    app.connect("autodoc-process-signature", _hide_internal_signature)  # type: ignore[attr-defined]
