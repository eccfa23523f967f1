"""What accuracy a plan's losses buy: each model a plan prints (`Plan.runs()`: the student,
the teacher a scenario pre-trains, the model pretrained instead) read through a loss-to-error law of a
task set (`laws.downstream`, `plan --downstream-law FILE`, the file `distillscale fit downstream` wrote).

    downstream = plan_downstream(plan.loss_predictions(), load_downstream_law("down.json"), "down.json")
    downstream.predictions["best-case"].error, .law_interval, .interval; downstream.lines()

The rules, stated once here:
- each model's error is the law's at the loss the plan predicts for it, as the plan shows it (after
  repetition where the corpus is limited);
- `law_interval`: the law's own bootstrap interval at that loss (its coefficients' uncertainty only);
- `interval`: the loss's interval carried through too. Every bootstrap draw of the law rises with the
  loss (k >= 0, gamma > 0), so the law's interval over the loss's interval runs from the law's low end
  at the loss's low end to its high end at the loss's high end: the union of the law's intervals over
  every loss the plan allows (conservative: it does not shrink the two levels into one). A loss without
  an interval (a law fitted without one) gives the law's interval alone;
- a loss outside the losses the law was fitted on is an extrapolation of the law: marked `beyond_data`;
- a loss farther outside them than the width of their range (`DownstreamLaw.far_outside`) may be on
  another scale (a loss law of another tokenizer or corpus, or in other units) or a far extrapolation:
  `scale_warning` names those models; where the law then gives an error outside 0-1, which no task set
  has, the plan is refused: that number would be wrong, and the scales differ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from distillscale.errors import ParameterError
from distillscale.laws.downstream import DownstreamLaw

if TYPE_CHECKING:
    from distillscale.laws.uncertainty import Prediction

DOWNSTREAM_LAW_HELP = ("a loss-to-error law of a task set (the --out file of `distillscale fit downstream`): each "
                       "model's predicted downstream error at the loss the plan predicts, with its interval")


@dataclass(frozen=True)
class DownstreamPrediction:
    """One model's predicted error (1 - accuracy, 0-1) on the law's task set."""

    name: str                                   # the plan's name for the model
    task_set: str
    loss: float                                 # the plan's predicted loss (nats/token)
    loss_interval: tuple[float, float] | None   # its interval (None: the loss law has none)
    loss_level: float | None
    error: float                                # the law's at `loss`
    law_interval: tuple[float, float] | None    # the law's own interval at `loss` (None: no bootstrap)
    interval: tuple[float, float] | None        # with the loss's interval carried through
    level: float                                # the law's intervals' level
    beyond_data: bool                           # `loss` outside the losses the law was fitted on

    def describe(self) -> str:
        """loss -> error (the law's interval; with the loss's interval), for the text and the figure."""
        text = f"loss {self.loss:.4g} -> error {self.error:.3f}"
        if self.law_interval is None:
            return text
        text += f" ({self.level:.0%} of the law: {self.law_interval[0]:.3f} to {self.law_interval[1]:.3f}"
        if self.loss_interval is not None:
            text += (f"; with the loss's interval {self.loss_interval[0]:.4g} to {self.loss_interval[1]:.4g}: "
                     f"{self.interval[0]:.3f} to {self.interval[1]:.3f}")
        return text + ")"

    def to_dict(self) -> dict[str, Any]:
        def pair(value):
            return None if value is None else [value[0], value[1]]
        return {"name": self.name, "task_set": self.task_set, "loss": self.loss,
                "loss_interval": pair(self.loss_interval), "loss_level": self.loss_level, "error": self.error,
                "accuracy": 1.0 - self.error, "law_interval": pair(self.law_interval),
                "interval": pair(self.interval), "level": self.level, "beyond_law_data": self.beyond_data}


def downstream_prediction(law: DownstreamLaw, name: str, loss: float, loss_prediction: Prediction | None
                          ) -> DownstreamPrediction:
    """The error of the model `name` at `loss`, its interval at `loss_prediction`'s ends (module rules)."""
    loss = float(loss)
    has_loss_interval = loss_prediction is not None and loss_prediction.has_interval
    loss_interval = (float(loss_prediction.low), float(loss_prediction.high)) if has_loss_interval else None
    law_interval = law.interval(loss) if law.draws else None
    interval = law_interval
    if law_interval is not None and loss_interval is not None:
        interval = (min(law.interval(loss_interval[0])[0], law_interval[0]),
                    max(law.interval(loss_interval[1])[1], law_interval[1]))
    low, high = law.loss_range
    beyond = not (math.isfinite(low) and math.isfinite(high) and low <= loss <= high)
    return DownstreamPrediction(name=name, task_set=law.task_set, loss=loss, loss_interval=loss_interval,
                                loss_level=loss_prediction.level if has_loss_interval else None,
                                error=float(law.error(loss)), law_interval=law_interval, interval=interval,
                                level=law.level, beyond_data=beyond)


