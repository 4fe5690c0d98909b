"""Fixture: the Python parameter is not the binding's name (the worker refuses to load it)."""

import azure.functions as func

app = func.FunctionApp()


@app.route(route="x")
def mismatch(request: func.HttpRequest) -> str:
    return "never"
