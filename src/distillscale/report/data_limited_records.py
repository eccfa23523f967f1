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
class SharedConstant:
    """One constant fitted on the demo's runs (its 90% bootstrap interval over their cells) beside the
    shipped one (bench/laws/data_limited_fit.py on the measured corpora)."""

    value: float
    interval: tuple[float, float] | None   # None: too few pools to resample
    shipped: float
    shipped_interval: tuple[float, float]

    @property
    def agrees(self) -> bool:
        """Whether the two intervals overlap (without an interval: whether the value lies in the shipped
        one): the demo's text behaves like the measured corpora here."""
        low, high = self.interval or (self.value, self.value)
        return low <= self.shipped_interval[1] and self.shipped_interval[0] <= high


@dataclass(frozen=True)
class LawConstants:
    """The data-limited law's constants fitted on the demo's runs by the shipped law's fitter
    (`laws.data_limited_fit.fit_law`): each share by its name (kappa, lambda, eta, gamma, theta) with the
    shipped one beside it, the residuals, what the runs could not tell (`notes`); `pairs` the chains and
    larger teachers' students kappa and lambda were fitted on; `note` why nothing was fitted; `constants`
    the fit as a constants file (data_limited_constants.json in the sweep directory)."""

    pairs: int
    shares: dict[str, SharedConstant] | None = None
    residuals: dict | None = None
    notes: list[str] | None = None
    note: str = ""
    constants: dict | None = None   # the fitted constants as `laws.data_limited.load_constants` reads them


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
        payload["law"].pop("constants", None)   # in its own file (data_limited_constants.json)
        for pool, record in zip(self.pools, payload["pools"]):
            if pool.weight_decay is not None:
                record["weight_decay"]["losses"] = {f"{wd:g}": loss for wd, loss in pool.weight_decay.losses.items()}
        return payload
