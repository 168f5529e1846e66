"""What the browser tests share: a fresh page per test and screenshots for a person.

Screenshots go to $SCREENSHOTS_DIR only when it is set; no test asserts on them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SHOTS = os.environ.get("SCREENSHOTS_DIR")
SIZES = (("desktop", 1280, 800), ("phone", 390, 844))


@contextmanager
def opened_page(browser: Any, base_url: str, timeout_ms: int, **options: Any) -> Iterator[Any]:
    """A page in a context of its own (no cookies from another test), closed afterwards."""
    context = browser.new_context(base_url=base_url, **options)
    page = context.new_page()
    page.set_default_timeout(timeout_ms)
    try:
        yield page
    finally:
        context.close()


def screenshots(page: Any, name: str) -> None:
    """Both sizes, light and dark, for a person to look at (when $SCREENSHOTS_DIR is set)."""
    if not SHOTS:
        return
    Path(SHOTS).mkdir(parents=True, exist_ok=True)
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        for label, width, height in SIZES:
            page.set_viewport_size({"width": width, "height": height})
            page.screenshot(path=f"{SHOTS}/{name}-{label}-{scheme}.png", full_page=True)
    page.emulate_media(color_scheme="light")
    page.set_viewport_size({"width": 1280, "height": 800})
