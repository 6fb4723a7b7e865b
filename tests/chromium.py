"""Test helper: open a page in headless Chromium — its console errors and a screenshot — to check that a report renders.

Chromium comes from the distribution (Debian: `apt-get install chromium`); `make test` installs it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# With --enable-logging=stderr, Chromium logs each console message of the page as
#   [pid:tid:date:LEVEL:CONSOLE(line)] "message", source: URL (line)
# or, in newer builds, "[...:CONSOLE:line] message". Levels INFO/WARNING/ERROR.
CONSOLE = re.compile(r":(INFO|WARNING|ERROR|VERBOSE\d*):CONSOLE[(:](\d+)\)?\]? ?(.*)")


@dataclass(frozen=True)
class PageCheck:
    console_errors: list[str]
    console_messages: list[str]
    screenshot: Path


def chromium() -> str | None:
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def open_page(page: Path, screenshot: Path, width: int = 1280, height: int = 4000, timeout_s: float = 120.0) -> PageCheck:
    binary = chromium()
    if binary is None:
        raise FileNotFoundError("no Chromium found (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="specwise-chromium-") as profile:
        argv = [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--disable-extensions", "--hide-scrollbars", f"--user-data-dir={profile}",
                "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000",
                f"--window-size={width},{height}", f"--screenshot={screenshot}", page.resolve().as_uri()]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL,
                             env={**os.environ, "HOME": profile})
    messages, errors = [], []
    for line in out.stderr.splitlines():
        match = CONSOLE.search(line)
        if match:
            messages.append(match[3])
            # Uncaught exceptions and console.error are logged at ERROR (or INFO with "Uncaught" in older builds).
            if match[1] == "ERROR" or "Uncaught" in match[3]:
                errors.append(match[3])
    if not screenshot.exists():
        raise RuntimeError(f"Chromium wrote no screenshot (exit {out.returncode}):\n{out.stderr[-2000:]}")
    return PageCheck(console_errors=errors, console_messages=messages, screenshot=screenshot)


def coloured_share(screenshot: Path, rgb: tuple[int, int, int], tolerance: int = 40) -> float:
    """Share of the screenshot's pixels within `tolerance` of `rgb`: plots show as their line colours."""
    import matplotlib.image as mpimg
    import numpy as np

    pixels = mpimg.imread(screenshot)[..., :3]
    if pixels.dtype != np.uint8:
        pixels = (pixels * 255).round()
    diff = np.abs(pixels.astype(int) - np.asarray(rgb)).max(axis=-1)
    return float((diff <= tolerance).mean())
