"""The validation pack of published runs (`laws.published`): every set loads with its provenance."""

import numpy as np
import pytest

from distillscale.errors import UserError
from distillscale.laws import published

STORED = {"gadre2024_c4": (34, 6), "gadre2024_redpajama": (35, 6), "gadre2024_refinedweb": (35, 6),
          "porian2024_openwebtext2": (88, 16), "porian2024_refinedweb": (88, 16),
          "porian2024_openwebtext2_tuned": (116, 16), "porian2024_refinedweb_tuned": (121, 16),
          "marin2026_comma": (90, 22), "marin2026_dclm": (85, 22), "marin2026_nemotron": (94, 22),
          "li2025_fineweb": (81, 11)}
MARIN = ("marin2026_comma", "marin2026_dclm", "marin2026_nemotron")


@pytest.mark.parametrize("name", sorted(STORED))
def test_each_stored_set_loads_with_its_provenance(name):
    runs = published.load(name)
    rows, sizes = STORED[name]
    assert len(runs) == rows and runs.runs["params"].nunique() == sizes
    N, D, loss = runs.columns()
    total = runs.columns("total_params")[0]
    assert np.all(N > 0) and np.all(D > 0) and np.all((loss > 1.5) & (loss < 9))  # tuned sets: 8.8 at 0.02 D/N
    assert np.all(total > N)  # the sets that have both counts: embeddings add to N
    assert np.all(np.diff(N) >= 0)  # sorted by size
    for part in ("Source:", "commit", "Licence:", "Rows:", "Columns:", "params"):
        assert part in runs.provenance, part
    assert runs.params_counts == "non-embedding"


@pytest.mark.parametrize("name", MARIN)
def test_the_marin_ladders_count_n_without_the_embedding_and_the_untied_head(name):
    runs = published.load(name).runs
    width, depth = runs["width"].to_numpy(), runs["depth"].to_numpy()
    # what is left after both vocabulary matrices (128,256 x width each) is exactly the blocks of a
    # Llama-style model with 4x gated MLPs and query/key norms: the vocabulary and the untied head are right
    np.testing.assert_array_equal(runs["total_params"] - 2 * 128_256 * width, runs["params"])
    np.testing.assert_array_equal(runs["params"], depth * (16 * width**2 + 2 * width + 256) + width)
    assert not runs.duplicated(["params", "tokens"]).any()  # a run trained twice is kept once
    assert runs["params"].min() < 3e7 and runs["params"].max() > 1e10


def test_the_lr_swept_ladder_keeps_the_best_learning_rate_of_each_run():
    runs = published.load("li2025_fineweb").runs
    assert not runs.duplicated(["params", "tokens"]).any()
    assert (runs["learning_rates_tried"] >= 1).all() and (runs["learning_rates_tried"] >= 3).mean() > 0.9
    assert set(runs["learning_rate"]) <= {4e-4, 1e-3, 2e-3, 4e-3, 8e-3}


def test_the_epoch_set_is_read_from_the_reference_data(shared_data):
    runs = published.load("epoch2024_chinchilla")
    assert len(runs) == 240 and "Licence:" in runs.provenance
    N, D, loss = runs.columns()
    np.testing.assert_allclose(6 * N * D, runs.runs["flops"])
    assert loss.max() < 3.5  # the five highest losses are the ones dropped


def test_an_unknown_set_is_a_user_error():
    with pytest.raises(UserError, match="unknown published set 'nope': use one of epoch2024_chinchilla"):
        published.load("nope")
    assert len(published.names()) >= 12


def test_the_data_constrained_set_has_unique_tokens_and_stays_out_of_the_ladders():
    runs = published.load("muennighoff2023_c4")
    assert runs.repeated and "muennighoff2023_c4" in published.repeated_names()
    assert "muennighoff2023_c4" not in published.names()   # bench/laws/extrapolation.py's ladders
    assert len(runs) == 296 and runs.runs["params"].nunique() == 20
    D, U = runs.runs["tokens"].to_numpy(float), runs.runs["unique_tokens"].to_numpy(float)
    assert np.all(U <= D) and np.allclose(runs.runs["epochs"], D / U, rtol=1e-6)
    assert (D / U <= 4).sum() == 97 and (D / U).max() == 9000
    for part in ("Source:", "commit", "Licence:", "Rows:", "Columns:", "params"):
        assert part in runs.provenance, part
