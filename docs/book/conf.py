"""Sphinx configuration of the course book. Built by ``make book`` (tools/book.py), which copies
this folder into build/book-src/ next to the generated pages and the executed notebooks."""

import drsl

project = "drsl: the Differentiable Retrieval-Sort Loss course"
author = "the drsl authors"
release = drsl.__version__
copyright = "the drsl authors, MIT licence"  # noqa: A001 - Sphinx's name

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx_design",
]
# _downloads_src: the notebooks without outputs that each page offers for download (not pages)
exclude_patterns = [
    "_generated/*",
    "_downloads_src/*",
    "**.ipynb_checkpoints",
    "sphinx-warnings.log",
]
suppress_warnings = ["mystnb.unknown_mime_type"]

# notebooks: executed beforehand by tools/book.py (in notebooks/, as a reader runs them)
nb_execution_mode = "off"
nb_merge_streams = True
nb_render_markdown_format = "myst"  # text/markdown outputs get the same math as the prose
nb_ipywidgets_js = {}  # widget views are replaced by a note: no widget manager from a CDN
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3

# formulas: MathJax 2.7 served from _static/mathjax (the jupyter-server-mathjax wheel), no CDN
mathjax_path = "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"
mathjax2_config = {
    "tex2jax": {"inlineMath": [["\\(", "\\)"]], "displayMath": [["\\[", "\\]"]]},
    "messageStyle": "none",
    # the wheel ships the STIX-Web fonts only (woff): use them, no image fonts, no local fonts
    # a display wider than the column breaks at its operators (the CSS scrolls what cannot)
    "HTML-CSS": {
        "availableFonts": [],
        "webFont": "STIX-Web",
        "imageFont": None,
        "linebreaks": {"automatic": True},
    },
}
myst_update_mathjax = False

# API reference from the docstrings (Google style: Args, Returns, Example)
autosummary_generate = True
# packages re-export their public names (__all__): document each object once, where it is defined
autodoc_default_options = {"members": True, "show-inheritance": True, "ignore-module-all": True}
autodoc_typehints = "description"
autodoc_member_order = "bysource"
napoleon_google_docstring = True
napoleon_numpy_docstring = False

html_theme = "sphinx_book_theme"
html_title = "drsl course"
html_static_path = ["_static"]
html_css_files = ["drsl-book.css"]
html_theme_options = {
    "show_navbar_depth": 1,
    "use_download_button": False,
    "use_fullscreen_button": False,
    "use_repository_button": False,
    "navigation_with_keys": False,
}
html_show_sourcelink = False
