"""Fixture: an HTTP function annotated `-> None` (the worker checks the return annotation against $return)."""

import azure.functions as func

app = func.FunctionApp()


@app.route(route="nothing", auth_level=func.AuthLevel.ANONYMOUS)
def nothing(req: func.HttpRequest) -> None:
    return None
