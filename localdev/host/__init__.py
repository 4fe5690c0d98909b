"""A small local Functions host (never deployed), in the spirit of Google's functions-framework.

registry (read the FunctionApp like the worker) → app (aiohttp: HTTP triggers, admin API, Event Grid
webhook) → server (start/stop on the caller's loop); timers and keys beside them.
"""

from .registry import FunctionLoadError, FunctionRegistry, load_registry
from .server import HostConfig, RunningHost, start_host

__all__ = [
    "FunctionLoadError",
    "FunctionRegistry",
    "HostConfig",
    "RunningHost",
    "load_registry",
    "start_host",
]
