"""Sphinx configuration of xent's documentation: sphinx-build -W -b html docs /tmp/html."""

import importlib.util

import xent

project = "xent"
author = "the xent developers"
copyright = "the xent developers, BSD-3-Clause"  # noqa: A001 (Sphinx's name)
release = xent.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
# generated/ holds the per-function pages autosummary writes at build time (not in git)
exclude_patterns = ["_build", "generated/*.md"]

# API reference: one page per public name, from its numpydoc docstring.
autosummary_generate = True
autodoc_typehints = "none"  # the numpydoc Parameters sections carry the types
autodoc_default_options = {"members": False}
numpydoc_show_class_members = False
numpydoc_xref_param_type = False
numpydoc_class_members_toctree = False

# PyTorch and Dask are optional: an adapter's page is built only where its library imports
# (api/index.rst lists api/* by glob, so a left-out page leaves no dangling link).
for module, page in [("torch", "api/torch.rst"), ("distributed", "api/dask.rst")]:
    if importlib.util.find_spec(module) is None:
        exclude_patterns.append(page)

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3


html_theme = "alabaster"
html_title = f"xent {release}"
html_theme_options = {
    "description": "Fast, exact cross-entropy and its relatives on multicore CPUs",
    "fixed_sidebar": True,
    "page_width": "1320px",  # room for 100-column code blocks beside the sidebar
    "body_max_width": "none",
    "code_font_size": "0.8em",
    "sidebar_width": "240px",
}
html_static_path = []
