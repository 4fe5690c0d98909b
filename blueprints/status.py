"""The status page: GET /api/status (HTML) and GET /api/status.json (or ?format=json), the same data.

Server-rendered HTML: no build step, no external asset, readable without JavaScript (one small inline
script, allowed by its hash, only carries a ?code= function key into the filter form; the key is never
written into the page). Data from shared.status; no value is ever read.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import azure.functions as func

from shared.errors import InvalidRequest

from .responses import answers_json, json_response

bp = func.Blueprint()

_KEEP_KEY_SCRIPT = (
    "(function(){var c=new URLSearchParams(location.search).get('code');if(!c)return;"
    "document.querySelectorAll('form[data-keep-key]').forEach(function(f){"
    "var i=document.createElement('input');"
    "i.type='hidden';i.name='code';i.value=c;f.appendChild(i);});})();"
)
_SCRIPT_HASH = base64.b64encode(hashlib.sha256(_KEEP_KEY_SCRIPT.encode()).digest()).decode()
_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    f"script-src 'sha256-{_SCRIPT_HASH}'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


async def _report(req: func.HttpRequest) -> Any:
    """One vault with ?vault=<name>; otherwise every configured vault (KEY_VAULT_URL and KEY_VAULT_URLS)."""
    import asyncio

    from shared.keyvault import get_secret_client
    from shared.secrets import settings_for
    from shared.status import collect_status, merge_reports, parse_filters
    from shared.validation import vault_param

    filters = parse_filters(req.params)
    vault = vault_param(req.params)
    base = settings_for(vault)
    urls = [base.vault_url] if vault is not None else list(base.vault_urls or (base.vault_url,))

    async def one(url: str) -> Any:
        settings = base.for_vault(url)
        return await collect_status(await get_secret_client(url), settings, filters)

    return merge_reports(list(await asyncio.gather(*(one(url) for url in urls))))


def _format(req: func.HttpRequest) -> str:
    raw = (req.params.get("format") or "html").strip().lower() or "html"
    if raw not in ("html", "json"):
        raise InvalidRequest("Query parameter format must be html or json.", field="format")
    return raw


@bp.function_name("status_page")
@bp.route(route="status", methods=["GET"])
@answers_json
async def status_page(req: func.HttpRequest) -> func.HttpResponse:
    """Every managed secret: days to expiry on a timeline, last outcome, pending/failed, cleanup due."""
    fmt = _format(req)
    report = await _report(req)
    if fmt == "json":
        return json_response(report.to_dict())
    return func.HttpResponse(
        render_html(report.to_dict()),
        status_code=200,
        mimetype="text/html",
        charset="utf-8",
        headers=_HEADERS,
    )


@bp.function_name("status_json")
@bp.route(route="status.json", methods=["GET"])
@answers_json
async def status_json(req: func.HttpRequest) -> func.HttpResponse:
    """The status page's data as JSON, for scripts."""
    return json_response((await _report(req)).to_dict())


# ----------------------------------------------------------------------------- HTML

_STYLE = """

:root{color-scheme:light;--fg:#1b1b1b;--muted:#4a4a4a;--bg:#fff;--line:#c8c8c8;--bad:#a4262c;--warn:#7a4a00;--ok:#0b6a0b;--info:#004e8c}
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);
background:var(--bg);margin:0;padding:1.25rem}
h1{font-size:1.4rem;margin:0 0 .25rem}h2{font-size:1.1rem;margin:1.5rem 0 .5rem}
p.meta{color:var(--muted);margin:0 0 1rem}a{color:var(--info)}
.totals{display:flex;flex-wrap:wrap;gap:.5rem;list-style:none;padding:0;margin:0 0 1rem}
.totals li{border:1px solid var(--line);border-radius:6px;padding:.4rem .7rem}
.totals b{font-size:1.15rem}
form{display:flex;flex-wrap:wrap;gap:.75rem;align-items:flex-end;border:1px solid var(--line);
border-radius:6px;padding:.75rem;margin:0 0 1rem}
form div{display:flex;flex-direction:column}label{font-weight:600;font-size:.85rem}
input,select,button{font:inherit;padding:.3rem .4rem;border:1px solid #767676;border-radius:4px;
color:var(--fg);background:#fff}
button{background:#004e8c;color:#fff;border-color:#004e8c;cursor:pointer}
:focus-visible{outline:3px solid #004e8c;outline-offset:2px}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;vertical-align:top;padding:.45rem .5rem;border-bottom:1px solid var(--line)}
th{font-size:.85rem;background:#f3f3f3}td.num{font-variant-numeric:tabular-nums;white-space:nowrap}
.badge{display:inline-block;border-radius:4px;padding:0 .35rem;font-size:.85rem;font-weight:600;
border:1px solid}
.s-UpToDate{color:var(--ok)}.s-Due,.s-Disabled{color:var(--warn)}
.s-Expired,.s-Error,.s-Failed{color:var(--bad)}.s-PendingRecovery{color:var(--info)}
.s-Unmanaged{color:var(--muted)}meter{width:9rem;height:1rem}
.timeline{display:flex;gap:2px;margin:.25rem 0 1rem;max-width:48rem}
.timeline div{flex:1;border:1px solid var(--line);padding:.3rem;text-align:center}
.timeline .w-expired{border-color:var(--bad)}.timeline .w-0-7d{border-color:var(--bad)}
.timeline .w-7-30d{border-color:var(--warn)}.small{font-size:.85rem;color:var(--muted)}
.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}
"""

