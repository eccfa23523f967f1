"""`distillscale ladder`: the ladder designer (`planning.ladder`) on the command line. It prints the
chosen design and the cheaper ones with their expected error at the target and their cost, and
writes the chosen design as a sweep spec (`ladder_spec`) that `distillscale sweep plan` and `sweep
run` take: the [data] and [model] sections of a base spec (default: the GPU ladder's,
report/gpu_ladder.toml) as the sweep resolves them (paths made absolute, the model family written
out), the design's teachers in [teachers] (depths, tokens per parameter, seeds of the largest size,
the base's token window), nothing else.

    distillscale ladder --target-params 1B --target-tokens 20B --budget 1e20 --out ladder.toml
    distillscale sweep plan ladder.toml

The design is made in the family the spec builds (`base_family`): its sizes are the sweep's own
non-embedding counts of the base's aspect ratio and head_dim (the sweep's defaults when the base
gives none, and then written into the spec), and each run is priced by `sweep plan`'s own count
(`dry_run.training_flops` on the run's settings as the sweep resolves them; a fork at its cooldown
only when the base's schedule forks), so the spec's runs cost what the design says. Its runs keep
the base's [teachers] min_tokens and max_tokens, and, when the corpus is counted (`--unique-tokens`,
or a base without max_tokens: its corpus prepared once, as `sweep run` would), stay within one
epoch of the training split.

    plan, base = design_for_base(1e9, 20e9, 1e20, base="my_sweep.toml")
    text = ladder_spec(plan, base)
"""

from __future__ import annotations

import math
import os
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import ValidationError

from distillscale.checks import checked
from distillscale.cli_options import CommandSettings, command, option, to_argv
from distillscale.console import console, print_json
from distillscale.data.config import DEFAULT_VOCAB_SIZE
from distillscale.errors import ParameterError, UserError
from distillscale.io import atomic_write_text, check_output_file, read_text_file
from distillscale.planning.ladder import (MAX_TOP, LadderFamily, LadderPlan, RunCost, design_ladder, family_depths,
                                          run_window)
from distillscale.settings import quantity
from distillscale.sweeps.spec_sections import Ladder, ModelSection, _validate
from distillscale.training.config import TrainConfig
from distillscale.units import Quantity, format_quantity

BASE_SPEC = Path(__file__).resolve().parents[1] / "report" / "gpu_ladder.toml"
# The first line of a spec `ladder` writes: how --overwrite recognises one.
SIGNATURE = "# designed by `distillscale ladder`"
WINDOW_KEYS = ("min_tokens", "max_tokens")
HEAD_DIM = 128   # ModelConfig's head_dim when the base gives none


class LadderSettings(CommandSettings):
    """`distillscale ladder`."""

    command_path: ClassVar[str] = "ladder"

    target_params: Annotated[float, quantity("--target-params", kind=Quantity.PARAMS)] = option(
        ..., help="the model to predict: non-embedding parameters, e.g. 1B")
    target_tokens: Annotated[float, quantity("--target-tokens", kind=Quantity.TOKENS)] = option(
        ..., help="its training tokens, e.g. 20B")
    budget: Annotated[float, quantity("--budget", kind=Quantity.FLOPS)] = option(
        ..., help="training FLOPs for the whole ladder, as `sweep plan` counts them (the engine's count over each "
                  "run's whole steps; a WSD fork its cooldown), e.g. 1e20")
    base: Path | None = option(None, help="a sweep spec whose \\[data], \\[model] (its model family: aspect_ratio, "
                                          "head_dim) and \\[teachers] min_tokens/max_tokens the ladder keeps; "
                                          "default: the GPU ladder's")
    unique_tokens: Annotated[float | None, quantity("--unique-tokens", kind=Quantity.TOKENS)] = option(
        None, help="unique tokens of the corpus's teacher split, e.g. 5B: no run repeats them (default: counted from "
                   "the base's corpus, prepared once as `sweep run` would, unless the base caps runs with max_tokens)")
    seed_noise: float = option(0.0, help="relative sd of one run's loss across seeds (e.g. 0.003): added to the "
                                         "expected error, and more seeds at the largest size shrink it; 0 (the "
                                         "default) never pays for a second seed")
    out: Path | None = option(None, help="write the chosen design's sweep spec (TOML) here")
    overwrite: bool = option(False, help="replace --out if `distillscale ladder` wrote it")
    as_json: bool = option(False, flag="--json", help="print JSON")


