"""Screenshot a run's report.html with headless Chromium, as a small palette PNG (for the README).

Run: python scripts/screenshot_report.py reports/runs/<run-id>/report.html docs/report.png [--height 1800]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage", "--hide-scrollbars"]


def chromium() -> str:
    for candidate in (os.environ.get("HARNESS_CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser"),
                      shutil.which("google-chrome")):
        if candidate:
            return candidate
    raise SystemExit("headless Chromium not found: `make chromium`, or set HARNESS_CHROMIUM.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=1800)
    parser.add_argument("--colors", type=int, default=128, help="palette size of the PNG (smaller file)")
    args = parser.parse_args()
    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.png"
        subprocess.run([chromium(), *FLAGS, f"--user-data-dir={tmp}/profile", "--virtual-time-budget=5000",
                        f"--window-size={args.width},{args.height}", f"--screenshot={raw}",
                        args.report.resolve().as_uri()], check=True, capture_output=True, timeout=180)
        image = Image.open(raw).convert("RGB").quantize(colors=args.colors, method=Image.Quantize.MEDIANCUT)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        image.save(args.out, optimize=True)
    print(f"{args.out}: {args.out.stat().st_size / 1024:.0f} KB")


if __name__ == "__main__":
    main()
