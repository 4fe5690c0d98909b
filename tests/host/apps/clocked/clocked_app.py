"""Fixture app for the fake-clock tests: an hourly timer, one that returns a value, a jittered backoff."""

import azure.functions as func

app = func.FunctionApp()

CALLS: dict[str, list] = {"hourly": [], "returns": [], "backoff": []}


@app.timer_trigger(schedule="0 %HOURLY_MINUTE% * * * *", arg_name="timer")
def hourly(timer: func.TimerRequest) -> None:
    CALLS["hourly"].append(timer.past_due)


@app.timer_trigger(schedule="0 0 0 1 1 *", arg_name="timer")
@app.retry(strategy="fixed_delay", max_retry_count="1", delay_interval="00:00:05")
def returns(timer: func.TimerRequest, context: func.Context):
    CALLS["returns"].append(context.retry_context.retry_count)
    return "a value Azure refuses"


@app.timer_trigger(schedule="0 0 0 1 1 *", arg_name="timer")
@app.retry(
    strategy="exponential_backoff",
    max_retry_count="4",
    minimum_interval="00:00:30",
    maximum_interval="00:02:00",
)
def backoff(timer: func.TimerRequest, context: func.Context) -> None:
    CALLS["backoff"].append(context.retry_context.retry_count)
    raise ConnectionError("transient")
