"""The data-limited distillation law's constants, fitted on the micro-scale measurements
(bench/data/data_limited_runs.json, made by bench/distillation/data_limited.py), and checked left out a
corpus at a time.

Each model has a state (L, F): L its loss on its pool, F the loss it would reach on fresh data at the same
size and tokens (here: the same run on the 1-epoch pool). The law and its fits are the product's
(src/distillscale/laws/data_limited_fit.py, which `distillscale demo --data-limited` fits on a user's runs):

    student of a teacher (L_T, F_T):  L_S = F_S + kappa (L_T - F_T) + delta_S
    ensemble of k trained alone:      L_k = L_1 - eta (1 - 1/k) (L_1 - F_1)

F_S is the student's loss as if everything were fresh (the distillation law on F_T; measured here: the
same student on the 1-epoch pool), delta_S the student's own repetition penalty, priced as the product
prices it (the distilled R_D*: `own_share` of the penalty its size pays trained alone on the pool), so
kappa is fitted alone; both shares free (delta_S = lambda times that penalty) are reported beside it.
kappa is the share of its teacher's repetition penalty a student inherits: below 1, a student can beat a
teacher limited by repetition.

Pairs used for kappa and lambda, per corpus, depth and repeated pool: generation 1 (teacher: trained
alone, seed 0), generation 2 (teacher: generation 1), the student of the larger teacher, the student of
the ensemble of 2: those whose teacher's and student's 1-epoch twins were run. Generations 3-4 and the
ensemble of 3 are scored by the law, never fitted.

Left out a corpus at a time: kappa and eta fitted on the others; the left-out corpus's first
generation's Delta (generation 1 against its teacher trained alone) predicted from its own 1-epoch runs
and its runs trained alone, with a 90% interval: the fit's parameter spread (bootstrap over the training
corpora's cells) plus the training pairs' residual scale; coverage, sign, and the chain's settling loss
(generation 4) against the law's recursion.

Usage:
    python bench/laws/data_limited_fit.py [--runs bench/data/data_limited_runs.json] [--write]
        --write: store kappa and eta (fitted on every corpus) in src/distillscale/laws/data_limited.json
"""

from __future__ import annotations

import argparse
import json
import os
from collections import defaultdict
from pathlib import Path

import numpy as np

from distillscale.laws import data_limited_fit as laws_fit
from distillscale.laws.data_limited_fit import EnsemblePair, StudentPair

ROOT = Path(__file__).resolve().parents[2]
FRESH = "256K"
EPOCHS = {"16K": 16.0, "4K": 64.0}   # the repeated pools' epochs (D = 256K tokens)
Z90 = 1.6449


def load(path: Path) -> dict:
    runs = json.loads(path.read_text())["runs"]
    table: dict = defaultdict(dict)
    for run in runs:
        table[(run["corpus"], run["depth"], run["pool"])][run["run_id"].split("-", 2)[-1]] = run
    return table


def _loss(cell: dict, name: str, teacher: bool = False) -> float | None:
    run = cell.get(name)
    if run is None:
        return None
    return run["teacher_val_loss"] if teacher else run["val_loss"]


def _alone(cell: dict, seeds=("alone-s0", "alone-s1", "alone-s2")) -> float | None:
    values = [cell[s]["val_loss"] for s in seeds if s in cell]
    return float(np.mean(values)) if values else None


def pairs(table: dict) -> list[dict]:
    """(corpus, depth, pool, kind, L_T, F_T, L_S, F_S, penalty alone) for every student with 1-epoch twins."""
    out = []
    for (corpus, depth, pool), cell in table.items():
        if pool == FRESH:
            continue
        fresh = table.get((corpus, depth, FRESH), {})
        alone, alone_fresh = _alone(cell), _alone(fresh)
        if alone is None or alone_fresh is None:
            continue
        specs = [("gen1", "alone-s0", "gen1", False), ("gen2", "gen1", "gen2", False),
                 ("from-larger", "larger", "from-larger", False), ("ensemble2", "ensemble2", "ensemble2", True)]
        for kind, teacher, student, mixture in specs:
            values = (_loss(cell, teacher, mixture), _loss(fresh, teacher, mixture),
                      _loss(cell, student), _loss(fresh, student))
            if None in values:
                continue
            out.append({"corpus": corpus, "depth": depth, "pool": pool, "kind": kind, "L_T": values[0],
                        "F_T": values[1], "L_S": values[2], "F_S": values[3], "penalty_alone": alone - alone_fresh,
                        "epochs": EPOCHS[pool]})
    return out