@dataclass(frozen=True)
class LadderBase:
    """A base spec as a ladder keeps it: `data` and `model`, its sections as the sweep resolves them
    (paths absolute, aspect_ratio and head_dim written out: as the base gives `defaulted` names those it left to the sweep's defaults), `window`, its [teachers] min_tokens and max_tokens, and `settings`, a teacher run's
    training settings as the sweep resolves them (depth and tokens aside)."""

    source: str
    data: dict[str, Any]
    model: dict[str, Any]
    window: dict[str, Any]
    settings: dict[str, Any]
    defaulted: tuple[str, ...] = ()   # the family's keys the base leaves to the sweep's defaults

    def config(self, depth: int, tokens: int = 1) -> TrainConfig:
        return TrainConfig.model_validate({**self.settings, "n_layers": depth, "tokens": tokens, "out": "."})


def read_base(path: str | Path | None = None) -> LadderBase:
    """The base spec at `path` (None: the GPU ladder's), checked as the sweep checks [data] and [model]
    (a one-line UserError naming --base for anything that is not one)."""
    from distillscale.sweeps.spec import resolve_sweep_spec   # (SciPy: loaded when a ladder is designed)

    source = BASE_SPEC if path is None else Path(path)
    where = f"--base {source}"
    if not source.is_file():
        raise UserError(f"{where} does not exist or is not a file: give a sweep spec (TOML), or leave --base out")
    try:
        table = tomllib.loads(read_text_file(source, "--base sweep spec"))
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{where} is not a readable TOML sweep spec: {exc}") from None
    missing = [name for name in ("data", "model") if not isinstance(table.get(name), dict)]
    if missing:
        raise UserError(f"{where} has no [{missing[0]}] section: give a sweep spec with [data] and [model]")
    teachers = table.get("teachers") if isinstance(table.get("teachers"), dict) else {}
    window = {key: teachers[key] for key in WINDOW_KEYS if key in teachers}
    _validate(Ladder, {"n_layers": [1], "tokens_per_param": [1.0], **window}, where, prefix="teachers.")
    model = _validate(ModelSection, table["model"], where, prefix="model.")
    head_dim = model.head_dim or HEAD_DIM
    family = {"aspect_ratio": model.aspect_ratio, "head_dim": head_dim}
    probe_depth = head_dim // math.gcd(model.aspect_ratio, head_dim)  # the first depth whose width heads divide
    try:
        probe = resolve_sweep_spec({"name": "ladder", "data": table["data"], "model": {**table["model"], **family},
                                    "teachers": {"n_layers": [probe_depth], "tokens_per_param": [20.0]}},
                                   source=where, base_dir=Path(os.path.abspath(source)).parent)
    except UserError as exc:   # every message names the base (a law file's own does not)
        raise UserError(str(exc) if str(exc).startswith(where) else f"{where}: {exc}") from None
    settings = {key: value for key, value in probe.runs[0].settings.items()
                if key in TrainConfig.model_fields and key not in ("n_layers", "tokens", "fork_tokens")}
    return LadderBase(where, probe.sections["data"], probe.sections["model"], window, settings,
                      tuple(key for key in family if key not in table["model"]))


