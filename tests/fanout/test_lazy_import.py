"""The fan-out's modules are not on the cold start's path: `import function_app` (what the worker indexes)
loads none of them (the blueprints call into the package only in SWEEP_MODE=queue), and the package's
names load on first use."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROBE = """
import json, sys
import function_app
cold = sorted(m for m in sys.modules if m.startswith("shared.fanout."))
from shared.fanout import RotateMessage, default_fanout
warm = sorted(m for m in sys.modules if m.startswith("shared.fanout."))
print(json.dumps({"cold": cold, "warm": warm, "names": [RotateMessage.__name__, default_fanout.__name__]}))
"""


def test_import_function_app_loads_no_fanout_step_and_the_names_load_on_first_use() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["cold"] == []
    assert {"shared.fanout.messages", "shared.fanout.steps"} <= set(seen["warm"])
    assert seen["names"] == ["RotateMessage", "default_fanout"]


def test_an_unknown_name_is_an_attribute_error() -> None:
    import pytest

    from shared import fanout

    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = fanout.Nope  # type: ignore[attr-defined]
