"""The status page in a real headless Chromium (Debian's chromium, driven by Playwright over CDP) against the
real function_app.py served by the local Functions host: it loads with no console error, shows the secrets
the test made, its filter form keeps a ?code= key (the page never contains it), it reads the same without
JavaScript, and a screenshot is saved under this test's pytest tmp dir (printed)."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
POLICY = {"ValidityPeriodDays": "60"}


@pytest.fixture
def chromium() -> str:
    if not Path(CHROMIUM).exists():
        message = "Debian's chromium is not installed (.ci/run installs it: apt-get install -y chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI can install it, so it must not skip
        pytest.skip(message)
    return CHROMIUM


def test_status_page_in_headless_chromium(
    chromium: str, live_host: Any, sync_client: Any, secret_values: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    now = datetime.now(UTC)
    made: dict[str, datetime | None] = {
        "app-browser-due": now + timedelta(days=4),
        "app-browser-fine": now + timedelta(days=45),
        "app-browser-expired": now - timedelta(days=1),
    }
    for name, expires in made.items():
        sync_client.set_secret(name, secret_values.new(), tags=POLICY, expires_on=expires)
    # two more states the page must show: a rotation left pending, and an unusable policy tag
    pending = {**POLICY, "RotationState": "pending", "RotationOperationId": "op-browser"}
    sync_client.set_secret("app-browser-pending", secret_values.new(), tags=pending, enabled=False)
    sync_client.set_secret("app-browser-bad", secret_values.new(), tags={"ValidityPeriodDays": "ninety"})
    made.update({"app-browser-pending": None, "app-browser-bad": None})
    url = f"{live_host.base_url}/api/status?code={live_host.function_key}"

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=FLAGS)  # its own fresh profile
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            problems: list[str] = []
            page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))

            response = page.goto(url, wait_until="load")
            assert response is not None and response.status == 200
            served = [response.text()]  # read before navigating away
            assert page.title().startswith("Key Vault secrets status")
            table = page.get_by_role("table")
            for name in made:
                assert page.get_by_role("rowheader", name=name).count() == 1
            text = table.inner_text()
            assert "expired 1 day ago" in text and "4 days" in text
            assert "PendingRecovery" in text and "pending" in text and "failed" in text
            assert (
                page.get_by_label("Status").count() == 1 and page.get_by_label("Name contains").count() == 1
            )
            shot = tmp_path / "status-page.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            print(f"\nstatus page screenshot: {shot}")

            page.get_by_label("Status").select_option("Due")
            with page.expect_navigation(wait_until="load") as navigation:
                page.get_by_role("button", name="Apply filters").click()
            filtered = navigation.value
            assert filtered is not None and filtered.status == 200
            served.append(filtered.text())
            assert "status=Due" in page.url and "code=" in page.url  # the script carried the key along
            rows = page.get_by_role("rowheader")
            assert [r.inner_text().split("\n")[0] for r in rows.all()] == ["app-browser-due"]
            for body in served:  # the key is in the address bar, never in what was served
                assert live_host.function_key not in body
            assert problems == []

            no_js = browser.new_context(java_script_enabled=False).new_page()
            no_js.goto(url, wait_until="load")
            assert {r.inner_text().split("\n")[0] for r in no_js.get_by_role("rowheader").all()} == set(made)
        finally:
            browser.close()
