"""The data-limited runs as the fit reads them (laws.data_limited_runs): the regime's records (two student
sizes, numbered chains, ensembles of 2, 4 and 8 with the mixture's loss, a larger teacher per size, seeds
alone whose mean is the reference) and the earlier one-size records, both read into the same
observations; runs without a loss left out; and the constants recovered from regime records the law made."""

from __future__ import annotations

import json

import numpy as np
import pytest

from distillscale.errors import UserError
from distillscale.laws.data_limited_fit import fit_constants
from distillscale.laws.data_limited_form import Shares
from distillscale.laws.data_limited_runs import load_runs, observations

pytestmark = pytest.mark.fast

TRUTH = Shares(kappa=0.35, lam=0.55, eta=0.05, gamma=0.9, theta=0.4)
POOLS = {"256K": (256000, 0.0), "16K": (16000, 0.5), "4K": (3968, 1.3)}   # unique tokens, alone penalty
SIZES = {"d2": (55632, 0.0), "d3": (187272, -0.25)}                       # parameters, fresh loss offset
SEED_OFFSETS = (0.02, -0.02, 0.01, -0.01)                                   # seeds 1-4 alone: mean 0


def regime_records(shares: Shares = TRUTH, corpora=("a", "b", "c", "d"), generations: int = 4) -> list[dict]:
    """Records as bench/distillation/data_limited.py collect writes them, each loss the law's: per corpus,
    size and pool, four seeds alone (seed s off the mean by SEED_OFFSETS), two chains (chain c from seed c;
    one of 2 generations on the fresh pool), ensembles of 2, 4 (and 8 repeating seeds' losses) with the
    mixture's loss, a larger teacher and its student; one diverged run."""
    out = []

    def record(corpus, size, pool, name, role, loss, **kw):
        unique, _ = POOLS[pool]
        out.append({"corpus": corpus, "run_id": f"{size}-u{pool}-{name}", "role": role, "cell": f"{size}-u{pool}",
                    "pool": pool, "unique_tokens": unique, "tokens": 256000, "epochs": 256000 / unique,
                    "non_embedding_params": kw.pop("params", SIZES[size][0]), "seed": kw.pop("seed", 0),
                    "generation": kw.pop("generation", None), "chain": kw.pop("chain", None),
                    "members": kw.pop("members", None), "teachers": kw.pop("teachers", []), "val_loss": loss,
                    "teacher_val_loss": kw.pop("teacher_val_loss", None),
                    "member_val_losses": kw.pop("member_val_losses", None), "status": kw.pop("status", "completed")})
    for i, corpus in enumerate(corpora):
        for size, (_, offset) in SIZES.items():
            F0 = 3.3 + 0.2 * i + offset
            fresh_seeds = [F0 + d for d in SEED_OFFSETS]
            for pool, (_, P) in POOLS.items():
                fresh = P == 0.0
                seeds = [F0 + P + d for d in SEED_OFFSETS]
                for s, loss in enumerate(seeds, 1):
                    record(corpus, size, pool, f"alone-s{s}", "alone", loss, seed=s)
                first_students = []
                for c in (1,) if fresh else (1, 2):
                    L, F, p = seeds[c - 1], fresh_seeds[c - 1], P
                    for g in range(1, (2 if fresh else generations) + 1):
                        step = 0.03 * 0.5 ** (g - 1)   # the fresh chain's drift
                        F, p = F + step, float(shares.student_penalty(p, P))
                        L = L + step + p - (P if g == 1 else previous)
                        previous = p
                        teacher = (f"{size}-u{pool}-alone-s{c}" if g == 1 else
                                   f"{size}-u{pool}-chain{c}/generation-{g - 1}")
                        record(corpus, size, pool, f"chain{c}/generation-{g}", "chain", L, generation=g, chain=c,
                               teachers=[teacher])
                        if g == 1:
                            first_students.append(L)
                one_member = float(np.mean(first_students))
                for k in (2,) if fresh else (2, 4, 8):
                    members = [seeds[j % 4] for j in range(k)]
                    L1 = float(np.mean(members))
                    Lk = L1 * (1 - float(shares.ensemble_share(k)))
                    record(corpus, size, pool, f"ensemble{k}", "ensemble",
                           one_member - float(shares.ensemble_student_gain(L1 - Lk)), members=k,
                           teachers=[f"{size}-u{pool}-alone-s{j % 4 + 1}" for j in range(k)] if k <= 4 else
                           [f"{size}-u{pool}-alone-s{j + 1}" for j in range(k)],
                           teacher_val_loss=Lk, member_val_losses=members)
                larger_F, larger_p = F0 - 0.3, 1.2 * P
                record(corpus, size, pool, "larger", "larger", larger_F + larger_p, params=3.4 * SIZES[size][0],
                       teachers=[f"{size}-u{pool}-larger-x1"])
                F_S = F0 + 0.01
                record(corpus, size, pool, "from-larger", "student-of-larger",
                       F_S + float(shares.student_penalty(larger_p, P)), teachers=[f"{size}-u{pool}-larger"])
                record(corpus, size, pool, "wd-hi", "grid", None, status="diverged")
    return out


