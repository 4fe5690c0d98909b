"""Fixture app: timers (fast, slow, flaky with a retry policy, disabled) and Event Grid functions."""

import asyncio
import time

import azure.functions as func

app = func.FunctionApp()

# What ran, for the tests to read back (module state, like an app's own globals).
SLOW_GATE = asyncio.Event()  # the test opens it to let the running slow_timer finish
CALLS: dict[str, list] = {"fast": [], "slow": [], "flaky": [], "disabled": [], "events": [], "manual": []}


@app.route(route="ping", auth_level=func.AuthLevel.ANONYMOUS)
def ping(req: func.HttpRequest) -> str:
    return "pong"


@app.timer_trigger(schedule="%FAST_SCHEDULE%", arg_name="timer", run_on_startup=False)
def fast_timer(timer: func.TimerRequest) -> None:
    CALLS["fast"].append((time.monotonic(), timer.past_due))


@app.timer_trigger(schedule="%SLOW_SCHEDULE%", arg_name="timer")
async def slow_timer(timer: func.TimerRequest) -> None:
    """Runs until the test opens SLOW_GATE, however long its schedule's seconds: runs must never overlap."""
    CALLS["slow"].append("start")
    await SLOW_GATE.wait()
    SLOW_GATE.clear()
    CALLS["slow"].append("end")


@app.timer_trigger(schedule="0 0 0 1 1 *", arg_name="timer")
@app.retry(strategy="fixed_delay", max_retry_count="2", delay_interval="00:00:00")
def flaky_timer(timer: func.TimerRequest, context: func.Context) -> None:
    """Fails twice, then succeeds: the retry policy must carry it through."""
    CALLS["flaky"].append(
        (context.retry_context.retry_count, context.retry_context.max_retry_count, context.invocation_id)
    )
    if context.retry_context.retry_count < 2:
        raise ConnectionError("transient")


@app.timer_trigger(schedule="0 0 0 1 1 *", arg_name="timer")
def manual_timer(timer: func.TimerRequest) -> None:
    CALLS["manual"].append(type(timer).__name__ + f":{timer.past_due}")


@app.timer_trigger(schedule="* * * * * *", arg_name="timer")
def disabled_timer(timer: func.TimerRequest) -> None:
    CALLS["disabled"].append(time.monotonic())


@app.event_grid_trigger(arg_name="event")
def on_event(event) -> None:
    kind = type(event).__name__
    if kind == "CloudEvent":
        CALLS["events"].append((kind, event.id, event.type, event.subject, event.source, event.get_json()))
    else:
        CALLS["events"].append(
            (kind, event.id, event.event_type, event.subject, event.topic, event.get_json())
        )


@app.event_grid_trigger(arg_name="event")
async def failing_event(event: func.EventGridEvent) -> None:
    raise ValueError("event detail that must not leak")
