"""Where the browser tests find Chromium and how they launch it (Debian's build, no sandbox).

Shared by tests/test_browser.py (JupyterLab, Voila) and tests/test_book.py (the HTML book).
"""

import os

CHROMIUM = os.environ.get("DRSL_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
