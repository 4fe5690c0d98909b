"""Fixture: an HTTP trigger parameter annotated int (the worker checks annotations against the binding)."""

import azure.functions as func

app = func.FunctionApp()


@app.route(route="count", auth_level=func.AuthLevel.ANONYMOUS)
def count(req: int) -> func.HttpResponse:
    return func.HttpResponse("never served")
