"""Hyperparameter laws by name, usable as `--law steplaw2025` wherever a hyperparameter law is read: two
published laws and one distillscale measured on its own GPU ladder.

- `steplaw2025`: Li et al. (2025), "Predictable Scale: Part I" (Step Law), fitted on 3,700 LLMs:
  lr* = 1.79 N^-0.713 D^0.307 and B* = 0.58 D^0.571 tokens, N non-embedding parameters, D tokens.
- `deepseek2024`: DeepSeek LLM (2024): eta_opt = 0.3118 C^-0.1250 and B_opt = 0.2920 C^0.3271 tokens,
  with C taken here as 6 N D (N non-embedding parameters; DeepSeek counts C = M D with M its
  non-embedding FLOPs per token, which 6 N approximates without the attention term), so each is a
  power law in N and D with equal exponents. Its grid covered compute budgets of 1e17-2e19 FLOPs
  (DeepSeek LLM, arXiv 2401.02954, section 3.1: "compute budgets ranging from 1e17 to 2e19"; checked
  once at 1e20), its `data_range` (in C = 6 N D; the paper does not give its N and D apart), so a
  recommendation beyond it says how far.

- `gpu-ladder-h200`: distillscale's own GPU ladder (`demo --scale gpu`), measured, not published: its
  teachers at depths 3-6 on an lr grid on one H200 (56 runs, bench/demo/tuned_calibration.py grid --scale
  gpu; docs/gpu_ladder.md), lr* = 0.00227 N^0.091 D^-0.050 at its batch of 32,768 tokens, with the
  fit's covariance and scatter (gpu_ladder_h200.json beside this file). The ladder takes each size's
  rate from it (`lr_law = "gpu-ladder-h200"`).

Neither paper gives an interval for its law in a form a recommendation can carry, so each preset's
interval (`residual_sd`, ln space) is the spread of the measured optima around it on Step Law's public
grid (SLDBench, the 15 cells below 1B parameters; bench/laws/hyperparameters_steplaw.py): the root mean
square of ln(preset / cell optimum): 0.17 for Step Law's lr, 0.20 for its batch; 0.80 and 0.66 for
DeepSeek's, which misses that grid's optima by a factor of about 2 (its lr low, its batch high).
Step Law's batch exponent of the optimal rate, ridge curvature and loss-vs-tokens slope are the ones
measured on that grid too (the median over the same cells; its batches, 32,768-4,194,304 tokens, are
the preset's batch range: a batch beyond it is an extrapolation of the penalty, and says so);
DeepSeek's law has none.
"""

from __future__ import annotations

from pathlib import Path

from distillscale.errors import UserError
from distillscale.laws.hyperparameters.law import HyperparameterLaw, PowerLaw
from distillscale.laws.hyperparameters.rates import PEAK

_DEEPSEEK_LR, _DEEPSEEK_BATCH = -0.1250, 0.3271

HYPERPARAMETER_PRESETS: dict[str, HyperparameterLaw] = {
    "steplaw2025": HyperparameterLaw(
        name="steplaw2025",
        source="Li et al. 2025, Predictable Scale: Part I (Step Law): lr* = 1.79 N^-0.713 D^0.307, "
               "B* = 0.58 D^0.571 tokens; intervals, batch exponent and surface measured by distillscale on "
               "the public grid (SLDBench, MIT), cells below 1B parameters",
        lr_unit=PEAK,
        lr=PowerLaw(coefficient=1.79, exponents=(-0.713, 0.307), residual_sd=0.17),
        batch=PowerLaw(coefficient=0.58, exponents=(0.0, 0.571), residual_sd=0.20),
        lr_batch_exponent=0.40, lr_batch_exponent_interval=(0.22, 0.67), ridge_curvature=0.005,
        loss_tokens_exponent=-0.038,
        data_range={"params": (6.0e7, 1.07e9), "tokens": (2.0e9, 1.0e11), "batch_tokens": (32768.0, 4194304.0)}),
    "deepseek2024": HyperparameterLaw(
        name="deepseek2024",
        source="DeepSeek LLM 2024: eta_opt = 0.3118 C^-0.1250, B_opt = 0.2920 C^0.3271 tokens, C = 6 N D "
               "(N non-embedding parameters); intervals: the spread of its misses on Step Law's public grid",
        lr_unit=PEAK,
        lr=PowerLaw(coefficient=0.3118 * 6 ** _DEEPSEEK_LR, exponents=(_DEEPSEEK_LR, _DEEPSEEK_LR), residual_sd=0.80),
        batch=PowerLaw(coefficient=0.2920 * 6 ** _DEEPSEEK_BATCH, exponents=(_DEEPSEEK_BATCH, _DEEPSEEK_BATCH),
                       residual_sd=0.66),
        data_range={"compute": (1e17, 2e19)}),
    "gpu-ladder-h200": HyperparameterLaw.load(Path(__file__).with_name("gpu_ladder_h200.json")),
}


def load_hyperparameter_law(spec: str | Path | HyperparameterLaw) -> HyperparameterLaw:
    """A preset by name (steplaw2025, deepseek2024, gpu-ladder-h200), or a law file `fit hyperparameters --out` wrote."""
    if isinstance(spec, HyperparameterLaw):
        return spec
    if str(spec) in HYPERPARAMETER_PRESETS:
        return HYPERPARAMETER_PRESETS[str(spec)]
    if not Path(spec).exists():
        raise UserError(f"unknown hyperparameter law {str(spec)!r}: give a preset "
                        f"({', '.join(HYPERPARAMETER_PRESETS)}) or a file `distillscale fit hyperparameters --out` wrote")
    return HyperparameterLaw.load(spec)
