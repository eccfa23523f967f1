"""`--student-init DIR`: a student that starts from a Llama/Qwen3 directory or a run, not from random weights."""

from __future__ import annotations

import inspect
import json
import math

import pytest
import safetensors.torch
import torch
from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

from distillscale.data.tokenizer import END_OF_TEXT, train_byte_level_bpe
from distillscale.model.checkpoint import load_config
from distillscale.model.hf_import import import_hf

pytestmark = pytest.mark.usefixtures("cache_dir", "one_thread")

VOCAB = 320
RUN = ("--max-bytes", "100k", "--seq-len", "32", "--batch-size", "8", "--eval-tokens", "1k", "--tokens", "512",
       "--device", "cpu", "--eval-every", "0")


@pytest.fixture(scope="module")
def tokenizer():
    return train_byte_level_bpe([inspect.getsource(json) * 50], vocab_size=VOCAB)


def save_qwen3(directory, tokenizer, vocab_size=384):
    """A tiny random Qwen3 (padded vocabulary, grouped-query attention) with its tokenizer."""
    config = Qwen3Config(vocab_size=vocab_size, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=64,
                         architectures=["Qwen3ForCausalLM"])
    torch.manual_seed(0)
    Qwen3ForCausalLM(config).save_pretrained(directory)
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=END_OF_TEXT).save_pretrained(directory)
    return directory


