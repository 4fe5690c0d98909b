"""Fixture: a fixed_delay retry without delay_interval (the worker cannot build its retry options)."""

import azure.functions as func

app = func.FunctionApp()


@app.retry(strategy="fixed_delay", max_retry_count="3")
@app.timer_trigger(arg_name="timer", schedule="0 0 * * * *")
def hourly(timer: func.TimerRequest) -> None:
    return None
