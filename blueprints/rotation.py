"""Rotation triggers: the hourly sweep, on-demand rotation, and the plan (a dry run of rotation + cleanup).

Thin adapters over shared.rotation and shared.cleanup; no rules here.
"""

from __future__ import annotations

import logging

import azure.functions as func

from shared import fanout, plan, secrets
from shared.rotation import RotationRequest, default_engine
from shared.settings import get_settings
from shared.sweeps import every_vault
from shared.validation import parse_flag, validate_name, vault_param

from .responses import answers_json, caller_of, json_response
from .timer_retry import TIMER_RETRY

bp = func.Blueprint()
_log = logging.getLogger(__name__)


@bp.function_name("scheduled_rotation")
@bp.retry(**TIMER_RETRY)
@bp.timer_trigger(arg_name="timer", schedule="%ROTATION_SCHEDULE%", run_on_startup=False, use_monitor=True)
async def scheduled_rotation(timer: func.TimerRequest) -> None:
    """Rotate every due secret within ROTATION_BUDGET_SECONDS; what is left waits for the next run."""
    if timer.past_due:
        _log.info("scheduled_rotation is running late (past due); the sweep catches up")
    if get_settings().sweep_mode == "queue":
        await fanout.start_sweeps("rotation")  # one scan message per vault; queue functions do the rest
        return
    await every_vault(lambda url: _sweep(url))


async def _sweep(vault_url: str) -> None:
    await (await default_engine(vault_url)).sweep()


@bp.function_name("rotate_secret")
@bp.route(route="secrets/{name}/rotate", methods=["POST"])
@answers_json
async def rotate_secret(req: func.HttpRequest) -> func.HttpResponse:
    """Rotate now, due or not (?dryRun=true: say what would happen). Concurrent calls share one rotation."""
    name = validate_name(req.route_params.get("name", ""))
    dry_run = parse_flag(req.params, "dryRun")
    engine = await default_engine(secrets.settings_for(vault_param(req.params)).vault_url)
    result = await engine.rotate(
        name, RotationRequest(trigger="http", force=True, dry_run=dry_run, caller=caller_of(req))
    )
    return json_response(result.to_dict())


@bp.function_name("rotation_plan")
@bp.route(route="rotation/plan", methods=["GET"])
@answers_json
async def rotation_plan(req: func.HttpRequest) -> func.HttpResponse:
    """What the next rotation and cleanup would do, per managed secret, and the last real runs' summaries."""
    vault = secrets.settings_for(vault_param(req.params)).vault_url
    return json_response(await plan.rotation_plan(vault))
