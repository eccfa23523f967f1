"""Cross-tokenizer distillation: positions aligned on the text (tokens that span the other
tokenisation's boundaries), the shared-vocabulary map and the loss, and a student distilled from
a Hugging Face teacher with another tokenizer beating a supervised student on the same tokens."""

from __future__ import annotations

import json
import pathlib
import sysconfig

import numpy as np
import pytest
import torch

from distillscale.data.tokenizer import train_byte_level_bpe
from distillscale.training.cross_tokenizer import (
    LAW_NOTE,
    MODE,
    TokenAligner,
    align_positions,
    cross_tokenizer_kd,
    token_pieces,
)

pytestmark = pytest.mark.usefixtures("cache_dir", "one_thread")

TEXT = "def add(x, y):\n    return x + y\n\nprint(add(1, 2))  # three\n" * 20


def test_positions_pair_only_where_both_have_read_the_same_text():
    # "abcde": the student cuts ab|c|de, the teacher a|bcd|e. Student "c" ends inside the teacher's
    # "bcd" and teacher "a" inside the student's "ab": neither is paired. Both have read "abcde"
    # at the last position.
    student, teacher = align_positions(["ab", "c", "de"], ["a", "bcd", "e"])
    assert student.tolist() == [2] and teacher.tolist() == [2]
    student, teacher = align_positions(["ab", "c", "de"], ["ab", "cd", "e"])
    assert student.tolist() == [0, 2] and teacher.tolist() == [0, 2]


def test_empty_pieces_and_a_teacher_cut_short_are_aligned_on_what_was_read():
    # An empty piece ends where its predecessor does: the later token has read the prefix.
    student, teacher = align_positions(["a", "", "bc"], ["a", "bc"])
    assert student.tolist() == [1, 2] and teacher.tolist() == [0, 1]
    # A teacher cut to its context reads a prefix of the text: pairs up to where it stops.
    student, teacher = align_positions(["a", "b", "c", "d"], ["ab"])
    assert student.tolist() == [1] and teacher.tolist() == [0]
    with pytest.raises(ValueError, match="different texts"):
        align_positions(["ab"], ["ac"])


@pytest.fixture(scope="module")
def tokenizers():
    return train_byte_level_bpe([TEXT], 300), train_byte_level_bpe([TEXT[::-1], TEXT], 280)


def test_pieces_keep_leading_spaces_and_spell_the_text(tokenizers):
    student, _ = tokenizers
    pieces = token_pieces(student)
    ids = student.encode(TEXT).ids
    assert "".join(pieces[i] for i in ids) == TEXT
    assert any(piece.startswith(" ") for piece in pieces)


def test_the_aligner_pairs_the_teacher_tokens_of_the_same_text(tokenizers):
    student, teacher = tokenizers
    aligner = TokenAligner(student, teacher, teacher_context=None)
    inputs = torch.tensor([student.encode(TEXT).ids[:40], student.encode(TEXT).ids[7:47]])
    batch = aligner.teacher_batch(inputs)
    student_pieces, teacher_pieces = aligner.student_pieces, aligner.teacher_pieces
    assert 0 < len(batch.student_positions) <= inputs.numel()
    for s, t in zip(batch.student_positions.tolist(), batch.teacher_positions.tolist()):
        row, i = divmod(s, inputs.shape[1])
        t_row, j = divmod(t, batch.ids.shape[1])
        assert row == t_row
        read_by_student = "".join(student_pieces[k] for k in inputs[row, :i + 1].tolist())
        read_by_teacher = "".join(teacher_pieces[k] for k in batch.ids[row, :j + 1].tolist())
        assert read_by_student == read_by_teacher
    # The shared tokens are the same piece of text in both vocabularies.
    for s, t in zip(aligner.shared_student_ids.tolist(), aligner.shared_teacher_ids.tolist()):
        assert student_pieces[s] == teacher_pieces[t] != ""