def old_records() -> list[dict]:
    """Records of the one-size schema (bench/data/data_limited_runs.json): one chain per cell, gen{g}, from
    alone-s0; no chain number, no cell, no member losses."""
    out = []

    def record(pool, name, role, loss, **kw):
        out.append({"corpus": "a", "run_id": f"d2-u{pool}-{name}", "role": role, "depth": 2, "pool": pool,
                    "unique_tokens": None, "tokens": 256000, "non_embedding_params": 55632, "seed": kw.get("seed", 0),
                    "weight_decay": None, "generation": kw.get("generation"), "members": kw.get("members"),
                    "teachers": kw.get("teachers", []), "val_loss": loss, "teacher_val_loss": kw.get("tvl")})
    for pool, P in (("256K", 0.0), ("16K", 0.4)):
        for s in range(3):
            record(pool, f"alone-s{s}", "alone", 3.5 + P + 0.01 * s, seed=s)
        for g in range(1, 3):
            record(pool, f"gen{g}", "chain", 3.5 + P * 0.8 - 0.01 * g, generation=g,
                   teachers=[f"d2-u{pool}-alone-s0" if g == 1 else f"d2-u{pool}-gen{g - 1}"])
        record(pool, "ensemble2", "ensemble", 3.45 + P, members=2, teachers=[f"d2-u{pool}-alone-s0",
                                                                          f"d2-u{pool}-alone-s1"], tvl=3.4 + P)
    return out


def write(tmp_path, records) -> list:
    path = tmp_path / "runs.json"
    path.write_text(json.dumps({"command": "test", "runs": records}))
    return load_runs(path)


def test_each_chain_of_a_cell_is_kept_apart_from_its_own_seed_with_the_seeds_mean_as_reference(tmp_path):
    obs = observations(write(tmp_path, regime_records()))
    repeated = [c for c in obs.chains if c.group == ("a", "d2", "4K")]
    assert sorted(c.chain for c in repeated) == [1, 2]
    one, two = sorted(repeated, key=lambda c: c.chain)
    assert len(one.losses) == len(two.losses) == 5 and one.losses != two.losses
    F0 = 3.3
    assert one.losses[0] == pytest.approx(F0 + 1.3 + SEED_OFFSETS[0])   # chain 1 from seed 1, chain 2 from seed 2
    assert two.losses[0] == pytest.approx(F0 + 1.3 + SEED_OFFSETS[1])
    assert one.alone_mean == two.alone_mean == pytest.approx(F0 + 1.3)  # the reference: the seeds' mean
    assert one.penalty == pytest.approx(1.3) and one.fresh_group == ("a", "d2", "256K")
    assert two.fresh == one.fresh   # the fresh pool's one chain is both chains' twin
    summary = {c.group: c for c in obs.cells}
    assert summary[("a", "d2", "4K")].seeds == 4 and summary[("a", "d2", "4K")].alone_mean == pytest.approx(F0 + 1.3)
    # 4 corpora x 2 sizes x 2 repeated pools x 2 chains
    assert len(obs.chains) == 32 and {c.size for c in obs.chains} == {"d2", "d3"}