# The product prices a distilled student's own repetition with the distilled R_D* (37, measured at micro
# scale with a fresh teacher), a model trained alone with the supervised one (5.2 at micro scale): at E
# epochs the student's own penalty is then about this share of its size's penalty trained alone (the
# D term's exponent taken as 0.3; the share moves little with it): 0.16 at 16 epochs, 0.24 at 64.
R_D_DISTILLED, R_D_SUPERVISED, D_EXPONENT = 37.0, 5.2, 0.3


def own_share(epochs: float) -> float:
    def worth(r_star: float) -> float:   # (D'/D)^-beta - 1: the D term's rise under repetition
        effective = 1 + r_star * (1 - np.exp(-(epochs - 1) / r_star))
        return (effective / epochs) ** -D_EXPONENT - 1
    return float(worth(R_D_DISTILLED) / worth(R_D_SUPERVISED))


def fit_kappa_own(rows: list[dict]) -> tuple[float, float]:
    """kappa by least squares of L_S - F_S - share(epochs) P_S on L_T - F_T, no intercept, bounded to
    [0, 1] (the student's own penalty priced as the product prices it); the residual RMS."""
    x = np.array([r["L_T"] - r["F_T"] for r in rows])
    y = np.array([r["L_S"] - r["F_S"] - own_share(r["epochs"]) * r["penalty_alone"] for r in rows])
    kappa = float(np.clip(x @ y / (x @ x), 0.0, 1.0))
    return kappa, float(np.sqrt(np.mean((y - kappa * x) ** 2)))


def bootstrap_kappa_own(rows: list[dict], draws: int = 400, seed: int = 0) -> np.ndarray:
    """kappa refitted on cells (corpus, depth, pool) resampled with replacement."""
    return laws_fit.bootstrap_groups(rows, lambda r: (r["corpus"], r["depth"], r["pool"]),
                                     lambda sample: fit_kappa_own(sample)[0], draws, seed)


def _pair(r: dict) -> StudentPair:
    return StudentPair(r["L_T"], r["F_T"], r["L_S"], r["F_S"], r["penalty_alone"], (r["corpus"], r["depth"], r["pool"]))


def fit_kappa_lambda(rows: list[dict]) -> tuple[float, float, float]:
    """Least squares of L_S - F_S on (L_T - F_T, penalty alone), no intercept; the residual RMS."""
    fit = laws_fit.fit_kappa_lambda([_pair(r) for r in rows])
    return fit.kappa, fit.lam, fit.residual_rms


def ensembles(table: dict) -> list[dict]:
    out = []
    for (corpus, depth, pool), cell in table.items():
        if pool == FRESH:
            continue
        fresh = table.get((corpus, depth, FRESH), {})
        for k in (2, 3):
            mixture = _loss(cell, f"ensemble{k}", teacher=True)
            seeds = tuple(f"alone-s{s}" for s in range(k))
            single, single_fresh = _alone(cell, seeds), _alone(fresh, ("alone-s0", "alone-s1"))
            if mixture is None or single is None or single_fresh is None:
                continue
            out.append({"corpus": corpus, "depth": depth, "pool": pool, "k": k, "L_1": single,
                        "F_1": single_fresh, "L_k": mixture})
    return out


def fit_eta(rows: list[dict]) -> float:
    return laws_fit.fit_eta([EnsemblePair(r["k"], r["L_1"], r["F_1"], r["L_k"]) for r in rows])


def bootstrap(rows: list[dict], draws: int = 400, seed: int = 0) -> np.ndarray:
    """kappa, lambda refitted on cells (corpus, depth, pool) resampled with replacement."""
    return laws_fit.bootstrap_kappa_lambda([_pair(r) for r in rows], draws, seed)


