"""The project's local.settings.json.example supplies the timers' schedules (the host invents none)."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

from localdev.host.appsettings import read_local_settings
from localdev.host.ncrontab import NCrontab

REPO = Path(__file__).resolve().parents[2]


def test_example_settings_supply_production_sensible_schedules(tmp_path: Path) -> None:
    shutil.copy(REPO / "local.settings.json.example", tmp_path / "local.settings.json.example")
    values, _ = read_local_settings(tmp_path)
    for setting in ("ROTATION_SCHEDULE", "CLEANUP_SCHEDULE"):
        assert setting in values, f"local.settings.json.example must set {setting}"
        crontab = NCrontab.parse(values[setting])
        first = crontab.next_after(datetime.now(UTC))
        assert (crontab.next_after(first) - first).total_seconds() >= 60, (
            f"{setting} fires more than once a minute"
        )
