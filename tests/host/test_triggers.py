"""Timers (schedule, no overlap, retry, disabled, past due), the admin API and the Event Grid webhook."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime, timedelta

import pytest

from ..fixtures.eventually import eventually
from .conftest import app_module
from .fakeclock import FakeClock

KV_EVENT = {  # Key Vault's documented sample, Event Grid schema
    "id": "00eccf70-95a7-4e7c-8299-2eb17ee9ad64",
    "topic": "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv",
    "subject": "newsecret",
    "eventType": "Microsoft.KeyVault.SecretNewVersionCreated",
    "eventTime": "2019-07-25T01:08:33.1036736Z",
    "data": {
        "Id": "https://kv.vault.azure.net/secrets/newsecret/ee059b2bb5bc48398a53b168c6cdcb10",
        "VaultName": "kv",
        "ObjectType": "Secret",
        "ObjectName": "newsecret",
        "Version": "ee059b2bb5bc48398a53b168c6cdcb10",
        "NBF": 1559081980,
        "EXP": 1559595221,
    },
    "dataVersion": "1",
    "metadataVersion": "1",
}
KV_CLOUD_EVENT = {  # the same event in the CloudEvents 1.0 schema
    "id": "a1b2c3",
    "source": "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv",
    "specversion": "1.0",
    "type": "Microsoft.KeyVault.SecretNearExpiry",
    "subject": "oldsecret",
    "time": "2019-07-25T01:08:33.1036736Z",
    "data": {"Id": "https://kv.vault.azure.net/secrets/oldsecret/1", "ObjectName": "oldsecret"},
}
VALIDATION_EVENT = [
    {
        "id": "2d1781af-3a4c-4d7c-bd0c-e34b19da4e66",
        "topic": "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv",
        "subject": "",
        "data": {
            "validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6",
            "validationUrl": "https://rp-eastus2.eventgrid.azure.net:553/eventsubscriptions/sub/validate?id=x",
        },
        "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
        "eventTime": "2018-01-25T22:12:19.4556811Z",
        "metadataVersion": "1",
        "dataVersion": "1",
    }
]


@pytest.fixture
async def host(host_factory):
    return await host_factory("triggers")


def master(running) -> dict[str, str]:
    return {"x-functions-key": running.keys.masterKey}


def eventgrid_url(running, name: str) -> str:
    return f"{running.base_url}/runtime/webhooks/eventgrid?functionName={name}"


# -- timers ---------------------------------------------------------------------------------------------
async def test_fast_schedule_fires_and_disabled_timer_does_not(host_factory) -> None:
    clock = FakeClock(datetime(2026, 12, 2, 18, 0, 0, tzinfo=UTC))
    running = await host_factory("triggers", clock=clock)
    calls = app_module(running).CALLS

    def tick() -> bool:
        clock.advance(1)
        return len(calls["fast"]) >= 2

    await eventually(tick)
    assert calls["fast"][0][1] is False  # not past due
    assert calls["disabled"] == []


async def test_runs_of_one_timer_never_overlap(host_factory, clean_environ) -> None:
    """A run that outlasts its occurrences skips them; the next run starts after it ends (fake clock)."""
    clean_environ["SLOW_SCHEDULE"] = "* * * * * *"  # real environment wins over the settings file
    clock = FakeClock(datetime(2026, 12, 2, 18, 0, 0, tzinfo=UTC))
    running = await host_factory("triggers", clock=clock)
    module = app_module(running)
    calls = module.CALLS

    def tick_until(expected: list[str]):
        def check() -> bool:
            clock.advance(1)
            return calls["slow"] == expected

        return check

    await eventually(tick_until(["start"]))
    for _ in range(5):  # five occurrences pass while the first run is still going
        clock.advance(1)
        await asyncio.sleep(0.01)
    assert calls["slow"] == ["start"]
    module.SLOW_GATE.set()
    await eventually(lambda: calls["slow"] == ["start", "end"])
    await eventually(tick_until(["start", "end", "start"]))
    module.SLOW_GATE.set()
    await eventually(lambda: calls["slow"] == ["start", "end", "start", "end"])


async def test_retry_policy_retries_a_failing_timer(host, http) -> None:
    async with http.post(
        f"{host.base_url}/admin/functions/flaky_timer", json={"input": ""}, headers=master(host)
    ) as resp:
        assert resp.status == 202
    calls = app_module(host).CALLS
    await eventually(lambda: len(calls["flaky"]) >= 3)
    await asyncio.sleep(0.1)
    assert [(c[0], c[1]) for c in calls["flaky"]] == [(0, 2), (1, 2), (2, 2)]
    assert len({c[2] for c in calls["flaky"]}) == 1  # one invocation, retried


async def test_missed_occurrence_runs_past_due_at_startup(host_factory, tmp_path) -> None:
    state = tmp_path / "state"
    state.mkdir(parents=True)
    earlier = datetime.now(UTC) - timedelta(days=2)
    (state / "timers.json").write_text(
        json.dumps(
            {
                "manual_timer": {
                    "Last": (earlier - timedelta(days=365)).isoformat(),
                    "Next": earlier.isoformat(),
                    "LastUpdated": earlier.isoformat(),
                }
            }
        )
    )
    running = await host_factory("triggers")
    calls = app_module(running).CALLS
    await eventually(lambda: calls["manual"] == ["TimerRequest:True"])
    status = json.loads((state / "timers.json").read_text())["manual_timer"]
    assert datetime.fromisoformat(status["Next"]) > datetime.now(UTC)


async def test_missing_schedule_setting_puts_that_timer_in_error(host_factory, http, caplog) -> None:
    caplog.set_level(logging.ERROR, logger="localdev.host")
    running = await host_factory("broken", script="missing_setting.py")
    assert "function orphan is in error and will not run" in caplog.text
    assert "NOT_A_SETTING_ANYWHERE" in caplog.text
    async with http.get(f"{running.base_url}/api/alive") as resp:
        assert await resp.text() == "yes"
    async with http.get(f"{running.base_url}/admin/functions/orphan", headers=master(running)) as resp:
        described = await resp.json()
    assert "NOT_A_SETTING_ANYWHERE" in described["error"] and described["nextRun"] is None
    async with http.post(
        f"{running.base_url}/admin/functions/orphan", json={"input": ""}, headers=master(running)
    ) as resp:
        assert resp.status == 400
        assert "is in error" in (await resp.json())["error"]


@pytest.mark.parametrize(
    "script,message",
    [
        ("two_apps.py", "More than one FunctionApp or other top level function app instances are defined."),
        ("no_app.py", "Could not find top level function app instances in no_app.py."),
        (
            "bad_params.py",
            "the following parameters are declared in Python but not in the function definition "
            "(function.json or function decorators):  {'request'}",
        ),
    ],
)
async def test_load_errors_are_worded_like_the_worker(host_factory, script: str, message: str) -> None:
    from localdev.host import FunctionLoadError

    with pytest.raises(FunctionLoadError) as info:
        await host_factory("broken", script=script)
    assert message in str(info.value)


# -- admin API ------------------------------------------------------------------------------------------
async def test_admin_lists_functions(host, http) -> None:
    async with http.get(f"{host.base_url}/admin/functions", headers=master(host)) as resp:
        assert resp.status == 200
        listed = {f["name"]: f for f in await resp.json()}
    assert listed["ping"]["trigger"] == "httpTrigger"
    assert listed["ping"]["route"] == "ping" and listed["ping"]["authLevel"] == "anonymous"
    assert listed["fast_timer"]["schedule"] == "%FAST_SCHEDULE%"
    assert listed["fast_timer"]["resolvedSchedule"] == "* * * * * *"
    assert listed["flaky_timer"]["retryPolicy"]["strategy"] == "fixed_delay"
    assert listed["disabled_timer"]["isDisabled"] is True
    assert listed["on_event"]["trigger"] == "eventGridTrigger"


@pytest.mark.parametrize(
    "headers,body,name,expected",
    [
        ("none", {"input": ""}, "manual_timer", 401),
        ("function", {"input": ""}, "manual_timer", 401),
        ("master", None, "manual_timer", 400),
        ("master", {"input": ""}, "no_such_function", 404),
        ("master", {"input": ""}, "ping", 400),
        ("master", {"input": ""}, "manual_timer", 202),
        ("master", {"input": ""}, "MANUAL_TIMER", 202),
    ],
)
async def test_admin_invoke_rules(host, http, headers, body, name, expected) -> None:
    key = {"none": {}, "function": {"x-functions-key": host.keys.defaultFunctionKey}, "master": master(host)}
    data = b"null" if body is None else json.dumps(body).encode()
    async with http.post(
        f"{host.base_url}/admin/functions/{name}",
        data=data,
        headers=key[headers] | {"Content-Type": "application/json"},
    ) as resp:
        assert resp.status == expected
    if expected == 202:
        calls = app_module(host).CALLS
        await eventually(lambda: calls["manual"] == ["TimerRequest:False"])


async def test_admin_invoke_of_event_grid_function(host, http) -> None:
    async with http.post(
        f"{host.base_url}/admin/functions/on_event",
        json={"input": json.dumps(KV_EVENT)},
        headers=master(host),
    ) as resp:
        assert resp.status == 202
    calls = app_module(host).CALLS
    await eventually(lambda: len(calls["events"]) == 1)
    assert calls["events"][0][:3] == (
        "EventGridEvent",
        KV_EVENT["id"],
        "Microsoft.KeyVault.SecretNewVersionCreated",
    )


async def test_admin_invoke_of_event_grid_function_checks_the_event(host, http) -> None:
    for bad in ("not json", "[1, 2]", 5):
        async with http.post(
            f"{host.base_url}/admin/functions/on_event", json={"input": bad}, headers=master(host)
        ) as resp:
            assert resp.status == 400
    async with http.post(
        f"{host.base_url}/admin/functions/on_event", json={"input": KV_CLOUD_EVENT}, headers=master(host)
    ) as resp:
        assert resp.status == 202
    calls = app_module(host).CALLS
    await eventually(lambda: len(calls["events"]) == 1)
    assert calls["events"][0][:2] == ("CloudEvent", KV_CLOUD_EVENT["id"])


# -- Event Grid webhook ---------------------------------------------------------------------------------
async def test_subscription_validation_handshake(host, http) -> None:
    async with http.post(
        eventgrid_url(host, "on_event"),
        json=VALIDATION_EVENT,
        headers=master(host) | {"aeg-event-type": "SubscriptionValidation"},
    ) as resp:
        assert resp.status == 200
        assert await resp.json() == {"validationResponse": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}
    assert app_module(host).CALLS["events"] == []


async def test_cloudevents_options_handshake(host, http) -> None:
    async with http.options(
        eventgrid_url(host, "on_event"), headers={"WebHook-Request-Origin": "eventgrid.azure.net"}
    ) as resp:
        assert resp.status == 200
        assert resp.headers["WebHook-Allowed-Origin"] == "eventgrid.azure.net"


async def test_event_grid_schema_array_is_one_invocation_per_event(host, http) -> None:
    second = dict(KV_EVENT, id="second", subject="othersecret")
    async with http.post(
        eventgrid_url(host, "on_event"),
        json=[KV_EVENT, second],
        headers={"aeg-event-type": "Notification", "x-functions-key": host.keys.eventGridSystemKey},
    ) as resp:
        assert resp.status == 202
    events = sorted(app_module(host).CALLS["events"], key=lambda e: e[1])
    assert [(e[0], e[1], e[3]) for e in events] == [
        ("EventGridEvent", KV_EVENT["id"], "newsecret"),
        ("EventGridEvent", "second", "othersecret"),
    ]
    assert events[0][4] == KV_EVENT["topic"]
    assert events[0][5] == KV_EVENT["data"]


async def test_cloudevent_single_object_and_case_insensitive_path(host, http) -> None:
    key = host.keys.eventGridSystemKey
    url = f"{host.base_url}/runtime/webhooks/EventGrid?functionName=on_event&code={key}"
    async with http.post(
        url,
        data=json.dumps(KV_CLOUD_EVENT),
        headers={"aeg-event-type": "Notification", "Content-Type": "application/cloudevents+json"},
    ) as resp:
        assert resp.status == 202
    (event,) = app_module(host).CALLS["events"]
    assert event[:5] == (
        "CloudEvent",
        "a1b2c3",
        "Microsoft.KeyVault.SecretNearExpiry",
        "oldsecret",
        KV_CLOUD_EVENT["source"],
    )


@pytest.mark.parametrize(
    "key_kind,expected", [("none", 401), ("function", 401), ("system", 202), ("master", 202)]
)
async def test_webhook_auth(host, http, key_kind: str, expected: int) -> None:
    keys = {
        "none": None,
        "function": host.keys.defaultFunctionKey,
        "system": host.keys.eventGridSystemKey,
        "master": host.keys.masterKey,
    }
    headers = {"aeg-event-type": "Notification"}
    if keys[key_kind]:
        headers["x-functions-key"] = keys[key_kind]
    async with http.post(eventgrid_url(host, "on_event"), json=[KV_EVENT], headers=headers) as resp:
        assert resp.status == expected


async def test_webhook_errors(host, http, caplog) -> None:
    caplog.set_level(logging.INFO, logger="localdev.host")
    headers = master(host) | {"aeg-event-type": "Notification"}
    async with http.post(eventgrid_url(host, "nope"), json=[KV_EVENT], headers=headers) as resp:
        assert resp.status == 404
        assert await resp.text() == "cannot find function: 'nope'"
    async with http.post(eventgrid_url(host, "ping"), json=[KV_EVENT], headers=headers) as resp:
        assert resp.status == 404
    async with http.post(eventgrid_url(host, "on_event"), json=[KV_EVENT], headers=master(host)) as resp:
        assert resp.status == 400  # no aeg-event-type
    async with http.post(eventgrid_url(host, "on_event"), data=b"{not json", headers=headers) as resp:
        assert resp.status == 400
    async with http.post(eventgrid_url(host, "failing_event"), json=[KV_EVENT], headers=headers) as resp:
        assert resp.status == 500
        text = await resp.text()
    assert "must not leak" not in text and "ValueError" not in text
    assert json.loads(text)["invocationId"] in caplog.text
    assert "must not leak" not in caplog.text


async def test_no_auth_opens_admin_and_webhook(host_factory, http) -> None:
    running = await host_factory("triggers", auth=False)
    async with http.post(
        eventgrid_url(running, "on_event"), json=[KV_EVENT], headers={"aeg-event-type": "Notification"}
    ) as resp:
        assert resp.status == 202
    async with http.post(f"{running.base_url}/admin/functions/manual_timer", json={"input": ""}) as resp:
        assert resp.status == 202


async def test_an_unreadable_retry_policy_is_a_startup_error_not_a_failed_run(host_factory) -> None:
    from localdev.host import FunctionLoadError

    with pytest.raises(FunctionLoadError, match=r"hourly.*'soon'.*hh:mm:ss"):
        await host_factory("broken", script="bad_retry.py")
