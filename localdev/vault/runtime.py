"""One vault's live parts and the settings it was started with: store, tokens, throttle, faults, events.

`VaultRuntime` builds them from a `VaultConfig` and puts them back to those settings on `reset()`; the
wire layer (api), the test controls (control) and the lifecycle (server) all work on one runtime.
With `VaultConfig.vaults` > 1, one process runs several runtimes (`index` 0, 1, ...): each has its own
store, throttle, stats, faults and latency; they share the state dir's TLS files, control key and token
authority, so one managed-identity token is good for every vault, as in one Entra tenant.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..statedir import load_or_create_secret
from .api import VaultApi
from .auth import Identity, TokenAuthority, default_identities, load_identities
from .events import EventPublisher
from .instrumentation import FaultPlan, RequestStats
from .limits import Throttle, ThrottleSettings
from .store import (
    BackupSealer,
    MemoryPersistence,
    Persistence,
    SoftDeletePolicy,
    SqlitePersistence,
    VaultStore,
)
from .tls import TlsFiles

CONTROL_KEY_FILE = "control.key"


@dataclass
class VaultConfig:
    """Everything the local vault can be started with; defaults suit `make run`."""

    state_dir: Path = Path(".localdev")
    host: str = "127.0.0.1"
    port: int = 8443
    identity_port: int = 8081
    memory: bool = False
    vault_name: str = "localvault"
    retention_days: int = 90
    purge_protection: bool = False
    throttling: bool = False
    transactions_per_10s: int = 4000
    creates_per_10s: int = 300
    throttle_retry_after: float | None = 1.0
    latency: float = 0.0
    delete_latency: float = 0.0
    recover_latency: float = 0.0
    fault_seed: int | None = None  # faults hit the same transactions on every run (None: fresh randomness)
    events_url: str | None = None
    events_check_interval: float = 60.0
    events_attempts: int = 3
    events_retry_delay: float = 0.5
    identities: list[Identity] | None = None
    identities_file: Path | None = None
    identity_header: str | None = None
    token_lifetime: float = 24 * 3600.0
    write_env_file: bool = True
    # Vaults this process serves, each on its own port (`port`, `port`+1, ...; all free ones for port 0)
    # and named `vault_name`, `vault_name`2, ...: a fleet for the fan-out's tests and benchmark.
    vaults: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.vaults <= 64:
            raise ValueError(f"vaults must be between 1 and 64, got {self.vaults}")

    def vault_name_of(self, index: int) -> str:
        return self.vault_name if index == 0 else f"{self.vault_name}{index + 1}"

    def port_of(self, index: int) -> int:
        return 0 if self.port == 0 else self.port + index

    def store_file(self, index: int) -> str:
        return "vault.sqlite3" if index == 0 else f"vault{index + 1}.sqlite3"

    def throttle_settings(self) -> ThrottleSettings:
        return ThrottleSettings(
            self.throttling, self.transactions_per_10s, self.creates_per_10s, self.throttle_retry_after
        )

    def resolved_identities(self) -> list[Identity]:
        if self.identities is not None:
            return list(self.identities)
        if self.identities_file is not None:
            return load_identities(Path(self.identities_file))
        return default_identities()


class VaultRuntime:
    """The live parts of one vault and the startup settings that `reset()` returns them to.

    `index` picks the vault of a multi-vault process (its name and store file); `authority` is the token
    authority shared with the process's other vaults (None: this runtime makes it)."""

    def __init__(
        self,
        config: VaultConfig,
        tls: TlsFiles,
        *,
        index: int = 0,
        authority: TokenAuthority | None = None,
    ) -> None:
        self.config = config
        self.tls = tls
        self.index = index
        state = Path(config.state_dir)
        persistence: Persistence = (
            MemoryPersistence() if config.memory else SqlitePersistence(state / config.store_file(index))
        )
        # one backup key per state dir: a backup restores into any vault of the process, as backups
        # restore across vaults of one subscription and geography in Azure
        sealer = BackupSealer(BackupSealer.load_or_create_key(state / "keys" / "backup.key"))
        self.store = VaultStore(
            persistence,
            sealer,
            vault_name=config.vault_name_of(index),
            policy=SoftDeletePolicy(config.retention_days, config.purge_protection),
        )
        self.authority = authority or TokenAuthority(
            config.resolved_identities(),
            TokenAuthority.load_or_create_key(state / "keys" / "token-signing.pem"),
        )
        self.throttle = Throttle(config.throttle_settings())
        self.api = VaultApi(
            self.store, self.authority, self.throttle, RequestStats(), FaultPlan(config.fault_seed)
        )
        # the test controls mint tokens and empty the vault: only a caller that read this file may use them
        self.control_key = load_or_create_secret(state / CONTROL_KEY_FILE)
        self.publisher = (
            EventPublisher(
                config.events_url,
                self.store,
                check_interval=config.events_check_interval,
                attempts=config.events_attempts,
                retry_delay=config.events_retry_delay,
            )
            if config.events_url
            else None
        )
        if self.publisher is not None:
            self.store.listeners.append(self.publisher.on_new_version)
        self._apply_startup_settings()

    def _apply_startup_settings(self) -> None:
        c = self.config
        self.store.policy = SoftDeletePolicy(c.retention_days, c.purge_protection)
        self.store.delete_latency = c.delete_latency
        self.store.recover_latency = c.recover_latency
        self.store.clock.offset = 0.0
        self.throttle.configure(c.throttle_settings())
        self.api.latency = c.latency
        self.api.faults.clear()
        self.api.faults.reseed(c.fault_seed)

    def reset(self) -> None:
        """Empty vault, zero stats, no faults, no clock offset; latency, throttling, soft delete as begun."""
        self.store.reset()
        self.api.forget_listed()
        self.api.stats.reset()
        self._apply_startup_settings()
        if self.publisher is not None:
            self.publisher.reset()

    def after_clock_change(self) -> None:
        self.check_expiry_events()

    def check_expiry_events(self) -> int:
        return self.publisher.check_expiry() if self.publisher is not None else 0
