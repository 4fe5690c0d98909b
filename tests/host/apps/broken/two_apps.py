"""Fixture: two top-level function apps (the worker refuses this)."""

import azure.functions as func

first = func.FunctionApp()
second = func.FunctionApp()