@dataclass(frozen=True)
class PlanDownstream:
    """A plan's models read through one loss-to-error law: the law's summary and each model's prediction."""

    law: str                                    # where the law came from (its file)
    task_set: str
    n_runs: int                                 # the runs it was fitted on
    loss_range: tuple[float, float]             # their losses
    backtest_error: float | None                # its backtest's mean absolute error (None: no backtest)
    predictions: dict[str, DownstreamPrediction]
    scale_warning: str | None = None            # models whose losses lie far outside the law's (module rules)

    def to_dict(self) -> dict[str, Any]:
        return {"downstream_law": self.law, "task_set": self.task_set, "n_runs": self.n_runs,
                "loss_range": list(self.loss_range), "backtest_mean_abs_error": self.backtest_error,
                "models": {name: p.to_dict() for name, p in self.predictions.items()},
                "loss_scale_warning": self.scale_warning}

    def lines(self) -> list[str]:
        """The text of `plan --downstream-law`: a heading, a line per model (models with the same loss
        share one) and what the intervals mean."""
        backtest = "" if self.backtest_error is None else f", backtest error {self.backtest_error:.3f}"
        out = [f"Downstream error on task set {self.task_set or 'unnamed'} (error = 1 - accuracy; law {self.law}, "
               f"fitted on {self.n_runs} runs, losses {self.loss_range[0]:.4g} to {self.loss_range[1]:.4g}{backtest}):"]
        groups: dict[tuple, tuple[list[str], DownstreamPrediction]] = {}
        for name, p in self.predictions.items():
            groups.setdefault((p.loss, p.loss_interval), ([], p))[0].append(name)
        for names, p in groups.values():
            out.append(f"{', '.join(names)}{'*' if p.beyond_data else ''}: {p.describe()}")
        predictions = self.predictions.values()
        if any(p.law_interval is None for p in predictions):
            out.append("the law file has no bootstrap draws, so no interval: fit it with --bootstrap above 0")
        elif any(p.loss_interval is not None for p in predictions):
            out.append("with the loss's interval: from the law's low end at the loss's low end to its high end at "
                       "the loss's high end (the union of the law's intervals over the loss's, not one level)")
        if any(p.beyond_data for p in predictions):
            out.append("* the loss lies outside the losses the law was fitted on: the law is extrapolated there")
        if self.scale_warning is not None:
            out.append(f"warning: {self.scale_warning}")
        return out


def plan_downstream(losses: dict[str, tuple[float, Prediction | None]], law: DownstreamLaw, source: str
                    ) -> PlanDownstream:
    """Each model's prediction; `losses`: `Plan.loss_predictions()` (name -> (loss, its Prediction));
    `source`: how the plan names the law (its file). Losses far outside the law's (module rules): all
    of them, a ParameterError about `downstream_law`; some, the plan's `scale_warning`."""
    return PlanDownstream(law=source, task_set=law.task_set, n_runs=law.n_runs,
                          loss_range=(float(law.loss_range[0]), float(law.loss_range[1])),
                          backtest_error=None if law.backtest is None else law.backtest.mean_abs_error,
                          predictions={name: downstream_prediction(law, name, loss, prediction)
                                       for name, (loss, prediction) in losses.items()},
                          scale_warning=loss_scale_warning(law, {name: loss for name, (loss, _) in losses.items()},
                                                          source))


def loss_scale_warning(law: DownstreamLaw, losses: dict[str, float], source: str = "") -> str | None:
    """None when no loss of `losses` (model name -> the plan's loss, nats/token) lies far outside those
    `law` was fitted on (`DownstreamLaw.far_outside`); else a warning naming those beyond, or a ParameterError
    about `downstream_law` when the law gives one of them an error outside 0-1: a downstream law read
    on another loss scale gives wrong errors, not extrapolated ones. A law without a recorded range
    (nan) is not checked. `source`: the law's file, named in the refusal."""
    far = {name: loss for name, loss in losses.items() if law.far_outside(loss)}
    if not far:
        return None
    low, high = (float(value) for value in law.loss_range)
    shown = ", ".join(f"{name} {loss:.4g}" for name, loss in far.items())
    fitted = f"the law's runs had losses {low:.4g} to {high:.4g} nats/token"
    impossible = {name: float(law.error(loss)) for name, loss in far.items() if not 0 <= law.error(loss) <= 1}
    if impossible:
        name, error = next(iter(impossible.items()))
        raise ParameterError("downstream_law", "{}{source} cannot read this plan's losses: at {name}'s loss "
                             "{loss:.4g} it gives an error of {error:.3g}, outside 0-1 ({fitted}): the plan's losses are on "
                             "another scale than the law's (a loss law of another tokenizer or corpus, or in "
                             "other units); fit the downstream law on runs of the plan's data and tokenizer, "
                             "or leave it out", name=name, loss=far[name], error=error, fitted=fitted,
                             source=f" {source}" if source else "")
    return (f"{shown}: far outside the losses the downstream law was fitted on ({fitted}): another loss scale "
            f"(tokenizer, corpus)? if not, their errors are extrapolated far")