def base_family(base: LadderBase, max_params: float, unique_tokens: float | None = None,
                count_corpus: bool = True) -> LadderFamily:
    """The family a ladder of `base` is designed in, up to `max_params`: the sweep's sizes, each run
    priced by `dry_run.training_flops` on its settings, the base's token window, and the unique
    tokens of the training split: `unique_tokens`, else (with `count_corpus`, when the base sets no
    max_tokens) the corpus's, prepared if it was not (`corpus_tokens`)."""
    from distillscale.sweeps.dry_run import training_flops   # (torch: loaded when a ladder is designed)

    probe = base.config(1)
    vocab = probe.vocab_size or DEFAULT_VOCAB_SIZE
    sizes = family_depths(probe.aspect_ratio, base.model["head_dim"], max_params,
                          lambda depth: probe.model_copy(update={"n_layers": depth}).model_shape(vocab).non_embedding_params)
    configs: dict[int, TrainConfig] = {}

    def price(depth: int, tokens: int) -> RunCost:
        if depth not in configs:   # the run's settings as the sweep resolves them, checked once a depth
            configs[depth] = base.config(depth)
        config = configs[depth].model_copy(update={"tokens": tokens})
        steps, whole = training_flops(config, config.model_shape(vocab), sizes[depth])
        own = config.cooldown_steps(steps) or steps   # as `sweep plan` counts a fork (0: no forks)
        return RunCost(steps, steps * config.tokens_per_step, whole * steps / steps, whole * own / steps)

    if unique_tokens is not None and (isinstance(unique_tokens, bool) or not isinstance(unique_tokens, (int, float))
                                      or not 1 <= unique_tokens < math.inf):
        raise ParameterError("unique_tokens", "{} must be a positive number of tokens, got {value!r}",
                             value=unique_tokens)
    window = _window(base)
    unique, how = (int(unique_tokens), "--unique-tokens") if unique_tokens is not None else (None, "")
    if unique is None and count_corpus and window["max_tokens"] is None:   # no cap: the corpus is the cap
        unique, how = corpus_tokens(probe)
    low, high, words = run_window(probe.tokens_per_step, window["min_tokens"], window["max_tokens"], unique)
    if low > high:
        raise UserError(f"{base.source}: no run fits the token window, {words}: widen it (a smaller batch or "
                        "min_tokens, a larger max_tokens, corpus or --unique-tokens)")
    counts = (f"its {probe.split} split {format_quantity(unique)} unique tokens ({how})" if unique is not None else
              "the corpus is not counted under the base's max_tokens (--unique-tokens counts it)")
    return LadderFamily(sizes, price, forks=probe.schedule == "wsd", min_tokens=low, max_tokens=high,
                        unique_tokens=unique, description=_describe(base, probe, vocab),
                        data=f"{probe.data}; {counts}; runs within {words}")


def corpus_tokens(config: TrainConfig) -> tuple[int, str]:
    """Unique tokens of the run's training split as its sampler counts them, and how they were found:
    from the corpus prepared before, else by preparing it now as `sweep run` does before its first
    run (and reuses from then on)."""
    from distillscale.data.prepare import data_identity, prepare_data, prepared_directory
    from distillscale.data.prepared import open_prepared
    from distillscale.data.repetition import epoch_tokens

    data_config = config.data_config()
    try:
        data = open_prepared(prepared_directory(data_config, data_identity(data_config).fingerprint))
        how = "counted from the prepared corpus"
    except UserError:
        data, how = prepare_data(data_config), "counted: the corpus prepared now, as `sweep run` would"
    return epoch_tokens(data.manifest["splits"][config.split]["tokens"], config.seq_len), how


def _window(base: LadderBase) -> dict[str, float | None]:
    checked = Ladder.model_validate({"n_layers": [1], "tokens_per_param": [1.0], **base.window})
    return {key: getattr(checked, key) for key in WINDOW_KEYS}


def _describe(base: LadderBase, config: TrainConfig, vocab: int) -> str:
    given = (f" ({' and '.join(base.defaulted)}: the sweep's default, which the base leaves out; written into the "
             "spec)" if base.defaulted else "")
    schedule = ("WSD: each size's shorter budgets fork its longest, priced at their cooldown"
                if config.schedule == "wsd" else f"{config.schedule}: every budget a run of its own")
    return (f"aspect ratio {config.aspect_ratio}, head_dim {base.model['head_dim']}{given}; vocabulary {vocab}, "
            f"context {config.seq_len}, {config.tokens_per_step:,} tokens a step; {schedule}")


