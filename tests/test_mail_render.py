"""The HTML part as a browser shows it: headless Chromium, light and dark, saved as PNGs.

The screenshots go to $AGGREGATOR_TEST_ARTIFACTS (default build/test-artifacts/)
for a person to look at; the test checks they are not blank and that the
dark-mode styles take effect.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from mailsetup import END, NOW, START, fill, settings

from aggregator.mail import tokens
from aggregator.mail.compose import compose, message_id
from aggregator.mail.service import mailing
from aggregator.store import Store
from aggregator.store.mail import Subscriber

PIL = pytest.importorskip("PIL.Image")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(
    os.environ.get(
        "AGGREGATOR_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "build/test-artifacts"
    )
)


def _screenshot(html: Path, png: Path, profile: Path, *, dark: bool) -> None:
    assert CHROMIUM is not None
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        "--window-size=800,1000",
        f"--screenshot={png}",
        *(["--force-dark-mode"] if dark else []),
        html.as_uri(),
    ]
    subprocess.run(command, check=True, capture_output=True, timeout=90)


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")
def test_html_part_renders_in_chromium_light_and_dark(tmp_path: Path) -> None:
    from PIL import ImageStat

    config = settings(tmp_path)
    store = Store(config.database_url)
    fill(store)
    period = mailing(store, config, config.digests[0], START, END, NOW)
    person = Subscriber(email="anna@example.org", digest="daily", id=1)
    message = compose(
        period,
        person,
        msgid=message_id("daily", START, END, person.email, "example.org"),
        token=tokens.sign(b"secret", person),
    )
    part = message.get_body(("html",))
    assert part is not None
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    html = ARTIFACTS / "mail.html"
    html.write_text(part.get_content(), encoding="utf-8")
    for dark, name, check in (
        (False, "mail-light.png", lambda mean: mean > 200),
        (True, "mail-dark.png", lambda mean: mean < 80),
    ):
        png = ARTIFACTS / name
        png.unlink(missing_ok=True)
        _screenshot(html, png, tmp_path / "chromium", dark=dark)
        image = PIL.open(png).convert("L")
        colours = image.getcolors(1 << 20) or []
        assert len(colours) > 50, f"{png} looks blank"
        mean = ImageStat.Stat(image).mean[0]
        assert check(mean), f"{png}: mean brightness {mean:.0f}"
