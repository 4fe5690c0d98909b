"""Queue triggers of the fan-out (SWEEP_MODE=queue): parse → shared.fanout → log. No rules here.

Each function scales on its own in Azure (Flex: one scale group per queue function). Queue names are app
settings (FANOUT_*_QUEUE); bodies are base64 on the wire (host.json messageEncoding, the default).
"""

from __future__ import annotations

import azure.functions as func

from shared import fanout

bp = func.Blueprint()
CONNECTION = "AzureWebJobsStorage"


@bp.function_name("fanout_scan")
@bp.queue_trigger(arg_name="msg", queue_name="%FANOUT_SCAN_QUEUE%", connection=CONNECTION)
async def fanout_scan(msg: func.QueueMessage) -> None:
    await fanout.handle("scan", msg.get_body())


@bp.function_name("fanout_rotate")
@bp.queue_trigger(arg_name="msg", queue_name="%FANOUT_ROTATE_QUEUE%", connection=CONNECTION)
async def fanout_rotate(msg: func.QueueMessage) -> None:
    await fanout.handle("rotate", msg.get_body())


@bp.function_name("fanout_cleanup")
@bp.queue_trigger(arg_name="msg", queue_name="%FANOUT_CLEANUP_QUEUE%", connection=CONNECTION)
async def fanout_cleanup(msg: func.QueueMessage) -> None:
    await fanout.handle("cleanup", msg.get_body())


@bp.function_name("fanout_events")
@bp.queue_trigger(arg_name="msg", queue_name="%FANOUT_EVENTS_QUEUE%", connection=CONNECTION)
async def fanout_events(msg: func.QueueMessage) -> None:
    await fanout.handle("event", msg.get_body())


@bp.function_name("fanout_rotate_poison")
@bp.queue_trigger(arg_name="msg", queue_name="%FANOUT_ROTATE_QUEUE%-poison", connection=CONNECTION)
async def fanout_rotate_poison(msg: func.QueueMessage) -> None:
    await fanout.poisoned("rotate", msg.get_body(), msg.dequeue_count)


@bp.function_name("fanout_scan_poison")
@bp.queue_trigger(arg_name="msg", queue_name="%FANOUT_SCAN_QUEUE%-poison", connection=CONNECTION)
async def fanout_scan_poison(msg: func.QueueMessage) -> None:
    await fanout.poisoned("scan", msg.get_body(), msg.dequeue_count)


@bp.function_name("fanout_cleanup_poison")
@bp.queue_trigger(arg_name="msg", queue_name="%FANOUT_CLEANUP_QUEUE%-poison", connection=CONNECTION)
async def fanout_cleanup_poison(msg: func.QueueMessage) -> None:
    await fanout.poisoned("cleanup", msg.get_body(), msg.dequeue_count)


@bp.function_name("fanout_events_poison")
@bp.queue_trigger(arg_name="msg", queue_name="%FANOUT_EVENTS_QUEUE%-poison", connection=CONNECTION)
async def fanout_events_poison(msg: func.QueueMessage) -> None:
    await fanout.poisoned("events", msg.get_body(), msg.dequeue_count)
