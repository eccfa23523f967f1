"""Screenshots of what a user looks at: a report.html and the planner page (`distillscale serve`),
each at a desktop width (1280 px) and a phone's (390 px), the first screen only (what is seen
without scrolling) and, with --full, the whole page too. The docs' figures come from here:

    python bench/planning/screenshots.py --report sweeps/micro/report.html --out docs/figures

The report should be a real run's (`make demo` writes sweeps/micro/report.html). The planner page
is served in this process from the presets (and --law files), with its default controls. Uses the
system's Chromium (Debian's `chromium`) through playwright, with a fresh, empty profile; nothing is
fetched from the network."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
from pathlib import Path

WIDTHS = {"1280": (1280, 800), "390": (390, 844)}  # a laptop's first screen; a phone's (CSS pixels)
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium() -> str:
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        sys.exit("screenshots: no Chromium found: install Debian's chromium (apt-get install chromium)")
    return executable


def planner_server(laws: list[str]):
    """The planner page in a thread of this process; returns (server, its address)."""
    from distillscale.serve.api import Planner
    from distillscale.serve.server import make_server

    server = make_server(Planner(laws or None), port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def shoot(pages: dict[str, str], out: Path, full: bool) -> list[Path]:
    """Each page at each width: NAME_WIDTH.png (the first screen) and, with `full`, NAME_WIDTH_full.png."""
    from playwright.sync_api import sync_playwright

    written = []
    with tempfile.TemporaryDirectory(prefix="screenshots-profile-") as profile, sync_playwright() as playwright:
        for width, (w, h) in WIDTHS.items():
            context = playwright.chromium.launch_persistent_context(
                profile, executable_path=chromium(), headless=True, args=CHROMIUM_FLAGS,
                viewport={"width": w, "height": h}, device_scale_factor=1, is_mobile=width == "390")
            page = context.new_page()
            for name, url in pages.items():
                page.goto(url, wait_until="load")
                if url.startswith("http"):  # the planner page: wait for its first plan
                    page.wait_for_function("document.body.dataset.state === 'ready' && window.planner.shown !== null",
                                           timeout=60_000)
                page.wait_for_timeout(300)  # charts draw on the next frames
                target = out / f"{name}_{width}.png"
                page.screenshot(path=str(target))
                written.append(target)
                if full:
                    page.screenshot(path=str(out / f"{name}_{width}_full.png"), full_page=True)
                    written.append(out / f"{name}_{width}_full.png")
            context.close()
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--report", type=Path, default=Path("sweeps/micro/report.html"),
                        help="a report.html to photograph (default: make demo's; none there: the planner page only)")
    parser.add_argument("--law", action="append", default=[], help="a law file the planner page offers first")
    parser.add_argument("--out", type=Path, default=Path("docs/figures"), help="directory for the PNGs")
    parser.add_argument("--full", action="store_true", help="also the whole pages (NAME_WIDTH_full.png)")
    args = parser.parse_args()
    pages = {}
    if args.report.is_file():
        pages["report"] = args.report.resolve().as_uri()
    else:
        print(f"screenshots: no {args.report} (run `make demo`, or give --report a report.html): the planner page only",
              file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    server, address = planner_server(args.law)
    try:
        written = shoot({**pages, "planner": address}, args.out, args.full)
    finally:
        server.shutdown()
        server.server_close()
    for path in written:
        print(path)


if __name__ == "__main__":
    main()
