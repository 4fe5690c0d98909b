"""Fixture: maximum_interval "1.00:00:00" (a .NET TimeSpan with days; the worker reads %H:%M:%S only)."""

import azure.functions as func

app = func.FunctionApp()


@app.retry(
    strategy="exponential_backoff",
    max_retry_count="3",
    minimum_interval="00:00:10",
    maximum_interval="1.00:00:00",
)
@app.timer_trigger(arg_name="timer", schedule="0 0 * * * *")
def hourly(timer: func.TimerRequest) -> None:
    return None