_WINDOW_LABELS = {
    "expired": "Expired",
    "0-7d": "0–7 days",
    "7-30d": "7–30 days",
    "30-90d": "30–90 days",
    "90d+": "over 90 days",
    "none": "no expiry",
}
_TIMELINE_DAYS = 90


def _days(days: float) -> str:
    return f"{days:g} day" + ("" if days == 1 else "s")


def _when(moment: Any) -> str:
    """2026-12-01T18:34:31Z → 2026-12-01 18:34 UTC (readable; the JSON keeps RFC 3339)."""
    text = str(moment or "")
    return f"{text[:10]} {text[11:16]} UTC" if len(text) >= 16 and text[10] == "T" else text


_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#x27;"})


def _e(value: Any) -> str:
    """html.escape(quote=True) without importing `html` (its entity tables cost milliseconds at cold start)."""
    return ("" if value is None else str(value)).translate(_ESCAPES)


def _select(name: str, label: str, options: list[tuple[str, str]], current: str | None) -> str:
    items = "".join(
        f'<option value="{_e(v)}"{" selected" if (current or "") == v else ""}>{_e(text)}</option>'
        for v, text in options
    )
    return (
        f'<div><label for="f-{name}">{_e(label)}</label>'
        f'<select id="f-{name}" name="{name}">{items}</select></div>'
    )


def _filters_form(filters: dict[str, Any]) -> str:
    from shared.status import STATES, STATUSES

    status = _select("status", "Status", [("", "any"), *((s, s) for s in STATUSES)], filters.get("status"))
    state = _select("state", "Show", [(s, s) for s in STATES], filters.get("state"))
    scope = _select(
        "scope",
        "Secrets",
        [("managed", "managed (rotation tag)"), ("all", "all under the prefix")],
        filters.get("scope"),
    )
    within = filters.get("within")
    return (
        '<form method="get" data-keep-key aria-label="Filters">'
        f"{status}{state}{scope}"
        '<div><label for="f-within">Expires within (days)</label>'
        '<input id="f-within" name="within" type="number" min="0" max="3650" step="any" '
        f'value="{_e(within if within is not None else "")}"></div>'
        '<div><label for="f-q">Name contains</label>'
        '<input id="f-q" name="q" type="text" maxlength="127" pattern="[0-9A-Za-z-]*" '
        f'value="{_e(filters.get("q"))}"></div>'
        '<div><button type="submit">Apply filters</button></div></form>'
    )


def _timeline(totals: dict[str, Any]) -> str:
    windows = totals.get("windows", {})
    cells = "".join(
        f'<div role="listitem" class="w-{_e(w)}"><b>{_e(windows.get(w, 0))}</b><br>'
        f'<span class="small">{_e(label)}</span></div>'
        for w, label in _WINDOW_LABELS.items()
    )
    return (
        '<h2 id="timeline">Managed secrets by days to expiry</h2>'
        f'<div class="timeline" role="list" aria-labelledby="timeline">{cells}</div>'
    )


