"""Settings besides the rate and the batch that a grid's runs may vary or hold: AdamW's beta2 and
the warmup (optimizer steps), given as optional columns (`fit hyperparameters --beta2-col
--warmup-col`, `fit_hyperparameters(beta2=, warmup=)`).

    cells, notes = setting_cells(columns, ("beta2", "warmup"))    # each (N, D) cell at its best setting
    setting_choices(cells, columns, ("beta2", "warmup"))          # {"beta2": SettingChoice, ...}

The rules, stated once here:
- a cell whose runs vary them is split into slices, one per setting (each distinct (beta2, warmup));
  the cell's surface, optimum and scores come from the slice that holds its best run, the lr x batch
  surface at that setting. A slice with fewer than 3 rates has no surface: where the best run lies in
  one, the best slice with 3 or more rates is taken and a note says so;
- across cells the law carries the setting most cells chose (beta2 and warmup together, so the pair
  is one some cell ran best at); a tie goes to the setting of the largest cell (N, then D), the one
  nearest where a law is extrapolated to. Each value is recorded with how many cells chose it;
- a column with one value in every run is a condition of the law ("it holds at beta2 0.95"), not a
  choice;
- the backtest scores a held-out cell where a user following the law would run it: at the setting
  the law fitted without it carries (`runs_at`), against the cell's best run at any setting; a cell
  with fewer than 3 rates at that setting is scored at its own (`CellScore.beta2`, `.warmup` say
  which).
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from distillscale.laws.hyperparameters.records import SettingChoice
from distillscale.laws.hyperparameters.surface import MIN_VALUES, CellRuns, split_cells
from distillscale.tables import FRACTION, STEP_COUNT, ValueRule

SETTINGS = ("beta2", "warmup")
RULES: dict[str, ValueRule] = {"beta2": FRACTION, "warmup": STEP_COUNT}


def setting_cells(columns: dict[str, np.ndarray], names: tuple[str, ...]) -> tuple[list[CellRuns], list[str]]:
    """Each (N, D) cell's runs at its chosen setting of the `names` columns (module docstring), in
    order of N then D, and a note for each cell whose best run lay at a setting with too few rates."""
    runs = [columns[k] for k in ("params", "tokens", "lr", "batch_tokens", "loss")]
    if not names:
        return split_cells(*runs), []
    params, tokens, lr, batch, loss = runs
    values = np.column_stack([columns[name] for name in names])
    cells, notes = [], []
    for n, d in sorted(set(zip(params.tolist(), tokens.tolist()))):
        in_cell = (params == n) & (tokens == d)
        settings = sorted({tuple(row) for row in values[in_cell].tolist()})
        slices = []
        for setting in settings:
            mask = in_cell & np.all(values == np.array(setting), axis=1)
            slices.append(CellRuns(n, d, lr[mask], batch[mask], loss[mask], tuple(zip(names, setting)), len(settings)))
        by_loss = sorted(range(len(slices)), key=lambda i: (float(slices[i].loss.min()), i))
        usable = [i for i in by_loss if np.unique(slices[i].lr).size >= MIN_VALUES]
        chosen = slices[usable[0] if usable else by_loss[0]]   # none usable: check_cells refuses it
        best = slices[by_loss[0]]
        if best is not chosen:
            notes.append(f"the cell {best.name}: its best run (loss {best.loss.min():.4g}) is at a setting with "
                         f"{np.unique(best.lr).size} rate(s), too few for a surface; fitted at "
                         + ", ".join(f"{k} {v:g}" for k, v in chosen.setting) + ", the best setting with "
                         f"{MIN_VALUES} or more rates")
        cells.append(chosen)
    return cells, notes


def runs_at(columns: dict[str, np.ndarray], cell: CellRuns, setting: tuple[tuple[str, float], ...]) -> CellRuns | None:
    """The runs of `cell`'s (N, D) at `setting` ((name, value) pairs), None where it ran fewer than
    MIN_VALUES rates there (no surface, nothing to score a rate on)."""
    if setting == cell.setting:
        return cell
    mask = (columns["params"] == cell.params) & (columns["tokens"] == cell.tokens)
    for name, value in setting:
        mask &= columns[name] == value
    if np.unique(columns["lr"][mask]).size < MIN_VALUES:
        return None
    return CellRuns(cell.params, cell.tokens, columns["lr"][mask], columns["batch_tokens"][mask], columns["loss"][mask],
                    setting, cell.settings)


def setting_choices(cells: list[CellRuns], columns: dict[str, np.ndarray], names: tuple[str, ...]
                    ) -> dict[str, SettingChoice]:
    """The value of each setting the law carries (module docstring), from the cells' chosen
    settings; a column with one value throughout `columns` is a condition (not varied)."""
    if not names:
        return {}
    chosen = [tuple(v for _, v in cell.setting) for cell in cells]
    counts = Counter(chosen)
    top = max(counts.values())
    # ties: the setting of the largest cell (cells are in order of N then D)
    mode = next(setting for setting in reversed(chosen) if counts[setting] == top)
    out = {}
    for k, name in enumerate(names):
        varied = np.unique(columns[name]).size > 1
        out[name] = SettingChoice(value=float(mode[k]), cells=sum(setting[k] == mode[k] for setting in chosen),
                                  of_cells=len(cells), varied=bool(varied))
    return out
