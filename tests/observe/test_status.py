"""The status page's data (shared.status) and both routes (blueprints.status) against the local Key Vault:
every managed secret's days to expiry, status, last outcome, pending, failed and cleanup due; filters; the
same data as HTML and JSON; properties only (no value is read); bad filters are 400s naming the field."""

from __future__ import annotations

import re
from datetime import timedelta
from html.parser import HTMLParser
from typing import Any

import pytest

from blueprints.status import render_html, status_json, status_page
from shared.status import StatusFilters, collect_status, parse_filters
from tests.fixtures.rotation import seed

POLICY = {"ValidityPeriodDays": "60"}
OWNED = {"ManagedBy": "keyvault-secrets-functions"}


def value_reads(stats: dict[str, Any]) -> int:
    return int(stats["operations"].get("GetSecret", 0))


async def seed_vault(kv_client: Any, now: Any, values: Any) -> None:
    await seed(
        kv_client,
        [
            dict(name="st-fine", value=values.new(), tags=POLICY, expires_on=now + timedelta(days=50)),
            dict(name="st-due", value=values.new(), tags=POLICY, expires_on=now + timedelta(days=5)),
            dict(name="st-expired", value=values.new(), tags=POLICY, expires_on=now - timedelta(days=2)),
            dict(name="st-bad", value=values.new(), tags={"ValidityPeriodDays": "ninety"}),
            dict(
                name="st-pending",
                value=values.new(),
                enabled=False,
                tags={**POLICY, "RotationState": "pending", "RotationOperationId": "op-1"},
            ),
            dict(name="st-plain", value=values.new(), expires_on=now + timedelta(days=3)),
            dict(
                name="st-old",
                value=values.new(),
                tags={**OWNED, "CleanupDeleteExpired": "true"},
                expires_on=now - timedelta(days=40),
            ),
        ],
    )


async def test_every_managed_secret_with_its_state_from_properties_only(
    kv_client: Any, vault_clock: Any, vault_control: Any, secret_values: Any
) -> None:
    from shared.settings import get_settings

    now = vault_clock.now()
    await seed_vault(kv_client, now, secret_values)
    before = value_reads(vault_control.stats())
    report = await collect_status(kv_client, get_settings(), now=now)
    assert value_reads(vault_control.stats()) == before  # never a value

    rows = {r.name: r for r in report.secrets}
    assert sorted(rows) == ["st-bad", "st-due", "st-expired", "st-fine", "st-pending"]  # managed only
    assert (rows["st-fine"].status, rows["st-fine"].window, rows["st-fine"].days_to_expiry) == (
        "UpToDate",
        "30-90d",
        50.0,
    )
    assert rows["st-due"].status == "Due" and rows["st-due"].due_on is not None
    assert rows["st-expired"].window == "expired" and rows["st-expired"].attention
    assert rows["st-pending"].pending and rows["st-pending"].last_operation == "op-1"
    assert rows["st-bad"].failed and "ValidityPeriodDays" in rows["st-bad"].reason
    assert [r.name for r in report.secrets][:2] == ["st-expired", "st-due"]  # soonest expiry first
    assert report.totals["managed"] == 5 and report.totals["pending"] == 1
    assert report.totals["windows"]["expired"] == 1 and report.totals["windows"]["0-7d"] == 1

    everything = await collect_status(kv_client, get_settings(), StatusFilters(scope="all"), now=now)
    more = {r.name: r for r in everything.secrets}
    assert more["st-plain"].status == "Unmanaged" and more["st-plain"].attention  # expires in 3 days
    assert more["st-old"].cleanup_due and more["st-old"].cleanup_due[0].startswith("DeleteExpired")


async def test_last_rotation_outcome_and_cleanup_due_after_a_real_rotation(
    kv_client: Any, make_engine: Any, vault_clock: Any, monkeypatch: pytest.MonkeyPatch, hooked: None
) -> None:
    from shared.settings import get_settings

    monkeypatch.setenv("CLEANUP_KEEP_VERSIONS", "1")
    get_settings.cache_clear()
    await seed(kv_client, [dict(name="st-rot", value="v", tags=POLICY, expires_on=vault_clock.now())])
    await make_engine().sweep()
    report = await collect_status(kv_client, get_settings(), now=vault_clock.now())
    [row] = report.secrets
    assert row.status == "UpToDate" and row.last_rotated is not None and row.last_operation
    assert row.last_outcome == "Rotated" and not row.cleanup_due  # the overlap has not ended yet
    vault_clock.days(3)
    [row] = (await collect_status(kv_client, get_settings(), now=vault_clock.now())).secrets
    assert len(row.cleanup_due) == 1 and row.cleanup_due[0].startswith("DisableVersion ")