def _expiry_cell(row: dict[str, Any]) -> str:
    days = row.get("daysToExpiry")
    if days is None:
        return '<td class="num">no expiry</td>'
    shown = max(0.0, min(float(days), _TIMELINE_DAYS))
    text = f"expired {_days(abs(days))} ago" if days <= 0 else _days(days)
    return (
        f'<td class="num"><meter min="0" max="{_TIMELINE_DAYS}" low="7" high="30" optimum="{_TIMELINE_DAYS}" '
        f'value="{shown:g}" aria-label="{_e(row["name"])}: {_e(text)} to expiry">{_e(text)}</meter> '
        f'{_e(text)}<br><span class="small">{_e(_when(row.get("expiresOn")))}</span></td>'
    )


def _row(row: dict[str, Any], several_vaults: bool = False) -> str:
    status = row["status"]
    flags = []
    if row.get("pending"):
        flags.append('<span class="badge s-PendingRecovery">pending</span>')
    if row.get("failed"):
        flags.append('<span class="badge s-Failed">failed</span>')
    last = row.get("lastOutcome")
    last_text = (
        f"{_e(last)} <span class=small>{_e(_when(row.get('lastOutcomeOn')))}</span>"
        if last
        else (
            f"Rotated <span class=small>{_e(_when(row.get('lastRotatedOn')))}</span>"
            if row.get("lastRotatedOn")
            else "—"
        )
    )
    if row.get("lastError"):
        last_text += f'<br><span class="s-Failed">{_e(row["lastError"])}</span>'
    cleanup = "<br>".join(_e(c) for c in row.get("cleanupDue", [])) or "—"
    vault = f" · vault {_e(row.get('vault'))}" if several_vaults else ""
    return (
        "<tr>"
        f'<th scope="row">{_e(row["name"])}<br>'
        f'<span class="small">{_e(row.get("rotationType") or "")}'
        f"{vault}</span></th>"
        f'<td><span class="badge s-{_e(status)}">{_e(status)}</span> {" ".join(flags)}<br>'
        f'<span class="small">{_e(row.get("reason"))}</span></td>'
        f"{_expiry_cell(row)}"
        f'<td class="num">{_e(_when(row.get("dueOn")) or "—")}</td>'
        f"<td>{last_text}</td>"
        f"<td>{cleanup}</td>"
        "</tr>"
    )


def render_html(report: dict[str, Any]) -> str:
    totals = report["totals"]
    facts = [
        ("managed", totals.get("managed", 0)),
        ("need attention", totals.get("attention", 0)),
        ("pending", totals.get("pending", 0)),
        ("failed", totals.get("failed", 0)),
        ("cleanup due", totals.get("cleanupDue", 0)),
    ]
    summary = "".join(f"<li><b>{_e(v)}</b> {_e(k)}</li>" for k, v in facts)
    several = "," in str(report["vault"])
    rows = "".join(_row(r, several) for r in report["secrets"])
    if not rows:
        rows = '<tr><td colspan="6">No secret matches these filters.</td></tr>'
    incomplete = (
        "" if report.get("listingComplete", True) else "<p><strong>The listing was incomplete.</strong></p>"
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1"><link rel="icon" href="data:,">'
        f"<title>Key Vault secrets status — {_e(report['vault'])}</title><style>{_STYLE}</style></head><body>"
        f"<header><h1>Key Vault secrets status: {_e(report['vault'])}</h1>"
        f'<p class="meta">Generated {_e(_when(report["generatedAt"]))} from the vault\'s listed properties '
        "(never a value). "
        'The same data as JSON: <a href="status.json">status.json</a> (add your key).</p></header>'
        f'<main><ul class="totals" aria-label="Totals">{summary}</ul>{_timeline(totals)}'
        f"<h2>Filters</h2>{_filters_form(report['filters'])}{incomplete}"
        f'<h2 id="secrets">Secrets ({_e(totals.get("shown", 0))} shown of {_e(totals.get("listed", 0))})</h2>'
        '<table aria-labelledby="secrets"><thead><tr><th scope="col">Secret</th><th scope="col">Status</th>'
        '<th scope="col">Expiry (timeline: 0–90 days)</th><th scope="col">Rotation due</th>'
        '<th scope="col">Last outcome</th><th scope="col">Cleanup due</th></tr></thead>'
        f"<tbody>{rows}</tbody></table></main>"
        f"<script>{_KEEP_KEY_SCRIPT}</script></body></html>"
    )


