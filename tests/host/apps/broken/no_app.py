"""Fixture: no function app at all."""

import azure.functions as func

bp = func.Blueprint()