def test_a_student_starts_from_an_imported_qwen3(cli, tmp_path, tokenizer):
    start = save_qwen3(tmp_path / "qwen3", tokenizer)
    code, out, err = cli("distill", "--teacher", start, "--student-init", start, "--out", tmp_path / "student",
                         *RUN, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["status"] == "completed" and math.isfinite(result["val_loss"])
    imported = import_hf(start)
    # The student is the Qwen3's shape at the tokenizer's vocabulary, and its w_0 the Qwen3's weights.
    model_config = load_config(tmp_path / "student").model_dump() | load_config(tmp_path / "student").derived_shape()
    assert {key: model_config[key] for key in ("d_model", "n_heads", "n_kv_heads", "d_ff", "n_layers",
                                               "vocab_size", "mup")} == {
        "d_model": 64, "n_heads": 4, "n_kv_heads": 2, "d_ff": 96, "n_layers": 2, "vocab_size": VOCAB, "mup": False}
    assert result["non_embedding_params"] == imported.config.non_embedding_params
    initial = safetensors.torch.load_file(tmp_path / "student" / "state" / "initial_weights.safetensors")
    start_state = imported.state_dict()
    assert torch.equal(initial["blocks.1.attn.qkv.weight"], start_state["blocks.1.attn.qkv.weight"])
    assert torch.equal(initial["lm_head.weight"], start_state["lm_head.weight"][:VOCAB])
    # The teacher is the same model through the fast path: its loss is the student's starting loss,
    # and the student's is no worse than a random model's.
    assert result["teacher"]["kind"] == "hf" and "exact" in result["teacher"]["flops_method"]


def test_student_init_refusals_are_one_line(cli, tmp_path, tokenizer):
    start = save_qwen3(tmp_path / "qwen3", tokenizer)
    other = save_qwen3(tmp_path / "other", train_byte_level_bpe([inspect.getsource(inspect) * 5], vocab_size=VOCAB))
    malformed, typeless = save_qwen3(tmp_path / "malformed", tokenizer), save_qwen3(tmp_path / "typeless", tokenizer)
    (malformed / "config.json").write_text("{not json")  # was "holds neither ... nor a Hugging Face config.json"
    (typeless / "config.json").write_text('{"hidden_size": 64}')
    for extra, message in [
        (("--student-init", malformed), f"{malformed / 'config.json'} is not readable JSON"),
        (("--student-init", typeless), "config.json has no model_type: it is not a Hugging Face model's config"),
        (("--student-init", start, "--n-layers", "2"), "--n-layers does not mix with --student-init"),
        (("--student-init", other), "was saved with a tokenizer other than this run's"),
        (("--student-init", tmp_path / "missing"), "does not exist"),
        ((), "give the model's depth with --n-layers"),
    ]:
        code, _, err = cli("distill", "--teacher", start, "--out", tmp_path / "student", *RUN, *extra)
        assert code == 2 and message in err, err
        lines = [line for line in err.splitlines() if line.strip() and "Writing model shards" not in line
                 and not line.startswith("warning: ")]   # the corpus's own warnings, said before any refusal
        assert len(lines) == 1, err
        assert not (tmp_path / "student").exists()


def test_a_start_without_mup_trains_at_a_continued_pretraining_lr(cli, tmp_path, tokenizer):
    """M6: an imported Qwen3 (no muP) trained at the muP base lr 1e-2, 30-100x a continued-pretraining
    rate, without a word. Its default is START_LR now, recorded; a given lr far above it warns in one line."""
    from distillscale.training.start_lr import START_LR

    start = save_qwen3(tmp_path / "qwen3", tokenizer)
    code, out, err = cli("train", "--student-init", start, "--tokenizer", start, "--out", tmp_path / "default", *RUN, "--json")
    assert code == 0, err
    assert json.loads(out)["lr"] == START_LR and "--lr" not in err
    assert json.loads((tmp_path / "default" / "config.json").read_text())["config"]["lr"] == START_LR
    code, out, err = cli("train", "--student-init", start, "--tokenizer", start, "--out", tmp_path / "given", *RUN, "--lr", "1e-2", "--json")
    assert code == 0 and json.loads(out)["lr"] == 1e-2, err
    warning = [line for line in err.splitlines() if "--lr 0.01" in line]
    assert len(warning) == 1 and "33x the 0.0003" in warning[0] and "lower --lr, or leave it out" in warning[0], err
    code, out, err = cli("train", "--student-init", start, "--tokenizer", start, "--out", tmp_path / "low", *RUN, "--lr", "1e-3", "--json")
    assert code == 0 and json.loads(out)["lr"] == 1e-3 and "--lr" not in err, err


def test_a_run_cannot_write_over_its_own_start(cli, tmp_path, tokenizer):
    """LOSS: `--student-init X --out X --overwrite` replaced the start it had just read, and config.json named
    the run as its own start (student_init was not among the inputs checked against --out)."""
    start = save_qwen3(tmp_path / "qwen3", tokenizer)
    run = tmp_path / "run"
    assert cli("train", "--student-init", start, "--tokenizer", start, "--out", run, *RUN)[0] == 0
    before = {path.name: path.read_bytes() for path in run.iterdir() if path.is_file()}
    for out in (run, run / "inside"):
        code, _, err = cli("train", "--student-init", run, "--tokenizer", start, "--out", out, *RUN, "--overwrite")
        assert code == 2 and f"--out {out}" in err and "input of this command" in err, err
        assert len(err.strip().splitlines()) == 1, err
    assert {path.name: path.read_bytes() for path in run.iterdir() if path.is_file()} == before


def test_a_start_is_checked_against_the_run_tokenizer_and_context(cli, tmp_path, tokenizer):
    """SILENT: a start saved without its tokenizer was cut to the run's vocabulary whatever its size (a 5,000-row
    model trained on a 320-id tokenizer, no word); a family start's context was stretched to any --seq-len."""
    alien = save_qwen3(tmp_path / "alien", tokenizer, vocab_size=5000)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (alien / name).unlink(missing_ok=True)
    run = ("--tokenizer", save_qwen3(tmp_path / "qwen3", tokenizer), "--out", tmp_path / "student")
    for extra, message in [
        (("--student-init", alien), f"has 5,000 output rows but no saved tokenizer, and this run's tokenizer has {VOCAB}"),
        (("--student-init", tmp_path / "qwen3", "--seq-len", "128"), "--seq-len 128 is longer than the context of"),
    ]:
        code, _, err = cli("train", *run, *RUN, *extra)
        assert code == 2 and message in err.strip().splitlines()[-1] and err.count("error:") == 1, err
        assert not (tmp_path / "student").exists()
    padded = save_qwen3(tmp_path / "padded", tokenizer, vocab_size=384)  # padding rows: no tokenizer needed
    (padded / "tokenizer.json").unlink()
    (padded / "tokenizer_config.json").unlink()
    assert cli("train", *run, *RUN, "--student-init", padded)[0] == 0


def test_tilde_paths_in_a_config_file_are_the_home_directory(cli, tmp_path, tokenizer, monkeypatch):
    """`~` in a config file's paths was kept literally: `out = "~/run"` wrote a directory named ~ under the working
    directory, and the same path as --student-init and out escaped the input check."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    save_qwen3(tmp_path / "home" / "qwen3", tokenizer)
    config = tmp_path / "run.toml"
    config.write_text('out = "~/run"\nstudent_init = "~/qwen3"\ntokenizer = "~/qwen3"\n')
    assert cli("train", "--config", config, *RUN)[0] == 0
    assert (tmp_path / "home" / "run" / "result.json").is_file() and not (tmp_path / "~").exists()
    config.write_text('out = "~/run"\nstudent_init = "~/run"\ntokenizer = "~/qwen3"\noverwrite = true\n')
    code, _, err = cli("train", "--config", config, *RUN)
    assert code == 2 and "is also an input of this command" in err, err
    assert (tmp_path / "home" / "run" / "result.json").is_file()
