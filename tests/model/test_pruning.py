"""Pruning a teacher into a student: the requested shape, nothing pruned = the teacher, importance
scores checked against computations by hand, `distillscale prune` and its refusals."""

from __future__ import annotations

import inspect
import os
import json

import pytest
import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from distillscale.data.tokenizer import END_OF_TEXT, train_byte_level_bpe
from distillscale.model import ModelConfig, Transformer, load_pretrained
from distillscale.model.pruning import PruneTarget, importance, prune

pytestmark = pytest.mark.usefixtures("cache_dir", "one_thread")


def family(**overrides) -> Transformer:
    config = ModelConfig(**{"n_layers": 3, "aspect_ratio": 32, "head_dim": 16, "vocab_size": 64,
                            "max_seq_len": 32, "mup_base_width": 48, **overrides})
    torch.manual_seed(0)
    model = Transformer(config)
    with torch.no_grad():
        for param in model.parameters():
            if param.ndim == 1:
                param.uniform_(0.5, 1.5)
    return model


def batches(vocab: int = 64, n: int = 2):
    generator = torch.Generator().manual_seed(1)
    for _ in range(n):
        window = torch.randint(0, vocab, (2, 17), generator=generator)
        yield window[:, :-1], window[:, 1:]


@pytest.mark.parametrize("method", ["gradient", "activation"])
@pytest.mark.parametrize("overrides", [{}, {"n_kv_heads": 2, "n_heads": 6, "tie_embeddings": True, "mup": False}],
                         ids=["mha-mup", "gqa-tied"])
def test_nothing_pruned_is_the_teacher(method, overrides):
    teacher = family(**overrides)
    scores = importance(teacher, batches(), method)
    student, kept = prune(teacher, PruneTarget(), scores)
    assert kept["blocks"] == [0, 1, 2] and student.config == teacher.config
    idx = next(batches())[0]
    with torch.no_grad():
        assert torch.equal(student(idx), teacher(idx))


@pytest.mark.parametrize("depth_by", ["importance", "last"])
def test_pruning_keeps_the_requested_shape(depth_by):
    teacher = family(n_heads=6, n_kv_heads=3)  # d_model 96, head_dim 16, 2 query heads per group
    scores = importance(teacher, batches())
    student, kept = prune(teacher, PruneTarget(n_layers=2, d_model=40, n_heads=4, d_ff=50), scores, depth_by)
    config = student.config
    assert (config.n_layers, config.d_model, config.n_heads, config.n_kv_heads, config.d_ff) == (2, 40, 4, 2, 50)
    assert sum(p.numel() for p in student.blocks.parameters()) + 40 == config.non_embedding_params
    assert kept["blocks"] == (sorted(torch.topk(scores.blocks, 2).indices.tolist()) if depth_by == "importance"
                              else [0, 1])
    assert config.tie_embeddings is False and config.mup_multiplier == 48 / 40
    # Kept weights are the teacher's, muP's multiplier change folded into lm_head: here the logits of a
    # student that keeps every channel equal the teacher's own head on the same hidden state.
    channels = torch.tensor(kept["channels"])
    expected = teacher.lm_head.weight[:, channels] * teacher.config.mup_multiplier
    torch.testing.assert_close(student.lm_head.weight * config.mup_multiplier, expected)
    assert torch.isfinite(student(next(batches())[0])).all()
    with pytest.raises(Exception, match="larger than the teacher's 96"):
        prune(teacher, PruneTarget(d_model=128), scores)
    with pytest.raises(Exception, match="not a multiple of the teacher's 2 query heads per key/value head"):
        prune(teacher, PruneTarget(n_heads=3), scores)


