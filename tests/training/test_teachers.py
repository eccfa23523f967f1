"""Teachers: Hugging Face causal LMs (Llama with a padded vocabulary, GPT-NeoX) distil end to end;
vocabulary alignment; tokenizer mismatches and paths that are not teachers are refused."""

from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import (
    CohereConfig,
    CohereForCausalLM,
    Gemma2Config,
    Gemma2ForCausalLM,
    GraniteConfig,
    GraniteForCausalLM,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

from distillscale.data.tokenizer import END_OF_TEXT, train_byte_level_bpe
from distillscale.errors import UserError
from distillscale.model.hf_import import hf_model_config
from distillscale.training.records import RunResult
from distillscale.training.teachers import find_teacher, load_teacher

pytestmark = pytest.mark.usefixtures("cache_dir", "one_thread")

VOCAB = 320
PADDED_VOCAB = 384  # the output layer rounded up to a multiple of 128, as large models do
STUDENT = ("--n-layers", "1", "--aspect-ratio", "64", "--head-dim", "32", "--max-bytes", "100k",
           "--seq-len", "32", "--batch-size", "8", "--eval-tokens", "1k", "--tokens", "512", "--device", "cpu")


def bpe(text: str, vocab_size: int):
    return train_byte_level_bpe([text * 50], vocab_size=vocab_size)


@pytest.fixture(scope="module")
def tokenizer():
    import inspect

    return bpe(inspect.getsource(json), VOCAB)


def save_hf_teacher(directory, model_class, config, tokenizer=None):
    """A randomly initialised causal LM saved as a local Hugging Face directory, with its tokenizer."""
    torch.manual_seed(0)
    model_class(config).save_pretrained(directory)
    if tokenizer is not None:
        PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=END_OF_TEXT).save_pretrained(directory)
    return directory


def llama_config(vocab_size: int = PADDED_VOCAB) -> LlamaConfig:
    return LlamaConfig(vocab_size=vocab_size, hidden_size=64, intermediate_size=192, num_hidden_layers=2,
                       num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64)


def neox_config() -> GPTNeoXConfig:
    return GPTNeoXConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=64)


@pytest.mark.parametrize("model_class, make_config", [(LlamaForCausalLM, llama_config),
                                                      (GPTNeoXForCausalLM, neox_config)],
                         ids=["llama-padded-vocab", "gpt-neox"])
