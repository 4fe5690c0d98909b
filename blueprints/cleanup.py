"""Cleanup trigger: the daily sweep over superseded versions, expired secrets and soft-deleted ones."""

from __future__ import annotations

import logging

import azure.functions as func

from shared import fanout
from shared.cleanup import default_cleanup
from shared.settings import get_settings
from shared.sweeps import every_vault

from .timer_retry import TIMER_RETRY

bp = func.Blueprint()
_log = logging.getLogger(__name__)


@bp.function_name("scheduled_cleanup")
@bp.retry(**TIMER_RETRY)
@bp.timer_trigger(arg_name="timer", schedule="%CLEANUP_SCHEDULE%", run_on_startup=False, use_monitor=True)
async def scheduled_cleanup(timer: func.TimerRequest) -> None:
    if timer.past_due:
        _log.info("scheduled_cleanup is running late (past due); the sweep catches up")
    if get_settings().sweep_mode == "queue":
        await fanout.start_sweeps("cleanup")  # one scan message per vault; queue functions do the rest
        return
    await every_vault(lambda url: _sweep(url))


async def _sweep(vault_url: str) -> None:
    await (await default_cleanup(vault_url)).sweep()