def test_first_order_importance_is_the_loss_change_of_scaling_a_unit():
    """|dL/dmask| against central finite differences of the loss in a unit's scale, computed here by
    scaling the unit's weights (a head's rows of out, a neuron's column of down, a channel everywhere)."""
    teacher = family(mup=False, qk_norm=False).double()
    data = list(batches(n=1))
    scores = importance(teacher, data, "gradient")
    raw = {"heads": scores.heads, "neurons": scores.neurons}  # normalised per layer: compare ratios in a layer
    inputs, targets = data[0]

    def loss(model):
        with torch.no_grad():
            return F.cross_entropy(model(inputs).flatten(0, 1), targets.flatten()).item()

    def derivative(scale_unit) -> float:
        eps, values = 1e-3, []  # the model casts q and k to float32 (for QK-norm): a larger step than
        # float64 alone would allow, whose O(eps^2) error is below the tolerance
        for sign in (1, -1):
            model = family(mup=False, qk_norm=False).double()
            with torch.no_grad():
                scale_unit(model, 1 + sign * eps)
            values.append(loss(model))
        return abs(values[0] - values[1]) / (2 * eps)

    def scale_head(layer, head):
        def scale(model, s):
            model.blocks[layer].attn.out.weight[:, head * 16:(head + 1) * 16] *= s
        return scale

    def scale_neuron(layer, neuron):
        def scale(model, s):
            model.blocks[layer].ffn.down.weight[:, neuron] *= s
        return scale

    heads = torch.tensor([derivative(scale_head(1, h)) for h in range(6)], dtype=torch.float64)
    torch.testing.assert_close(raw["heads"][1], heads / heads.sum(), rtol=1e-3, atol=1e-7)
    neurons = torch.tensor([derivative(scale_neuron(2, n)) for n in range(5)], dtype=torch.float64)
    torch.testing.assert_close(raw["neurons"][2, :5] / raw["neurons"][2, :5].sum(), neurons / neurons.sum(),
                               rtol=1e-3, atol=1e-7)

    def scale_channel(channel):  # the mask multiplies what enters the residual stream at channel c
        def scale(model, s):
            model.embed.weight[:, channel] *= s
            for block in model.blocks:
                block.attn.out.weight[channel] *= s
                block.ffn.down.weight[channel] *= s
        return scale

    for channel in (0, 7, 50):
        assert scores.channels[channel].item() == pytest.approx(derivative(scale_channel(channel)), rel=1e-3)


def test_activation_importance_is_the_mean_magnitude_computed_by_hand():
    teacher = family(n_layers=1, aspect_ratio=96, qk_norm=False, mup=False)  # d_model 96, 6 heads
    inputs, targets = next(batches())
    scores = importance(teacher, [(inputs, targets)], "activation")
    block = teacher.blocks[0]
    with torch.no_grad():  # one block, written out
        x = teacher.embed(inputs)
        h = block.attn_norm(x)
        q, k, v = (h @ w.T for w in block.attn.qkv.weight.split(block.attn.split))
        heads = lambda t: t.view(2, 16, 6, 16).transpose(1, 2)  # noqa: E731
        q, k = teacher.rope(heads(q)), teacher.rope(heads(k))
        att = (q @ k.transpose(-1, -2) / 4).masked_fill(torch.ones(16, 16).triu(1).bool(), float("-inf"))
        y = att.softmax(-1) @ heads(v)                                  # [B, H, T, hd]
        x = x + y.transpose(1, 2).reshape(2, 16, 96) @ block.attn.out.weight.T
        g = block.ffn_norm(x)
        gate, up = (g @ w.T for w in block.ffn.gate_up.weight.chunk(2))
        act = F.silu(gate) * up
    head_norms = y.norm(dim=-1).mean(dim=(0, 2))
    torch.testing.assert_close(scores.heads[0].float(), head_norms / head_norms.sum())
    neuron_means = act.abs().mean(dim=(0, 1))
    torch.testing.assert_close(scores.neurons[0].float(), neuron_means / neuron_means.sum())
    torch.testing.assert_close(scores.channels.float(), h.abs().mean(dim=(0, 1)) + g.abs().mean(dim=(0, 1)))


VOCAB = 320


@pytest.fixture(scope="module")
def hf_teacher(tmp_path_factory):
    """A tiny random Llama with its tokenizer: a teacher that imports into the family."""
    directory = tmp_path_factory.mktemp("llama")
    tokenizer = train_byte_level_bpe([inspect.getsource(json) * 50], vocab_size=VOCAB)
    config = LlamaConfig(vocab_size=384, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64,
                         architectures=["LlamaForCausalLM"])
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(directory)
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=END_OF_TEXT).save_pretrained(directory)
    return directory


CALIBRATION = ("--max-bytes", "100k", "--seq-len", "32", "--calibration-tokens", "256", "--device", "cpu")