def test_hf_teacher_distils(cli, tmp_path, tokenizer, model_class, make_config):
    teacher = save_hf_teacher(tmp_path / "hf", model_class, make_config(), tokenizer)
    code, out, err = cli("distill", "--teacher", teacher, "--out", tmp_path / "student", *STUDENT, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["status"] == "completed" and math.isfinite(result["val_loss"])

    hf_model = model_class.from_pretrained(teacher)
    total = hf_model.num_parameters()
    lookup = hf_model.get_input_embeddings().weight.numel()  # untied: the input table is no matmul
    record = result["teacher"]
    assert record["kind"] == "hf" and record["path"] == str(teacher.resolve())
    assert record["non_embedding_params"] == total - 2 * lookup
    if model_class is LlamaForCausalLM:  # imported as the family: the fast path, exact FLOPs
        assert record["forward_flops_per_token"] == hf_model_config(teacher).forward_flops_per_token(32)
        assert "exact: imported as the family" in record["flops_method"]
    else:  # as the family counts: every matmul (GPT-NeoX: qkv, dense, two MLP matrices; the head) + attention
        h, i, layers = 64, 256, 2
        matmuls = layers * (3 * h * h + h * h + 2 * h * i) + h * VOCAB
        assert record["forward_flops_per_token"] == 2 * matmuls + 4 * layers * h * 32 > 2 * (total - lookup)
        assert record["flops_method"].startswith("exact: 2 x the weights of every matmul")
    assert result["flops"] == (3 * result["forward_flops_per_token"]
                               + record["forward_flops_per_token"]) * result["tokens"]
    # A random teacher predicts almost uniformly over the tokenizer's ids (not the padded ones).
    assert abs(record["teacher_val_loss"] - math.log(VOCAB)) < 0.5
    # The student speaks the teacher's tokenizer, with the tokenizer's true vocabulary.
    assert json.loads((tmp_path / "student" / "model_config.json").read_text())["vocab_size"] == VOCAB
    config = json.loads((tmp_path / "student" / "config.json").read_text())["config"]
    assert config["tokenizer"] == str(teacher.resolve()) and config["split"] == "student"


def test_padded_teacher_logits_are_sliced_to_the_tokenizer(tmp_path, tokenizer):
    directory = save_hf_teacher(tmp_path / "hf", LlamaForCausalLM, llama_config(), tokenizer)
    teacher = load_teacher(find_teacher(directory), vocab_size=VOCAB, device=torch.device("cpu"), seq_len=32)
    idx = torch.randint(0, VOCAB, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = LlamaForCausalLM.from_pretrained(directory)(idx).logits[..., :VOCAB]
        torch.testing.assert_close(teacher.head(teacher.hidden_states(idx)), expected)
    teacher.train()
    assert not teacher.training and not teacher.model.training
    assert not any(p.requires_grad for p in teacher.parameters())
    assert teacher.info.output_rows == PADDED_VOCAB


# Tiny configs of the architectures that transform their logits after the output layer, each as its
# config names it: Gemma-2 soft-caps (cap tanh(logits / cap)), Granite divides, Cohere multiplies.
TRANSFORMING = {
    "gemma2": (Gemma2ForCausalLM, lambda: Gemma2Config(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, head_dim=32, max_position_embeddings=64, final_logit_softcapping=1.0)),
    "granite": (GraniteForCausalLM, lambda: GraniteConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=64, logits_scaling=8.0)),
    "cohere": (CohereForCausalLM, lambda: CohereConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=64, logit_scale=0.0625)),
}


