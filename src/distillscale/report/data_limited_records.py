"""The records `demo --data-limited` reports (report.data_limited makes them, report.data_limited_table
shows them): each model's loss against the same size trained alone, per pool, and the law's constants."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from distillscale.sweeps.data_limited import DataLimitedDesign, WeightDecayChoice


@dataclass(frozen=True)
class Measured:
    """One model's validation loss (nats/token; None when its run did not complete) and its Delta
    against the same size trained alone on the same pool (mean of the seeds)."""

    label: str
    run_id: str
    loss: float | None
    delta: float | None = None
    delta_percent: float | None = None


@dataclass(frozen=True)
class PoolResult:
    """One pool: its unique tokens and epochs, its weight-decay grid; the runs trained alone (mean, half the seeds' range),
    the chain's generations, the larger teacher and its student, the ensemble (its mixture's loss) and
    its student."""

    pool: str
    unique_tokens: int
    epochs: float
    weight_decay: WeightDecayChoice | None  # None: the pool's grid did not complete
    alone_seeds: list[float]
    alone_mean: float | None
    alone_spread: float | None
    generations: list[Measured]
    larger: Measured
    from_larger: Measured
    ensemble: Measured
    ensemble_student: Measured


@dataclass(frozen=True)
class LawConstants:
    """The data-limited law's constants fitted on the runs, with 90% bootstrap intervals over the pairs
    (kappa, lambda); eta measured on the one ensemble (no interval); `note` says what was not fitted."""

    pairs: int
    kappa: float | None = None
    kappa_interval: tuple[float, float] | None = None
    lam: float | None = None
    lambda_interval: tuple[float, float] | None = None
    residual_rms: float | None = None
    eta: float | None = None
    note: str = ""


@dataclass(frozen=True)
class DataLimitedResult:
    """What `demo --data-limited` measured: where, on what, each pool, the law, each run's status."""

    sweep_dir: Path
    corpus: str
    units: str
    design: DataLimitedDesign
    pools: list[PoolResult]
    law: LawConstants
    statuses: dict[str, str]
    wall_seconds: float

    def to_json(self) -> dict:
        payload = asdict(self)
        payload["sweep_dir"] = str(self.sweep_dir)
        for pool, record in zip(self.pools, payload["pools"]):
            if pool.weight_decay is not None:
                record["weight_decay"]["losses"] = {f"{wd:g}": loss for wd, loss in pool.weight_decay.losses.items()}
        return payload