async def test_filters_narrow_the_rows(kv_client: Any, vault_clock: Any, secret_values: Any) -> None:
    from shared.settings import get_settings

    now = vault_clock.now()
    await seed_vault(kv_client, now, secret_values)

    async def names(**params: str) -> list[str]:
        report = await collect_status(kv_client, get_settings(), parse_filters(params), now=now)
        return sorted(r.name for r in report.secrets)

    assert await names(status="Due") == ["st-due"]
    assert await names(state="pending") == ["st-pending"]
    assert await names(state="failed") == ["st-bad"]
    assert await names(within="10") == ["st-due", "st-expired"]
    assert await names(q="FIN") == ["st-fine"]
    assert await names(state="cleanup", scope="all") == ["st-old"]
    assert await names(state="attention") == ["st-bad", "st-due", "st-expired", "st-pending"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "Nope"}, "status"),
        ({"state": "weird"}, "state"),
        ({"scope": "everything"}, "scope"),
        ({"within": "soon"}, "within"),
        ({"within": "-1"}, "within"),
        ({"within": "nan"}, "within"),
        ({"within": "1e999"}, "within"),
        ({"q": "<script>"}, "q"),
        ({"format": "xml"}, "format"),
    ],
)
async def test_a_bad_filter_is_a_400_naming_it(
    app_env: Any, api: Any, params: dict[str, str], field: str
) -> None:
    response = await api.call(status_page, "GET", "/api/status", params=params)
    assert response.status == 400 and response.error["target"] == field, response.text
    assert field in response.error["message"]  # the message names the parameter too


class _Labels(HTMLParser):
    """Collects form controls and labels, to check every control is labelled."""

    def __init__(self) -> None:
        super().__init__()
        self.controls: list[str] = []
        self.labels: set[str] = set()
        self.lang: str | None = None
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "html":
            self.lang = a.get("lang")
        if tag in ("input", "select") and a.get("type") != "hidden":
            self.controls.append(a.get("id") or "")
        if tag == "label":
            self.labels.add(a.get("for") or "")
        for key in ("src", "href"):
            if a.get(key) and re.match(r"^(https?:)?//", a[key] or ""):
                self.external.append(a[key] or "")


async def test_html_and_json_carry_the_same_secrets(
    app_env: Any, api: Any, vault_clock: Any, secret_values: Any
) -> None:
    from shared.keyvault import get_secret_client

    now = vault_clock.now()
    await seed(
        await get_secret_client(),  # the app's settings (prefix app-), not the rotation suites'
        [
            dict(name="app-one", value=secret_values.new(), tags=POLICY, expires_on=now + timedelta(days=12)),
            dict(name="app-two", value=secret_values.new(), tags=POLICY, expires_on=now + timedelta(days=80)),
            dict(name="other-three", value=secret_values.new(), tags=POLICY),  # outside the prefix
        ],
    )
    page = await api.call(status_page, "GET", "/api/status")
    assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    as_json = await api.call(status_json, "GET", "/api/status.json")
    same = await api.call(status_page, "GET", "/api/status", params={"format": "json"})
    assert as_json.status == same.status == 200
    names = [s["name"] for s in as_json.json["secrets"]]
    assert names == ["app-one", "app-two"] == [s["name"] for s in same.json["secrets"]]
    for name in names:
        assert name in page.text
    assert "other-three" not in page.text
    days = {s["name"]: s["daysToExpiry"] for s in as_json.json["secrets"]}
    assert 11.9 < days["app-one"] <= 12 and f'value="{days["app-one"]:g}"' in page.text  # the timeline meter

    parsed = _Labels()
    parsed.feed(page.text)
    assert parsed.lang == "en" and parsed.controls and set(parsed.controls) <= parsed.labels
    assert parsed.external == []  # no external asset
    assert "code=" not in page.text.replace("get('code')", "")  # the key is never written into the page


def _luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def test_text_colours_meet_wcag_aa_contrast_on_their_backgrounds() -> None:
    from blueprints import status

    css = status._STYLE
    colours = dict(re.findall(r"--([a-z]+):(#[0-9a-fA-F]{6})", css))
    for name in ("fg", "muted", "bad", "warn", "ok", "info"):
        for background in ("#ffffff", "#f3f3f3"):
            high, low = sorted((_luminance(colours[name]), _luminance(background)), reverse=True)
            assert (high + 0.05) / (low + 0.05) >= 4.5, (name, background)
    assert (_luminance("#ffffff") + 0.05) / (_luminance("#004e8c") + 0.05) >= 4.5  # the button


def test_the_page_escapes_what_it_shows() -> None:
    report = {
        "vault": "<kv>",
        "generatedAt": "t",
        "filters": {"q": '"><script>'},
        "totals": {},
        "listingComplete": True,
        "secrets": [{"name": "<b>x</b>", "status": "Due", "reason": "<i>", "cleanupDue": ["<u>"]}],
    }
    html = render_html(report)
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html and "<kv>" not in html
    assert '"><script>' not in html


async def test_several_vaults_merge_into_one_report_and_an_unknown_vault_is_a_400(
    app_env: Any, api: Any, kv_client: Any, vault_clock: Any, secret_values: Any
) -> None:
    from shared.settings import get_settings
    from shared.status import merge_reports

    now = vault_clock.now()
    await seed_vault(kv_client, now, secret_values)
    one = await collect_status(kv_client, get_settings(), now=now)
    two = await collect_status(kv_client, get_settings(), StatusFilters(state="pending"), now=now)
    for row in two.listed:
        row.vault = "second"
    two.vault = "second"
    merged = merge_reports([one, two])
    assert merged.vault == "localhost, second" and merged.totals["listed"] == 2 * one.totals["listed"]
    assert merged.totals["shown"] == len(one.secrets) + 1 == len(merged.secrets)
    assert {r.vault for r in merged.secrets if r.name == "st-pending"} == {"localhost", "second"}
    assert "vault second" in render_html(merged.to_dict())

    response = await api.call(status_page, "GET", "/api/status", params={"vault": "nowhere"})
    assert response.status == 400 and response.error["target"] == "vault"
