"""Reproduction of Hoffer et al. 2017 ("Train longer, generalize better") on MNIST-1D.

A small 1-D CNN with BatchNorm is trained in five regimes that add the paper's remedies one by one:

    SB            small batch, learning rate lr                       (the reference)
    LB            large batch, same lr and epochs                     (the generalization gap)
    +LR           large batch, lr * sqrt(B_large / B_small)
    +GBN          ... and Ghost Batch Normalization (ghost batch = small batch)
    +RA           ... and regime adaptation: epochs and milestones * B_large / B_small

MNIST-1D (Greydanus 2020, the `mnist1d` package) is generated locally from its templates, so the
experiment needs no download. Every run records ||w_t - w_0|| at log-spaced updates.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from distillscale.errors import UserError
from distillscale.io import atomic_write, figure_metadata
from distillscale.regime.ghost_batch_norm import convert_to_ghost_batch_norm
from distillscale.regime.schedules import adapt_regime, scale_learning_rate
from distillscale.regime.weight_distance import WeightDistance

MNIST1D_LENGTH = 40
MNIST1D_CLASSES = 10


@dataclass(frozen=True)
class LargeBatchConfig:
    """Everything that defines the experiment. Epochs and milestones are those of the SB run."""

    small_batch: int = 32
    large_batch: int = 512
    ghost_batch: int | None = None  # None: the small batch size, as in the paper
    epochs: int = 20
    milestones: tuple[float, ...] = (10, 15)
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    grad_clip: float = 5.0  # the authors' code clips the gradient norm at 5
    seeds: int = 3
    num_samples: int = 5120  # MNIST-1D split 80/20: 4096 train, 1024 test
    data_seed: int = 42
    channels: int = 16
    distance_points: int = 30

    def __post_init__(self) -> None:
        positive = {"--small-batch": self.small_batch, "--large-batch": self.large_batch,
                    "--epochs": self.epochs, "--seeds": self.seeds,
                    "--num-samples": self.num_samples, "--channels": self.channels}
        for flag, value in positive.items():
            if value < 1:
                raise UserError(f"{flag} must be a positive integer, got {value}")
        if self.large_batch <= self.small_batch:
            raise UserError(f"--large-batch ({self.large_batch}) must be larger than --small-batch "
                            f"({self.small_batch}) for a large-batch experiment")
        if self.ghost_batch is not None and not 1 < self.ghost_batch < self.large_batch:
            raise UserError(f"--ghost-batch must lie between 2 and --large-batch - 1 "
                            f"({self.large_batch - 1}), got {self.ghost_batch}")
        if self.large_batch > self.train_size:
            raise UserError(f"--large-batch {self.large_batch} exceeds the {self.train_size} "
                            f"training samples: raise --num-samples or lower --large-batch")
        for flag, value in (("--lr", self.lr), ("--grad-clip", self.grad_clip)):
            if not (math.isfinite(value) and value > 0):
                raise UserError(f"{flag} must be a positive finite number, got {value}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise UserError(f"--weight-decay must be a non-negative number, got {self.weight_decay}")
        if not 0 <= self.momentum < 1:
            raise UserError(f"--momentum must lie in [0, 1), got {self.momentum}")
        # The milestone checks of the regime adaptation, run now rather than after hours of training.
        adapt_regime(self.epochs, self.milestones, self.large_batch, self.small_batch, unit="epochs")

    @property
    def train_size(self) -> int:
        # As mnist1d's make_dataset: whole samples per class, then its default 80% train split.
        return int(self.num_samples // MNIST1D_CLASSES * MNIST1D_CLASSES * 0.8)


@dataclass(frozen=True)
class Regime:
    """One training recipe: batch size, learning rate, schedule (in epochs), normalisation."""

    name: str
    description: str
    batch_size: int
    lr: float
    epochs: float
    milestones: tuple[float, ...]
    ghost_batch_size: int | None = None


def hoffer_regimes(config: LargeBatchConfig) -> list[Regime]:
    """The five regimes of the experiment, each adding one remedy to the previous one."""
    small = Regime("SB", "small batch", config.small_batch, config.lr, config.epochs,
                   tuple(config.milestones))
    large = replace(small, name="LB", description="large batch", batch_size=config.large_batch)
    sqrt_lr = replace(large, name="+LR", description="large batch, sqrt LR scaling",
                      lr=scale_learning_rate(config.lr, config.large_batch, config.small_batch,
                                             "sqrt"))
    ghost = replace(sqrt_lr, name="+GBN", description="large batch, sqrt LR, Ghost BN",
                    ghost_batch_size=config.ghost_batch or config.small_batch)
    adapted = adapt_regime(config.epochs, config.milestones, config.large_batch,
                           config.small_batch, unit="epochs")
    regime_adapted = replace(ghost, name="+RA",
                             description="large batch, sqrt LR, Ghost BN, regime adaptation",
                             epochs=adapted.total_steps, milestones=adapted.milestones)
    return [small, large, sqrt_lr, ghost, regime_adapted]


@dataclass(frozen=True)
class MNIST1D:
    """MNIST-1D as tensors: signals (N, 1, 40) float32, labels (N,) int64."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def load_mnist1d(num_samples: int, seed: int = 42) -> MNIST1D:
    """Generate MNIST-1D in memory with the package's own generator (no download, no file)."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.seed = num_samples, seed
    data = make_dataset(args)

    def signals(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x).float().unsqueeze(1)

    return MNIST1D(signals(data["x"]), torch.from_numpy(data["y"]).long(),
                   signals(data["x_test"]), torch.from_numpy(data["y_test"]).long())


class ConvClassifier(nn.Module):
    """Three strided conv -> BatchNorm -> ReLU blocks and a linear head (Greydanus's MNIST-1D CNN,
    with BatchNorm, which is what Ghost BN acts on)."""

    def __init__(self, channels: int = 32, length: int = MNIST1D_LENGTH,
                 n_classes: int = MNIST1D_CLASSES) -> None:
        super().__init__()
        blocks = []
        for c_in in (1, channels, channels):
            blocks += [nn.Conv1d(c_in, channels, kernel_size=3, stride=2, padding=1, bias=False),
                       nn.BatchNorm1d(channels), nn.ReLU()]
            length = (length + 1) // 2
        self.features = nn.Sequential(*blocks)
        self.head = nn.Linear(channels * length, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


@dataclass
class RegimeRun:
    regime: str
    seed: int
    updates: int
    test_accuracy: float
    train_accuracy: float
    train_loss: float
    seconds: float
    weight_distance: list[tuple[int, float]] = field(default_factory=list)  # (update, ||w - w0||)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(accuracy, mean cross-entropy in nats) in eval mode, i.e. with BatchNorm running statistics."""
    model.eval()
    logits = model(x)
    model.train()
    return (logits.argmax(1) == y).float().mean().item(), F.cross_entropy(logits, y).item()