def chain_prediction(table: dict, corpus: str, depth: int, pool: str, kappa: float, lam: float) -> list[tuple]:
    """Generations 1-4 by the law's recursion from the cell's runs trained alone and its 1-epoch chain (F of
    generations past the fresh chain's last held at its last value)."""
    cell, fresh = table[(corpus, depth, pool)], table.get((corpus, depth, FRESH), {})
    alone_fresh = _alone(fresh)
    if alone_fresh is None or "alone-s0" not in cell:
        return []
    penalty_alone = _alone(cell) - alone_fresh
    fresh_chain = [alone_fresh] + [_loss(fresh, f"gen{g}") for g in (1, 2)]
    if None in fresh_chain:
        return []
    L, F, out = cell["alone-s0"]["val_loss"], fresh_chain[0], []
    for g in range(1, 5):
        F_next = fresh_chain[min(g, len(fresh_chain) - 1)]
        L = F_next + kappa * (L - F) + lam * penalty_alone
        F = F_next
        out.append((g, L, _loss(cell, f"gen{g}")))
    return out


def left_out(table: dict, rows: list[dict], ens_rows: list[dict]) -> dict:
    corpora = sorted({r["corpus"] for r in rows})
    checks, chains, ens_checks = [], [], []
    for corpus in corpora:
        train = [r for r in rows if r["corpus"] != corpus]
        if len({r["corpus"] for r in train}) < 1:
            continue
        kappa, rms = fit_kappa_own(train)
        spread = bootstrap_kappa_own(train, draws=200)
        eta = fit_eta([r for r in ens_rows if r["corpus"] != corpus]) if ens_rows else None
        for r in rows:
            if r["corpus"] != corpus or r["kind"] != "gen1":
                continue
            own = own_share(r["epochs"]) * r["penalty_alone"]
            predicted = r["F_S"] + kappa * (r["L_T"] - r["F_T"]) + own - r["L_T"]
            draws = r["F_S"] + spread * (r["L_T"] - r["F_T"]) + own - r["L_T"]
            half = Z90 * np.sqrt(np.var(draws) + rms ** 2)
            measured = r["L_S"] - r["L_T"]
            checks.append({"corpus": corpus, "depth": r["depth"], "pool": r["pool"],
                           "measured": measured / r["L_T"], "predicted": predicted / r["L_T"],
                           "interval": [(predicted - half) / r["L_T"], (predicted + half) / r["L_T"]],
                           "covered": bool(abs(measured - predicted) <= half),
                           "sign_right": bool(np.sign(measured) == np.sign(predicted))})
        for (c, depth, pool) in sorted(table):
            if c != corpus or pool == FRESH:
                continue
            for g, predicted, measured in chain_prediction(table, c, depth, pool, kappa, own_share(EPOCHS[pool])):
                if measured is not None:
                    chains.append({"corpus": c, "depth": depth, "pool": pool, "generation": g,
                                   "predicted": predicted, "measured": measured,
                                   "error": predicted / measured - 1})
        for r in ens_rows:
            if r["corpus"] == corpus and eta is not None:
                predicted = r["L_1"] - eta * (1 - 1 / r["k"]) * (r["L_1"] - r["F_1"])
                ens_checks.append({**r, "predicted": predicted, "error": predicted / r["L_k"] - 1})
    return {"first_generation": checks, "chains": chains, "ensembles": ens_checks}


def report(table: dict) -> dict:
    rows, ens_rows = pairs(table), ensembles(table)
    kappa, rms = fit_kappa_own(rows)
    kappas = bootstrap_kappa_own(rows)
    free_kappa, lam, _ = fit_kappa_lambda(rows)
    spread = bootstrap(rows)
    eta = fit_eta(ens_rows) if ens_rows else None
    summary = {"pairs": len(rows), "kappa": kappa, "kappa_interval": list(np.quantile(kappas, [0.05, 0.95])),
               "own_share": {f"{e:g}": own_share(e) for e in EPOCHS.values()},
               "free_kappa": free_kappa, "free_kappa_interval": list(np.quantile(spread[:, 0], [0.05, 0.95])),
               "lambda": lam, "lambda_interval": list(np.quantile(spread[:, 1], [0.05, 0.95])),
               "residual_rms": rms, "eta": eta, "ensembles": len(ens_rows)}
    if ens_rows:
        etas = [fit_eta([ens_rows[i] for i in np.random.default_rng(s).integers(0, len(ens_rows), len(ens_rows))])
                for s in range(400)]
        summary["eta_interval"] = list(np.quantile(etas, [0.05, 0.95]))
    summary["left_out"] = left_out(table, rows, ens_rows) if len({r["corpus"] for r in rows}) > 1 else None
    return summary


