"""Fixture: a timer whose schedule names an app setting nobody set, beside a function that works.

Azure puts only `orphan` in error; `alive` is served.
"""

import azure.functions as func

app = func.FunctionApp()


@app.timer_trigger(schedule="%NOT_A_SETTING_ANYWHERE%", arg_name="timer")
def orphan(timer: func.TimerRequest) -> None:
    pass


@app.route(route="alive", auth_level=func.AuthLevel.ANONYMOUS)
def alive(req: func.HttpRequest) -> str:
    return "yes"