@pytest.mark.parametrize("name", sorted(TRANSFORMING))
def test_a_teacher_that_soft_caps_or_scales_its_logits_gives_its_own_forwards_logits(tmp_path, tokenizer, name):
    """The transform its config names is applied by the head, chunk by chunk: any slice of positions
    gives the model's own logits there."""
    model_class, config = TRANSFORMING[name]
    directory = save_hf_teacher(tmp_path / name, model_class, config(), tokenizer)
    teacher = load_teacher(find_teacher(directory), vocab_size=VOCAB, device=torch.device("cpu"), seq_len=32)
    idx = torch.randint(0, VOCAB, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model_class.from_pretrained(directory)(idx).logits
        hidden = teacher.hidden_states(idx)
        torch.testing.assert_close(teacher.head(hidden), expected)
        torch.testing.assert_close(teacher.head(hidden[:, 5:9]), expected[:, 5:9])   # one chunk of positions
        raw = teacher.model.model.get_output_embeddings()(hidden)
    assert not torch.allclose(raw, expected, atol=1e-3)   # the transform matters here


def test_a_soft_capped_teacher_distils_end_to_end(cli, tmp_path, tokenizer):
    model_class, config = TRANSFORMING["gemma2"]
    teacher = save_hf_teacher(tmp_path / "hf", model_class, config(), tokenizer)
    code, out, err = cli("distill", "--teacher", teacher, "--out", tmp_path / "student", *STUDENT, "--json")
    assert code == 0, err
    assert math.isfinite(json.loads(out)["val_loss"])


def test_a_transform_the_config_does_not_name_is_refused(tmp_path, tokenizer):
    """A model whose logits are not its head's (with the transform its config names) cannot be
    reproduced chunk by chunk: here a soft-capping model whose cap is hidden from the check."""
    from distillscale.training.teachers import HFCausalLM, LogitTransform, check_logits_are_head_of_hidden

    model_class, config = TRANSFORMING["gemma2"]
    directory = save_hf_teacher(tmp_path / "hf", model_class, config(), tokenizer)
    adapter = HFCausalLM(model_class.from_pretrained(directory))
    adapter.logit_transform = LogitTransform()
    with pytest.raises(UserError, match="transforms its logits after the output layer in a way its config does not"):
        check_logits_are_head_of_hidden(adapter, directory, torch.device("cpu"))


def test_mismatched_tokenizers_are_refused_by_a_logit_cache(cli, tmp_path, tokenizer):
    """A cache stores the teacher's ids; `distill --teacher` distils across tokenizers instead
    (tests/training/test_cross_tokenizer.py)."""
    teacher = save_hf_teacher(tmp_path / "hf", LlamaForCausalLM, llama_config(), tokenizer)
    other = tmp_path / "other.json"
    bpe("an entirely different corpus of words, words and more words\n", VOCAB).save(str(other))
    code, _, err = cli("cache-logits", "--teacher", teacher, "--tokenizer", other, "--out", tmp_path / "cache",
                       "--top-k", "4", "--device", "cpu")
    assert code == 2
    assert f"tokenizer {other} differs from the teacher's" in err and "leave out --tokenizer" in err
    assert not (tmp_path / "cache").exists()


def test_tokenizer_beyond_the_teacher_vocabulary_is_refused(cli, tmp_path, tokenizer):
    teacher = save_hf_teacher(tmp_path / "hf", LlamaForCausalLM, llama_config(vocab_size=256), tokenizer)
    code, _, err = cli("distill", "--teacher", teacher, "--out", tmp_path / "student", *STUDENT)
    assert code == 2
    assert f"predicts 256 token ids but the tokenizer has {VOCAB}" in err
    assert not (tmp_path / "student").exists()


def test_hf_teacher_without_a_tokenizer_needs_one(cli, tmp_path):
    teacher = save_hf_teacher(tmp_path / "hf", LlamaForCausalLM, llama_config())
    code, _, err = cli("distill", "--teacher", teacher, "--out", tmp_path / "student", *STUDENT)
    assert code == 2 and "has no tokenizer" in err and "--tokenizer" in err


def make_run_dir(directory, status: str | None):
    """The files a run directory holds before (status None) or after training."""
    directory.mkdir()
    (directory / "model_config.json").write_text("{}")
    if status is not None:
        RunResult(status=status, val_loss=None, steps=3, lr=0.01, schedule="cosine", tokens=768,
                  token_budget=1000, non_embedding_params=16512, total_params=37056,
                  forward_flops_per_token=4.5e4, flops=1e8, flops_6nd=7.6e7, flops_method="-", wall_seconds=1,
                  train_seconds=1, tokens_per_second=768, config_hash="0" * 16, world_size=1,
                  device="cpu").save(directory / "result.json")


@pytest.mark.parametrize("make, message", [
    (lambda path: None, "does not exist, not a directory"),
    (lambda path: path.write_text("weights"), "is a file, not a directory"),
    (lambda path: path.mkdir(), "is neither a distillscale run directory"),
    (lambda path: make_run_dir(path, status=None), "has not finished (no result.json)"),
    (lambda path: make_run_dir(path, status="diverged"), "did not complete (status 'diverged')"),
    (lambda path: (path.mkdir(), (path / "config.json").write_text('{"model_type": "no-such-model"}')),
     "cannot load the Hugging Face model"),
], ids=["missing", "file", "empty-dir", "unfinished-run", "diverged-run", "unknown-hf-model"])
def test_paths_that_are_not_teachers_are_refused(cli, tmp_path, make, message):
    make(tmp_path / "teacher")
    code, _, err = cli("distill", "--teacher", tmp_path / "teacher", "--out", tmp_path / "student", *STUDENT)
    assert code == 2 and message in err, err
    assert err.startswith("distillscale: error:") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "student").exists()


def test_remote_code_is_not_run_unless_asked(cli, tmp_path):
    """A config that names custom code is refused without --trust-remote-code, with the hint."""
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    (teacher / "config.json").write_text(json.dumps({
        "model_type": "custom-lm", "auto_map": {"AutoModelForCausalLM": "modeling_custom.CustomLM"}}))
    code, _, err = cli("distill", "--teacher", teacher, "--out", tmp_path / "student", *STUDENT)
    assert code == 2 and "cannot load the Hugging Face model" in err and "--trust-remote-code" in err
