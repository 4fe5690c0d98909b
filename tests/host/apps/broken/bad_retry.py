"""Fixture: a retry policy the host cannot read (the interval is not hh:mm:ss)."""

import azure.functions as func

app = func.FunctionApp()


@app.retry(
    strategy="exponential_backoff", max_retry_count="2", minimum_interval="soon", maximum_interval="00:05:00"
)
@app.timer_trigger(arg_name="timer", schedule="0 0 * * * *")
def hourly(timer: func.TimerRequest) -> None:
    return None