def test_a_teacher_that_prepends_a_space_is_aligned(tokenizers):
    """SentencePiece-style tokenizers (Llama's) prepend "▁" to the text: that space is not the
    student's, and must not shift every position."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    metaspace = Tokenizer(models.BPE(unk_token="<unk>"))
    metaspace.pre_tokenizer, metaspace.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
    metaspace.train_from_iterator([TEXT], trainers.BpeTrainer(vocab_size=120, special_tokens=["<unk>"],
                                                               show_progress=False))
    student, _ = tokenizers
    aligner = TokenAligner(student, metaspace, teacher_context=None)
    inputs = torch.tensor([student.encode(TEXT).ids[:40]])
    batch = aligner.teacher_batch(inputs)
    assert len(batch.student_positions) > 10 and len(aligner.shared_student_ids) > 10


def test_the_loss_is_zero_for_equal_distributions_and_grows_with_their_difference():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 7, generator=generator)
    ids = torch.arange(7)
    assert cross_tokenizer_kd(logits, logits, ids, ids, 2.0, 1.0).abs().max() < 1e-6
    # A permuted vocabulary: the same sorted probabilities, so only the KL on shared tokens sees it.
    permuted = logits[:, torch.randperm(7, generator=generator)]
    assert cross_tokenizer_kd(logits, permuted, ids, ids, 1.0, 0.0).min() > 0
    assert cross_tokenizer_kd(logits, permuted, ids[:0], ids[:0], 1.0, 1.0).abs().max() < 1e-6
    # Vocabularies of different sizes: ULD pads the shorter sorted vector with zeros.
    wider = torch.cat([logits, torch.full((5, 3), -30.0)], dim=1)
    assert cross_tokenizer_kd(logits, wider, ids, ids, 1.0, 1.0).abs().max() < 1e-4


# -- end to end -----------------------------------------------------------------------------------

COMMON = ("--max-bytes", "200k", "--seq-len", "64", "--eval-tokens", "8k", "--eval-every", "0", "--device", "cpu")
STUDENT = ("--n-layers", "1", "--aspect-ratio", "32", "--head-dim", "32", "--tokens", "16k", "--batch-size", "8")


@pytest.fixture(scope="module")
def hf_teacher(tmp_path_factory):
    """A Hugging Face Llama exported from a teacher trained with its own 512-token BPE."""
    from distillscale.cli import main

    root = tmp_path_factory.mktemp("xtok")
    assert main(["train", "--out", str(root / "run"), "--n-layers", "2", "--aspect-ratio", "48", "--head-dim", "32",
                 "--vocab-size", "512", "--tokens", "100k", "--batch-size", "16", *COMMON]) == 0
    assert main(["export-hf", str(root / "run"), str(root / "hf")]) == 0
    return root / "hf"


@pytest.fixture(scope="module")
def student_tokenizer(tmp_path_factory):
    """Another byte-level BPE (384 tokens, trained on other files)."""
    stdlib = pathlib.Path(sysconfig.get_paths()["stdlib"])
    texts = [path.read_text(errors="ignore") for path in sorted(stdlib.glob("*.py"))[:40]]
    path = tmp_path_factory.mktemp("tok") / "student.json"
    train_byte_level_bpe(texts, 384).save(str(path))
    return path


@pytest.mark.slow
def test_cross_tokenizer_distillation_beats_a_supervised_student_on_the_same_tokens(
        cli, tmp_path, hf_teacher, student_tokenizer):
    losses = []
    for seed in range(3):
        code, _, err = cli("distill", "--teacher", hf_teacher, "--tokenizer", student_tokenizer,
                           "--out", tmp_path / f"distilled{seed}", *STUDENT, *COMMON, "--seed", seed,
                           "--kd-weight", "0.5")
        assert code == 0, err
        assert "cross-tokenizer distillation" in err and "shared vocabulary" in err
        code, _, err = cli("train", "--tokenizer", student_tokenizer, "--split", "student",
                           "--out", tmp_path / f"supervised{seed}", *STUDENT, *COMMON, "--seed", seed)
        assert code == 0, err
        distilled = json.loads((tmp_path / f"distilled{seed}" / "result.json").read_text())
        supervised = json.loads((tmp_path / f"supervised{seed}" / "result.json").read_text())
        assert distilled["tokens"] == supervised["tokens"]
        losses.append((distilled["val_loss"], supervised["val_loss"]))
    record = distilled["distillation"]
    assert record["mode"] == MODE and record["note"] == LAW_NOTE
    assert record["student_vocab_size"] != record["teacher_vocab_size"] and record["shared_tokens"] > 0
    assert 0.3 < record["aligned_fraction"] <= 1
    assert distilled["teacher"]["teacher_val_loss"] < min(supervised for _, supervised in losses)
    print("cross-tokenizer vs supervised val loss per seed:", losses)
    assert all(d < s for d, s in losses), losses
    assert np.mean([s - d for d, s in losses]) > 0.05


@pytest.mark.slow
def test_a_sharded_teacher_of_another_tokenizer_is_refused_before_any_work(cli, tmp_path, hf_teacher,
                                                                           student_tokenizer):
    code, _, err = cli("distill", "--teacher", hf_teacher, "--tokenizer", student_tokenizer, "--out",
                       tmp_path / "student", *STUDENT, *COMMON, "--parallel", "fsdp", "--teacher-parallel", "shard")
    assert code == 2 and "--teacher-parallel replicate" in err, err
    assert not (tmp_path / "student").exists()
