"""The auto-mode report renders in headless Chromium, offline, with every plot drawn.

Chromium comes from the system (Debian's ``chromium`` package; ``.ci/run`` installs it) and is
driven by Playwright with ``executable_path``, so nothing is downloaded. Without a Chromium
the test is skipped, unless ``SLIMCV_REQUIRE_BROWSER=1`` (set by CI) makes that a failure.
"""

from __future__ import annotations

import io
import os
import shutil

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def _chromium() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("SLIMCV_REQUIRE_BROWSER") == "1":
        pytest.fail(f"no Chromium found ({', '.join(BROWSERS)}); CI installs Debian's chromium")
    pytest.skip("no Chromium on this machine (apt-get install chromium)")


def test_report_renders_offline_with_every_plot_visible(auto_workspace, tmp_path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    from PIL import Image

    executable = _chromium()
    requests: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--disable-sync",
            ],
        )
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("request", lambda request: requests.append(request.url))
        page.goto((auto_workspace / "report.html").as_uri(), wait_until="networkidle")
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        plots = page.locator("figure.plot")
        ids = [plots.nth(i).get_attribute("id") for i in range(plots.count())]
        assert ids == ["plot-pareto", "plot-blocks", "plot-sensitivity"]
        drawn = {}
        for i, plot_id in enumerate(ids):
            svg = plots.nth(i).locator("svg")
            box = svg.bounding_box()
            assert box is not None and box["width"] > 300 and box["height"] > 150, plot_id
            image = Image.open(io.BytesIO(svg.screenshot())).convert("RGB")
            colours = image.getcolors(maxcolors=1 << 16) or []
            inked = sum(count for count, rgb in colours if sum(rgb) < 600)
            drawn[plot_id] = (len(colours), inked / (image.width * image.height))
        headline = page.locator("#headline").inner_text()
        browser.close()
    # Only the page itself was requested: no CDN, no font, no image from anywhere.
    assert requests == [(auto_workspace / "report.html").as_uri()]
    for plot_id, (colours, ink) in drawn.items():
        # Axes, text and data in several colours cover a visible share of the plot.
        assert colours >= 8 and ink > 0.01, (plot_id, colours, ink)
    assert "faster than the baseline" in headline
    assert (tmp_path / "report.png").stat().st_size > 50_000