def print_report(summary: dict) -> None:
    shares = ", ".join(f"{v:.2f} at {e} epochs" for e, v in summary["own_share"].items())
    print(f"pairs {summary['pairs']}: kappa {summary['kappa']:.3f} {np.round(summary['kappa_interval'], 3)} with the "
          f"student's own penalty as the distilled R_D* prices it ({shares} of its size's alone); residual RMS "
          f"{summary['residual_rms']:.4f} nats/token")
    print(f"  both free: kappa {summary['free_kappa']:.3f} {np.round(summary['free_kappa_interval'], 3)}, "
          f"lambda {summary['lambda']:.3f} {np.round(summary['lambda_interval'], 3)}")
    if summary["eta"] is not None:
        print(f"ensembles {summary['ensembles']}: eta {summary['eta']:.3f} {np.round(summary['eta_interval'], 3)}")
    lo = summary["left_out"]
    if not lo:
        return
    first = lo["first_generation"]
    print("\nfirst generation vs its teacher trained alone, left out a corpus at a time (Delta, % of L_T):")
    print("| corpus | depth | pool | measured | predicted [90%] | covered | sign |")
    print("|---|---|---|---|---|---|---|")
    for c in first:
        print(f"| {c['corpus']} | {c['depth']} | {c['pool']} | {100 * c['measured']:+.2f}% | "
              f"{100 * c['predicted']:+.2f}% [{100 * c['interval'][0]:+.2f}, {100 * c['interval'][1]:+.2f}] | "
              f"{'yes' if c['covered'] else 'no'} | {'right' if c['sign_right'] else 'wrong'} |")
    big = [c for c in first if abs(c["measured"]) > 0.02]
    print(f"covered {sum(c['covered'] for c in first)}/{len(first)}; sign right on |Delta| > 2%: "
          f"{sum(c['sign_right'] for c in big)}/{len(big)}")
    settle = [c for c in lo["chains"] if c["generation"] == 4]
    if settle:
        print(f"chain's generation 4 (settling loss): mean |error| {100 * np.mean([abs(c['error']) for c in settle]):.2f}%, "
              f"max {100 * max(abs(c['error']) for c in settle):.2f}% over {len(settle)} chains")
    if lo["ensembles"]:
        errors = [abs(c["error"]) for c in lo["ensembles"]]
        print(f"ensembles' loss: mean |error| {100 * np.mean(errors):.2f}% over {len(errors)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=Path, default=ROOT / "bench" / "data" / "data_limited_runs.json")
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--json", type=Path, help="write the whole report here")
    args = parser.parse_args()
    summary = report(load(args.runs))
    print_report(summary)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1) + "\n")
    if args.write:
        path = ROOT / "src" / "distillscale" / "laws" / "data_limited.json"
        constants = json.loads(path.read_text()) if path.exists() else {}
        constants |= {"kappa": {"value": summary["kappa"], "interval": summary["kappa_interval"]},
                      "eta": {"value": summary["eta"], "interval": summary.get("eta_interval")},
                      "level": 0.9,
                      "source": "measured at micro scale (bench/laws/data_limited_fit.py on "
                                "bench/data/data_limited_runs.json)",
                      "note": "kappa: the share of its teacher's repetition penalty a student inherits; eta: the "
                              "share of a member's repetition penalty an ensemble of many removes; the student's "
                              "own repetition is priced by the distilled R_D*. 90% intervals: bootstrap over "
                              "(corpus, size, pool) cells."}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(constants, indent=1) + "\n")
        os.replace(tmp, path)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
