"""Fixture: `context: str` (the worker requires azure.functions.Context for the context parameter)."""

import azure.functions as func

app = func.FunctionApp()


@app.route(route="who", auth_level=func.AuthLevel.ANONYMOUS)
def who(req: func.HttpRequest, context: str) -> func.HttpResponse:
    return func.HttpResponse("never served")
