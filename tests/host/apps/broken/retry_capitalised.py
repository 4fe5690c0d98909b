"""Fixture: strategy "Exponential_Backoff" (the worker's retry strategy names are lower case)."""

import azure.functions as func

app = func.FunctionApp()


@app.retry(
    strategy="Exponential_Backoff",
    max_retry_count="3",
    minimum_interval="00:00:10",
    maximum_interval="00:05:00",
)
@app.timer_trigger(arg_name="timer", schedule="0 0 * * * *")
def hourly(timer: func.TimerRequest) -> None:
    return None