# ------------------------------------------------------------------------- OpenAPI (blueprints/openapi.py)


def openapi_paths(errors: dict[str, Any]) -> dict[str, Any]:
    """The two status operations for the OpenAPI document; `errors` are the document's error responses."""
    from shared.status import MAX_WITHIN_DAYS, SCOPES, STATES, STATUSES
    from shared.telemetry import WINDOWS

    def query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
        return {"name": name, "in": "query", "schema": schema, "description": description}

    params = [
        query("status", {"type": "string", "enum": ["", *STATUSES]}, "Only secrets with this status."),
        query(
            "state", {"type": "string", "enum": ["", *STATES]}, "attention, pending, failed or cleanup due."
        ),
        query(
            "scope", {"type": "string", "enum": ["", *SCOPES]}, "managed (default) or all under the prefix."
        ),
        query(
            "within",
            {
                "anyOf": [
                    {"type": "number", "minimum": 0, "maximum": MAX_WITHIN_DAYS},
                    {"type": "string", "enum": [""]},
                ]
            },
            "Only secrets expiring within this many days (empty, as the page's form sends it: no limit).",
        ),
        query("q", {"type": "string", "pattern": "^[0-9a-zA-Z-]{0,127}$"}, "Part of the secret name."),
        query(
            "vault",
            {"type": "string", "pattern": "^((https://)?[0-9a-zA-Z.:-]{1,300}/?)?$"},
            "One configured vault (name or URL); absent or empty: every configured vault.",
        ),
    ]
    moment = {"type": ["string", "null"], "format": "date-time"}
    row = {
        "type": "object",
        "required": ["name", "managed", "status", "reason", "daysToExpiry", "window", "pending", "failed"],
        "properties": {
            "name": {"type": "string"},
            "vault": {"type": "string"},
            "managed": {"type": "boolean"},
            "status": {"type": "string", "enum": list(STATUSES)},
            "reason": {"type": "string"},
            "enabled": {"type": "boolean"},
            "version": {"type": ["string", "null"]},
            "rotationType": {"type": ["string", "null"]},
            "expiresOn": moment,
            "daysToExpiry": {"type": ["number", "null"]},
            "dueOn": moment,
            "window": {"type": "string", "enum": list(WINDOWS)},
            "lastRotatedOn": moment,
            "lastOperationId": {"type": ["string", "null"]},
            "lastOutcome": {"type": ["string", "null"]},
            "lastOutcomeOn": moment,
            "lastError": {"type": ["string", "null"]},
            "pending": {"type": "boolean"},
            "failed": {"type": "boolean"},
            "attention": {"type": "boolean"},
            "cleanupDue": {"type": "array", "items": {"type": "string"}},
        },
    }
    report = {
        "type": "object",
        "description": "Every managed secret's state, from listed properties only (never a value).",
        "required": ["vault", "generatedAt", "filters", "totals", "listingComplete", "secrets", "lastRuns"],
        "properties": {
            "vault": {"type": "string"},
            "generatedAt": {"type": "string", "format": "date-time"},
            "filters": {"type": "object"},
            "totals": {"type": "object"},
            "listingComplete": {"type": "boolean"},
            "secrets": {"type": "array", "items": row},
            "lastRuns": {"type": "object"},
        },
    }
    json_ok = {"description": "The status.", "content": {"application/json": {"schema": report}}}
    html_ok = {
        "description": "The status page (HTML; with ?format=json the same data as JSON).",
        "content": {"text/html": {"schema": {"type": "string"}}, "application/json": {"schema": report}},
    }
    fmt = query("format", {"type": "string", "enum": ["", "html", "json"]}, "html (default) or json.")
    return {
        "/api/status": {
            "get": {
                "operationId": "statusPage",
                "summary": "Status page: every managed secret's days to expiry, last outcome, pending, "
                "failed, cleanup due; filters as query parameters.",
                "parameters": [*params, fmt],
                "responses": {"200": html_ok, **errors},
            }
        },
        "/api/status.json": {
            "get": {
                "operationId": "statusJson",
                "summary": "The status page's data as JSON.",
                "parameters": params,
                "responses": {"200": json_ok, **errors},
            }
        },
    }
