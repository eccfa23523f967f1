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
    for extra, message in [
        (("--student-init", start, "--n-layers", "2"), "--n-layers does not mix with --student-init"),
        (("--student-init", other), "was saved with a tokenizer other than this run's"),
        (("--student-init", tmp_path / "missing"), "does not exist"),
        ((), "give the model's depth with --n-layers"),
    ]:
        code, _, err = cli("distill", "--teacher", start, "--out", tmp_path / "student", *RUN, *extra)
        assert code == 2 and message in err, err
        lines = [line for line in err.splitlines() if line.strip() and "Writing model shards" not in line]
        assert len(lines) == 1, err
        assert not (tmp_path / "student").exists()
