"""The npm dev tools install and run on the Node.js that package.json's `engines` names (20): no package in
the lock asks for a newer one (the 4.12 Key Vault SDK, identity 4.14 and Azurite 3.37 needed 22: EBADENGINE)."""

from __future__ import annotations

import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _major(spec: str) -> int | None:
    found = re.match(r"\s*>=?\s*v?(\d+)", spec)
    return int(found.group(1)) if found else None


def test_every_locked_package_runs_on_the_node_package_json_names() -> None:
    wanted = _major(json.loads((REPO / "package.json").read_text())["engines"]["node"])
    assert wanted == 20
    lock = json.loads((REPO / "package-lock.json").read_text())
    too_new = {
        path: info["engines"]["node"]
        for path, info in lock["packages"].items()
        if isinstance(info.get("engines"), dict)
        and isinstance(info["engines"].get("node"), str)
        and (_major(info["engines"]["node"]) or 0) > wanted
    }
    assert too_new == {}
    assert lock["packages"][""]["engines"] == {"node": ">=20"}  # the lock was made from this package.json
