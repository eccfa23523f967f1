"""`distillscale ladder`: the ladder designer (`planning.ladder`) on the command line. It prints the
chosen design and the cheaper ones with their expected error at the target and their cost, and
writes the chosen design as a sweep spec (`ladder_spec`) that `distillscale sweep plan` and `sweep
run` take: the [data] and [model] sections of a base spec (default: the GPU ladder's,
report/gpu_ladder.toml), the design's teachers in [teachers] (depths, tokens per parameter, seeds of
the largest size), nothing else.

    distillscale ladder --target-params 1B --target-tokens 20B --budget 1e20 --out ladder.toml
    distillscale sweep plan ladder.toml
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, ClassVar

from distillscale.cli_options import CommandSettings, command, option
from distillscale.console import console, print_json
from distillscale.errors import UserError
from distillscale.io import atomic_write_text, check_output_file
from distillscale.planning.ladder import LadderPlan, design_ladder
from distillscale.settings import quantity
from distillscale.units import Quantity, format_quantity

BASE_SPEC = Path(__file__).resolve().parents[1] / "report" / "gpu_ladder.toml"
# The first line of a spec `ladder` writes: how --overwrite recognises one.
SIGNATURE = "# designed by `distillscale ladder`"


class LadderSettings(CommandSettings):
    """`distillscale ladder`."""

    command_path: ClassVar[str] = "ladder"

    target_params: Annotated[float, quantity("--target-params", kind=Quantity.PARAMS)] = option(
        ..., help="the model to predict: non-embedding parameters, e.g. 1B")
    target_tokens: Annotated[float, quantity("--target-tokens", kind=Quantity.TOKENS)] = option(
        ..., help="its training tokens, e.g. 20B")
    budget: Annotated[float, quantity("--budget", kind=Quantity.FLOPS)] = option(
        ..., help="training FLOPs for the whole ladder (6 N D per run, WSD cooldowns priced as sweep plan does), "
                  "e.g. 1e20")
    base: Path | None = option(None, help="a sweep spec whose \\[data] and \\[model] the ladder keeps (its model "
                                          "family: aspect_ratio, head_dim); default: the GPU ladder's")
    seed_noise: float = option(0.0, help="relative sd of one run's loss across seeds (e.g. 0.003): more seeds at the "
                                         "largest size average it; 0 (the default) never pays for a second seed")
    out: Path | None = option(None, help="write the chosen design's sweep spec (TOML) here")
    overwrite: bool = option(False, help="replace --out if `distillscale ladder` wrote it")
    as_json: bool = option(False, flag="--json", help="print JSON")


def read_base(path: Path | None) -> dict:
    """The base spec's tables ([data] and [model] are kept); a UserError for a file that is not one."""
    source = BASE_SPEC if path is None else Path(path)
    try:
        table = tomllib.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"--base {source} does not exist: give a sweep spec (TOML), or leave --base out") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UserError(f"--base {source} is not a readable TOML sweep spec: {exc}") from None
    missing = [name for name in ("data", "model") if not isinstance(table.get(name), dict)]
    if missing:
        raise UserError(f"--base {source} has no [{missing[0]}] section: give a sweep spec with [data] and [model]")
    return table


def ladder_spec(plan: LadderPlan, base: dict, command_line: str = "") -> str:
    """The chosen design as a sweep spec's TOML: the base's [data] and [model], its teachers."""
    import tomli_w

    design = plan.chosen
    if design.depths is None:
        raise UserError("the design's sizes are not depths of a model family: a sweep spec needs depths")
    teachers = {"n_layers": list(reversed(design.depths)), "tokens_per_param": [float(f"{r:.4g}")
                                                                                for r in design.tokens_per_param]}
    if design.seeds > 1:
        teachers.update(seeds=design.seeds, seeded="largest")
    name = f"ladder-{format_quantity(plan.target_params)}".replace(" ", "")
    header = (f"{SIGNATURE}{(' ' + command_line) if command_line else ''}\n"
              f"# target {format_quantity(plan.target_params)} parameters on {format_quantity(plan.target_tokens)} "
              f"tokens; {design.describe()}\n")
    return header + tomli_w.dumps({"name": name, "data": base["data"], "model": base["model"], "teachers": teachers})


def _is_ours(path: Path) -> bool:
    with open(path, encoding="utf-8", errors="replace") as handle:
        return handle.readline().startswith(SIGNATURE)


@command(LadderSettings)
def ladder_command(s: LadderSettings) -> None:
    """Design the small runs (sizes, tokens, seeds, WSD forks) whose fitted law predicts a target model
    best within a FLOP budget, by the error the cross-ladder bias model expects at the target."""
    if s.out is not None:
        check_output_file(s.out, overwrite=s.overwrite, is_ours=_is_ours, inputs=[s.base], what="ladder spec")
    base = read_base(s.base)
    model = base["model"]
    plan = design_ladder(s.target_params, s.target_tokens, s.budget, seed_noise=s.seed_noise,  # its flags' names
                         aspect_ratio=int(model.get("aspect_ratio", 64)), head_dim=int(model.get("head_dim", 64)))
    if s.out is not None:
        command_line = (f"--target-params {format_quantity(s.target_params)} --target-tokens "
                        f"{format_quantity(s.target_tokens)} --budget {s.budget:.3g}")
        atomic_write_text(s.out, ladder_spec(plan, base, command_line))
    if s.as_json:
        print_json({**plan.to_dict(), "spec": str(s.out) if s.out else None})
        return
    console.print(plan.as_text(), highlight=False, soft_wrap=True)
    if s.out is not None:
        console.print(f"sweep spec: {s.out} (check it with `distillscale sweep plan {s.out}`)", highlight=False)