def test_prune_command_writes_a_student_that_distils(cli, tmp_path, hf_teacher):
    code, out, err = cli("prune", hf_teacher, "--out", tmp_path / "pruned", "--n-layers", "2", "--d-model", "48",
                         "--n-heads", "2", "--d-ff", "64", *CALIBRATION, "--json")
    assert code == 0, err
    record = json.loads(out)
    model = load_pretrained(tmp_path / "pruned")
    config = model.config
    assert (config.n_layers, config.d_model, config.n_heads, config.d_ff) == (2, 48, 2, 64)
    shape = record["pruned_shape"]
    assert shape["non_embedding_params"] == config.non_embedding_params
    assert shape["forward_flops_per_token"] == config.forward_flops_per_token(32)
    assert record["teacher_shape"]["d_model"] == 64 and record["calibration_tokens"] == 256
    assert (tmp_path / "pruned" / "tokenizer.json").is_file()

    code, out, err = cli("distill", "--teacher", hf_teacher, "--student-init", tmp_path / "pruned",
                         "--out", tmp_path / "student", "--max-bytes", "100k", "--seq-len", "32", "--batch-size", "8",
                         "--eval-tokens", "1k", "--tokens", "256", "--device", "cpu", "--json")
    assert code == 0, err
    assert json.loads(out)["non_embedding_params"] == config.non_embedding_params

    code, out, err = cli("prune", hf_teacher, "--out", tmp_path / "by-params", "--params", "40k",
                         "--importance", "activation", *CALIBRATION, "--json")
    assert code == 0, err
    assert json.loads(out)["pruned_shape"]["non_embedding_params"] <= 40_000


def test_prune_refusals_are_one_line(cli, tmp_path, hf_teacher):
    other = tmp_path / "other.json"
    train_byte_level_bpe([inspect.getsource(inspect) * 5], vocab_size=VOCAB).save(str(other))
    (tmp_path / "exists").mkdir()
    for extra, message in [
        (("--out", tmp_path / "a", "--d-model", "80"), "--d-model 80 is larger than the teacher's 64"),
        (("--out", tmp_path / "a", "--d-model", "32", "--tokenizer", other), "is not the teacher's"),
        (("--out", tmp_path / "exists", "--d-model", "32"), "exists: prune writes a new directory"),
        (("--out", tmp_path / "a"), "give the pruned shape"),
    ]:
        code, _, err = cli("prune", hf_teacher, *CALIBRATION, *extra)
        assert code == 2 and message in err, err
        assert len([line for line in err.splitlines() if line.strip()]) == 1, err
    assert not (tmp_path / "a").exists() and not any((tmp_path / "exists").iterdir())


def test_prune_defaults_to_the_teachers_context_and_refuses_a_longer_window(cli, tmp_path, hf_teacher):
    """The teacher reads 64 tokens: the default window (256) used to fail; now it is 64."""
    data = ("--max-bytes", "100k", "--calibration-tokens", "256", "--device", "cpu", "--d-model", "48")
    code, out, err = cli("prune", hf_teacher, "--out", tmp_path / "pruned", *data, "--json")
    assert code == 0, err
    record = json.loads(out)
    assert record["seq_len"] == 64
    # gradient importance: a forward and a backward of activation gradients alone (the weights are frozen)
    assert record["flops"] == 2 * record["teacher_shape"]["forward_flops_per_token"] * 256
    assert not list(tmp_path.glob(".tmp-prune-*"))
    code, _, err = cli("prune", hf_teacher, "--out", tmp_path / "longer", *data, "--seq-len", "128")
    assert code == 2 and "--seq-len 128 is longer than the teacher's context (64 tokens)" in err


def test_prune_out_inside_an_input_is_refused(cli, tmp_path, hf_teacher):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text(inspect.getsource(json) * 3)
    for out, message in [(corpus / "pruned", "is inside"), (hf_teacher / "pruned", "is inside")]:
        code, _, err = cli("prune", hf_teacher, "--out", out, "--data", corpus, *CALIBRATION, "--d-model", "48")
        assert code == 2 and message in err and "an input of this command" in err, err
        assert not out.exists()


def test_a_killed_prunes_staging_directory_is_removed_by_the_next(tmp_path):
    import socket
    import subprocess
    import sys

    from distillscale.training.pruning import STAGING_PREFIX, remove_stale_staging

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = socket.gethostname()
    stale = tmp_path / f"{STAGING_PREFIX}{host}-{dead.stdout.strip()}-abc"
    live = tmp_path / f"{STAGING_PREFIX}{host}-{os.getpid()}-def"
    elsewhere = tmp_path / f"{STAGING_PREFIX}otherhost-{dead.stdout.strip()}-ghi"
    for directory in (stale, live, elsewhere):
        (directory / "model.safetensors").parent.mkdir()
        (directory / "model.safetensors").write_bytes(b"half")
    remove_stale_staging(tmp_path)
    assert not stale.exists() and live.exists() and elsewhere.exists()