@checked
def design_for_base(target_params: float, target_tokens: float, budget: float, base: str | Path | None = None, *,
                    seed_noise: float = 0.0, unique_tokens: float | None = None) -> tuple[LadderPlan, LadderBase]:
    """`design_ladder` in the family of a base spec (None: the GPU ladder's), priced as `sweep plan`
    prices the spec `ladder_spec` writes."""
    read = read_base(base)
    try:
        reach = float(target_params) * MAX_TOP
    except (TypeError, ValueError):
        reach = 1.0
    reach = reach if math.isfinite(reach) and reach > 1 else 1.0   # design_ladder names a bad value
    family = base_family(read, reach, unique_tokens)
    return design_ladder(target_params, target_tokens, budget, family=family, seed_noise=seed_noise), read


def ladder_spec(plan: LadderPlan, base: LadderBase, command_line: str = "") -> str:
    """The chosen design as a sweep spec's TOML: the base's [data] and [model] as resolved, its
    teachers within the base's token window; checked by the sweep's own resolution."""
    import tomli_w

    from distillscale.sweeps.spec import resolve_sweep_spec

    design = plan.chosen
    teachers: dict[str, Any] = {"n_layers": list(reversed(design.depths)),
                                "tokens_per_param": list(design.tokens_per_param)}
    if design.seeds > 1:
        teachers.update(seeds=design.seeds, seeded="largest")
    family = plan.family   # the runs' window: the base's, narrowed to whole steps and one epoch
    teachers.update({key: int(value) if float(value).is_integer() else value
                     for key, value in (("min_tokens", family.min_tokens), ("max_tokens", family.max_tokens))
                     if 0 < value < math.inf})
    name = f"ladder-{format_quantity(plan.target_params)}".replace(" ", "")
    table = {"name": name, "data": _without_none(base.data), "model": _without_none(base.model), "teachers": teachers}
    resolve_sweep_spec(table, source="the designed spec")   # what `sweep plan` will take, or one line why not
    header = (f"{SIGNATURE}{(' ' + command_line) if command_line else ''}\n"
              f"# target {format_quantity(plan.target_params)} parameters on {format_quantity(plan.target_tokens)} "
              f"tokens; {design.describe()}\n")
    return header + tomli_w.dumps(table)


def _without_none(section: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in section.items() if value is not None}


def _is_ours(path: Path) -> bool:
    with open(path, encoding="utf-8", errors="replace") as handle:
        return handle.readline().startswith(SIGNATURE)


@command(LadderSettings)
def ladder_command(s: LadderSettings) -> None:
    """Design the small runs (sizes, tokens, seeds, WSD forks) whose fitted law predicts a target model
    best within a FLOP budget, by the error the cross-ladder bias model expects at the target."""
    if s.out is not None:
        check_output_file(s.out, overwrite=s.overwrite, is_ours=_is_ours, inputs=[s.base], what="ladder spec")
    plan, base = design_for_base(s.target_params, s.target_tokens, s.budget, s.base, seed_noise=s.seed_noise,
                                 unique_tokens=s.unique_tokens)
    if s.out is not None:
        command_line = shlex.join(to_argv(s.model_copy(update={"out": None, "overwrite": False, "as_json": False})))
        atomic_write_text(s.out, ladder_spec(plan, base, command_line))
    if s.as_json:
        print_json({**plan.to_dict(), "spec": str(s.out) if s.out else None})
        return
    console.print(plan.as_text(), highlight=False, soft_wrap=True)
    if s.out is not None:
        console.print(f"sweep spec: {s.out} (check it with `distillscale sweep plan {s.out}`)", highlight=False)
