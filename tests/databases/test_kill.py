"""`kill -9` of a process that is rotating a real PostgreSQL user, right after the server took the new
password and before Key Vault promoted it (the one moment a single-user rotation can lose a credential):
the next run in another process resumes from the stored pending version and the vault's value logs in."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from shared.rotation.engine import RotationRequest
from tests.fixtures.databases import PgAdmin, current_value, strong_password, unique
from tests.fixtures.rotation import versions_of

pytestmark = pytest.mark.usefixtures("rotation_env")
REPO = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    sys.path.insert(0, {repo!r})
    from shared.keyvault import get_secret_client
    from shared.locks import SecretLocks
    from shared.rotation.engine import RotationEngine, RotationRequest
    from shared.settings import get_settings
    from tests.fixtures.databases import OneProcessLease

    async def main() -> None:
        async def hook(step: str, name: str) -> None:
            if step == sys.argv[2]:
                print("killing at", step, flush=True)
                os.kill(os.getpid(), signal.SIGKILL)

        client = await get_secret_client()
        locks = SecretLocks(distributed=OneProcessLease())
        engine = RotationEngine(client, get_settings(), locks=locks, hook=hook)
        await engine.rotate(sys.argv[1], RotationRequest(trigger="test", force=True))

    asyncio.run(main())
    """
)


async def test_kill_9_after_the_server_changed_then_another_process_converges(
    kv_client: Any, db_engine: Any, pg: PgAdmin, pg_rotator: Any, tmp_path: Path
) -> None:
    user, old = unique("kill"), strong_password()
    pg.create_user(user, old)
    name = user.replace("_", "-")
    tags = {
        "ValidityPeriodDays": "60",
        "RotationType": "postgresql",
        "CredentialId": user,
        "DbHost": f"127.0.0.1:{pg.server.port}",
    }
    await kv_client.set_secret(name, old, tags=tags)
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(repo=str(REPO)))
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        name,
        "applied",
        env=dict(os.environ),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(child.communicate(), 60)
    assert child.returncode == -signal.SIGKILL, (child.returncode, out, err[-2000:])
    assert b"killing at applied" in out
    # The server has the pending password, the vault's enabled version is the old one: only the pending
    # version (disabled, in the vault) holds what logs in.
    assert not pg.logs_in(user, old)
    versions = await versions_of(kv_client, name)
    assert [v.tags.get("RotationState") for v in versions].count("pending") == 1
    rerun = await db_engine().rotate(name, RotationRequest(trigger="test"))
    assert rerun.outcome == "Resumed", rerun.reason
    assert pg.logs_in(user, await current_value(kv_client, name))