def test_ensembles_of_two_four_and_eight_take_the_mixture_loss_and_their_members_mean(tmp_path):
    records = regime_records()
    obs = observations(write(tmp_path, records))
    cell = [e for e in obs.ensembles if e.group == ("b", "d3", "16K")]
    assert sorted(e.members for e in cell) == [2, 4, 8]
    eight = next(e for e in cell if e.members == 8)
    run = next(r for r in records if r["corpus"] == "b" and r["run_id"] == "d3-u16K-ensemble8")
    assert eight.L_k == run["teacher_val_loss"] and eight.student == run["val_loss"]
    assert eight.L_1 == pytest.approx(np.mean(run["member_val_losses"]))   # seeds 5-8 missing: the measured members
    chains = [c for c in obs.chains if c.group == ("b", "d3", "16K")]
    assert eight.one_member_student == pytest.approx(np.mean([c.losses[1] for c in chains]))
    assert sorted({e.members for e in obs.ensembles if e.group[2] == "256K"}) == [2]


def test_both_sizes_students_of_their_larger_teacher_are_read_with_fresh_twins(tmp_path):
    obs = observations(write(tmp_path, regime_records()))
    assert len(obs.students) == 4 * 2 * 2
    assert {s.group[1] for s in obs.students} == {"d2", "d3"}
    s = next(s for s in obs.students if s.group == ("c", "d3", "4K"))
    assert s.L_T - s.F_T == pytest.approx(1.2 * 1.3) and s.own_penalty == pytest.approx(1.3)


def test_runs_without_a_loss_are_left_out_and_a_malformed_record_is_one_line(tmp_path):
    records = regime_records(corpora=("a",))
    runs = write(tmp_path, records)
    assert len(runs) == sum(r["val_loss"] is not None for r in records) < len(records)
    with pytest.raises(UserError, match="malformed"):
        write(tmp_path, [{"corpus": "a", "run_id": "d2-u4K-alone-s1", "val_loss": 3.0}])
    with pytest.raises(UserError, match="not a data-limited runs file"):
        (tmp_path / "bad.json").write_text("[]")
        load_runs(tmp_path / "bad.json")


def test_the_one_size_records_are_still_read(tmp_path):
    obs = observations(write(tmp_path, old_records()))
    (chain,) = obs.chains
    assert chain.chain == 1 and chain.group == ("a", "d2", "16K")
    assert chain.losses == pytest.approx((3.9, 3.5 + 0.32 - 0.01, 3.5 + 0.32 - 0.02))   # from alone-s0
    assert chain.alone_mean == pytest.approx(3.91) and chain.penalty == pytest.approx(0.4)
    assert chain.fresh == pytest.approx((3.5, 3.49, 3.48))
    (repeated,) = [e for e in obs.ensembles if e.group[2] == "16K"]
    assert repeated.members == 2 and repeated.L_1 == pytest.approx(3.905)
    assert repeated.one_member_student == chain.losses[1]


def test_every_constant_is_recovered_from_regime_records_with_two_chains_a_cell(tmp_path):
    """Both chains of a cell, both sizes, ensembles of 2, 4 and 8: fitted as the law made them (read by
    generation alone, the two chains would mix and the shares come out wrong)."""
    fit = fit_constants(observations(write(tmp_path, regime_records())))
    for name in ("kappa", "lam", "eta", "gamma", "theta"):
        assert float(getattr(fit.shares, name)) == pytest.approx(float(getattr(TRUTH, name)), abs=2e-3), name
    assert fit.rho == pytest.approx(0.5)
