"""Fixture: a timer whose schedule names an app setting nobody set."""

import azure.functions as func

app = func.FunctionApp()


@app.timer_trigger(schedule="%NOT_A_SETTING_ANYWHERE%", arg_name="timer")
def orphan(timer: func.TimerRequest) -> None:
    pass