def train_regime(regime: Regime, data: MNIST1D, seed: int, config: LargeBatchConfig) -> RegimeRun:
    """Train one classifier with SGD + momentum, step LR decay (x0.1 at each milestone), gradient
    clipping; batches are drawn without replacement, the last incomplete batch of an epoch dropped."""
    started = time.perf_counter()
    torch.manual_seed(seed)
    model = ConvClassifier(config.channels)
    if regime.ghost_batch_size is not None:
        convert_to_ghost_batch_norm(model, regime.ghost_batch_size)
    optimizer = torch.optim.SGD(model.parameters(), lr=regime.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    steps_per_epoch = len(data.y_train) // regime.batch_size
    total_updates = max(1, round(regime.epochs * steps_per_epoch))
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, [round(m * steps_per_epoch) for m in regime.milestones], gamma=0.1)
    record_at = set(np.unique(np.geomspace(1, total_updates, config.distance_points).round())
                    .astype(int).tolist())
    distance = WeightDistance(model)
    shuffler = torch.Generator().manual_seed(seed)

    update = 0
    while update < total_updates:
        order = torch.randperm(len(data.y_train), generator=shuffler)
        for batch in order[:steps_per_epoch * regime.batch_size].view(steps_per_epoch, -1):
            loss = F.cross_entropy(model(data.x_train[batch]), data.y_train[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            scheduler.step()
            update += 1
            if update in record_at:
                distance.update(update)
            if update == total_updates:
                break

    test_accuracy, _ = evaluate(model, data.x_test, data.y_test)
    train_accuracy, train_loss = evaluate(model, data.x_train, data.y_train)
    return RegimeRun(regime.name, seed, total_updates, test_accuracy, train_accuracy, train_loss,
                     time.perf_counter() - started,
                     [(reading.step, reading.total) for reading in distance.history])


@dataclass
class RegimeSummary:
    regime: Regime
    updates: int
    test_accuracy_mean: float
    test_accuracy_std: float  # sample standard deviation over seeds (0 for one seed)
    train_accuracy_mean: float
    runs: list[RegimeRun]


@dataclass
class LargeBatchResult:
    config: LargeBatchConfig
    summaries: list[RegimeSummary]
    seconds: float

    def gap_verdict(self) -> dict:
        """Test-accuracy differences to SB of plain LB and of the last regime (all remedies); the
        gap counts as closed when the last regime is within one SB seed-to-seed std of SB or above."""
        small, large, remedied = self.summaries[0], self.summaries[1], self.summaries[-1]
        large_gap = large.test_accuracy_mean - small.test_accuracy_mean
        remaining_gap = remedied.test_accuracy_mean - small.test_accuracy_mean
        closed = remaining_gap >= -small.test_accuracy_std
        text = (f"Test accuracy minus SB: LB {100 * large_gap:+.1f} points, {remedied.regime.name} "
                f"{100 * remaining_gap:+.1f} points (SB std {100 * small.test_accuracy_std:.1f}): "
                f"the large-batch gap {'closes' if closed else 'does not close'} on this data.")
        return {"large_batch_gap": large_gap, "remaining_gap": remaining_gap, "closed": closed,
                "text": text}

    def to_dict(self) -> dict:
        return {**asdict(self), "verdict": self.gap_verdict()}


def run_large_batch_experiment(config: LargeBatchConfig,
                               on_run: Callable[[RegimeRun], None] | None = None
                               ) -> LargeBatchResult:
    """Train every regime with every seed (seeds 0..config.seeds-1) and summarise test accuracy."""
    started = time.perf_counter()
    data = load_mnist1d(config.num_samples, config.data_seed)
    summaries = []
    for regime in hoffer_regimes(config):
        runs = []
        for seed in range(config.seeds):
            runs.append(train_regime(regime, data, seed, config))
            if on_run is not None:
                on_run(runs[-1])
        accuracies = np.array([run.test_accuracy for run in runs])
        summaries.append(RegimeSummary(
            regime, runs[0].updates, float(accuracies.mean()),
            float(accuracies.std(ddof=1)) if len(runs) > 1 else 0.0,
            float(np.mean([run.train_accuracy for run in runs])), runs))
    return LargeBatchResult(config, summaries, time.perf_counter() - started)


def plot_weight_distance(result: LargeBatchResult, path: Path) -> None:
    """||w_t - w_0|| (mean over seeds) against the number of updates on a log axis, per regime."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.2), layout="constrained")
    axes = figure.add_subplot()
    for summary in result.summaries:
        steps = [step for step, _ in summary.runs[0].weight_distance]
        mean = np.mean([[d for _, d in run.weight_distance] for run in summary.runs], axis=0)
        axes.plot(steps, mean, marker=".", label=f"{summary.regime.name}: "
                                                 f"{summary.regime.description}")
    axes.set_xscale("log")
    axes.set_xlabel("number of updates (log scale)")
    axes.set_ylabel(r"$\|w_t - w_0\|$ (mean over seeds)")
    axes.set_title("Distance from initialisation, MNIST-1D (Hoffer et al. 2017)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize="small")
    fmt = Path(path).suffix.lstrip(".")
    atomic_write(path, lambda tmp: figure.savefig(tmp, format=fmt, metadata=figure_metadata(fmt)))
