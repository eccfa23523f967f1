"""Cross-tokenizer distillation: a teacher whose tokenizer differs from the student's.

The two models cut the same text into different tokens, so their positions and their vocabularies
differ. Positions are matched on the text: the student's window is decoded into the text its
tokens spell (each id's piece, joined), the teacher tokenises that same text, and a student
position i is paired with a teacher position j when both have read exactly the same prefix (the end
of student token i is the end of teacher token j, in characters). A student position whose token
ends inside a teacher token (a token spanning the other's boundary) has no teacher position that
read the same text, and gets the cross-entropy term only. The pairs predict the next piece of the
same text from the same context, each in its own vocabulary.

At each pair the KD term needs no shared vocabulary (ULD, Boizard et al. 2024; the vocabulary
mapping of TRL's GOLD):

    KD = tau^2 (KL(p~_T || q~_S) + uld_weight * sum_r |sort(p_T)_r - sort(q_S)_r|)

- p~, q~: the two distributions restricted to the tokens both vocabularies have (same piece of
  text) and renormalised there: the exact KL where the vocabularies agree;
- the sorted-probability term (ULD's closed form of the Wasserstein distance with a uniform cost):
  both distributions sorted in decreasing order, the shorter padded with zeros, so the student
  matches the teacher's shape (its confidence) on the tokens the mapping misses.

Limits, stated in result.json: a character a byte-level student splits over two tokens decodes to
U+FFFD on both sides, so the teacher reads that replacement character; the teacher's context is
cut to its own length limit; the logits are not chunked (the two vocabularies differ, so the fused
chunked loss does not apply). The distillation law was fitted with a shared vocabulary: its
predictions for these runs are an extrapolation.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer

from distillscale.data import eval_windows
from distillscale.training.kd_settings import DistillationLossConfig
from distillscale.training.losses import LossOutput
from distillscale.training.objective import ObjectiveRecord
from distillscale.training.records import DistillationRecord
from distillscale.training.teachers import Teacher

MODE = "cross-tokenizer"
LAW_NOTE = ("the teacher's tokenizer differs from the student's: KD ran on text-aligned positions with "
            "ULD's sorted-probability term plus exact KL on the shared tokens; the distillation law was "
            "fitted for a shared vocabulary, so its predictions for this run are an extrapolation")


def token_pieces(tokenizer: Tokenizer) -> list[str]:
    """The text each id spells inside a sequence (leading spaces kept): decoded after an anchor
    token and with the anchor's text removed, since decoders drop a first token's leading space."""
    vocab_size = max(tokenizer.get_vocab(with_added_tokens=True).values()) + 1
    anchor = tokenizer.encode("a", add_special_tokens=False).ids[:1]
    anchor_text = tokenizer.decode(anchor)
    decoded = tokenizer.decode_batch([anchor + [i] for i in range(vocab_size)], skip_special_tokens=False)
    return [text.removeprefix(anchor_text) for text in decoded]


def align_positions(student_pieces: list[str], teacher_pieces: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (student position i, teacher position j) whose tokens end at the same character of the
    text both spell: the two models have read the same prefix there. One text may be a prefix of
    the other (a teacher cut to its context); otherwise raises."""
    student_text, teacher_text = "".join(student_pieces), "".join(teacher_pieces)
    if not (student_text.startswith(teacher_text) or teacher_text.startswith(student_text)):
        raise ValueError("the two tokenisations spell different texts")
    student_ends = np.cumsum([len(piece) for piece in student_pieces], dtype=np.int64)
    teacher_ends = np.cumsum([len(piece) for piece in teacher_pieces], dtype=np.int64)
    common = np.intersect1d(student_ends, teacher_ends)
    common = common[common > 0]
    # After an empty piece two tokens end at the same character; the later one has read the prefix.
    return (np.searchsorted(student_ends, common, side="right") - 1,
            np.searchsorted(teacher_ends, common, side="right") - 1)


@dataclass
class TeacherBatch:
    """The teacher's view of a student batch: its ids [B, M] (right-padded), each row's length, and
    the flat indices of the aligned positions into the student's [B * T] and the teacher's [B * M]."""

    ids: torch.Tensor
    lengths: list[int]
    student_positions: torch.Tensor
    teacher_positions: torch.Tensor


class TokenAligner:
    """Re-tokenises student windows for the teacher and pairs the positions that read the same text;
    knows the tokens both vocabularies share (the same piece of text)."""

    def __init__(self, student_tokenizer: Tokenizer, teacher_tokenizer: Tokenizer, teacher_context: int | None):
        self.teacher_tokenizer = teacher_tokenizer
        self.teacher_context = teacher_context
        self.student_pieces = token_pieces(student_tokenizer)
        self.teacher_pieces = token_pieces(teacher_tokenizer)
        teacher_id_of: dict[str, int] = {}
        for i, piece in enumerate(self.teacher_pieces):
            if piece and "\ufffd" not in piece:
                teacher_id_of.setdefault(piece, i)
        shared: dict[str, tuple[int, int]] = {}
        for i, piece in enumerate(self.student_pieces):
            if piece in teacher_id_of and piece not in shared:
                shared[piece] = (i, teacher_id_of[piece])
        pairs = np.array(sorted(shared.values()), dtype=np.int64).reshape(-1, 2)
        self.shared_student_ids = torch.from_numpy(pairs[:, 0])
        self.shared_teacher_ids = torch.from_numpy(pairs[:, 1])

    def teacher_batch(self, inputs: torch.Tensor) -> TeacherBatch:
        """The teacher's tokens for each student window of `inputs` [B, T] and the aligned pairs."""
        batch, seq_len = inputs.shape
        student_pieces = [[self.student_pieces[i] for i in row] for row in inputs.tolist()]
        texts = ["".join(pieces) for pieces in student_pieces]
        encodings = self.teacher_tokenizer.encode_batch(texts, add_special_tokens=False)
        teacher_rows = [encoding.ids[:self.teacher_context] for encoding in encodings]
        width = max(1, *(len(row) for row in teacher_rows))
        ids = torch.zeros((batch, width), dtype=torch.long)
        student_positions, teacher_positions = [], []
        for b, (pieces, row) in enumerate(zip(student_pieces, teacher_rows)):
            ids[b, :len(row)] = torch.tensor(row, dtype=torch.long)
            teacher_pieces = _without_added_space([self.teacher_pieces[i] for i in row], texts[b])
            # Where the teacher's text stops matching (its context ends, or a normaliser rewrote the
            # text), alignment stops.
            common = len(os.path.commonprefix([texts[b], "".join(teacher_pieces)]))
            s, t = align_positions(_prefix_pieces(pieces, common), _prefix_pieces(teacher_pieces, common))
            student_positions.append(b * seq_len + s)
            teacher_positions.append(b * width + t)
        return TeacherBatch(ids, [len(row) for row in teacher_rows],
                            torch.from_numpy(np.concatenate(student_positions)),
                            torch.from_numpy(np.concatenate(teacher_positions)))


def _without_added_space(pieces: list[str], text: str) -> list[str]:
    """The teacher's pieces without the space a SentencePiece-style tokenizer prepends to the text
    (Llama's "▁" before the first word), which the student's text does not have."""
    if not pieces:
        return pieces
    added = (len(pieces[0]) - len(pieces[0].lstrip())) - (len(text) - len(text.lstrip()))
    return [pieces[0][added:], *pieces[1:]] if added > 0 else pieces


def _prefix_pieces(pieces: list[str], characters: int) -> list[str]:
    """The leading pieces that fit within `characters` characters."""
    ends = np.cumsum([len(piece) for piece in pieces])
    return pieces[:int(np.searchsorted(ends, characters, side="right"))]


def cross_tokenizer_kd(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                       shared_student_ids: torch.Tensor, shared_teacher_ids: torch.Tensor,
                       temperature: float, uld_weight: float) -> torch.Tensor:
    """Per aligned position [P]: tau^2 (KL on the shared tokens + uld_weight * sorted-probability
    distance); student logits [P, V_S], teacher logits [P, V_T]."""
    student_logits = student_logits.float() / temperature
    teacher_logits = teacher_logits.float() / temperature
    kd = student_logits.new_zeros(len(student_logits))
    if len(shared_student_ids):
        log_q = student_logits[:, shared_student_ids].log_softmax(-1)
        log_p = teacher_logits[:, shared_teacher_ids].log_softmax(-1)
        kd = kd + F.kl_div(log_q, log_p, reduction="none", log_target=True).sum(-1)
    if uld_weight:
        q = student_logits.softmax(-1).sort(-1, descending=True).values
        p = teacher_logits.softmax(-1).sort(-1, descending=True).values
        width = max(q.shape[-1], p.shape[-1])
        q, p = F.pad(q, (0, width - q.shape[-1])), F.pad(p, (0, width - p.shape[-1]))
        kd = kd + uld_weight * (p - q).abs().sum(-1)
    return temperature ** 2 * kd


class CrossTokenizerObjective:
    """(1 - lambda) CE + lambda KD + lambda_z Z with KD over the text-aligned positions (the mean
    over them) of `cross_tokenizer_kd`; the teacher runs under no_grad on its own tokens."""

    def __init__(self, teacher: Teacher, aligner: TokenAligner, loss_config: DistillationLossConfig,
                 uld_weight: float, teacher_val_loss: float, shared: dict[str, str] | None = None):
        self.teacher = teacher
        self.shared = shared or {}  # the teacher's training text the student read (`teachers.shared_text`)
        self.aligner = aligner
        self.loss_config = loss_config
        self.uld_weight = uld_weight
        self.teacher_val_loss = teacher_val_loss
        # The teacher reads about as many tokens as the student (its count per student token varies).
        self.extra_flops_per_token = teacher.info.forward_flops_per_token
        self.aligned, self.positions = 0, 0

    def __call__(self, model, inputs: torch.Tensor, targets: torch.Tensor) -> LossOutput:
        config = self.loss_config
        logits = model.head(model.hidden_states(inputs)).flatten(0, 1).float()
        log_normaliser = logits.logsumexp(-1)
        ce = F.cross_entropy(logits, targets.flatten())
        z_loss = log_normaliser.square().mean()
        batch = self.aligner.teacher_batch(inputs.cpu())
        device = inputs.device
        with torch.no_grad():
            teacher_hidden = self.teacher.hidden_states(batch.ids.to(device)).flatten(0, 1)
            teacher_logits = self.teacher.head(teacher_hidden[batch.teacher_positions.to(device)])
        student_positions = batch.student_positions.to(device)
        self.aligned += len(student_positions)
        self.positions += logits.shape[0]
        if len(student_positions):
            kd = cross_tokenizer_kd(logits[student_positions], teacher_logits,
                                    self.aligner.shared_student_ids.to(device),
                                    self.aligner.shared_teacher_ids.to(device),
                                    config.temperature, self.uld_weight).mean()
        else:
            kd = logits.new_zeros(())
        loss = (1 - config.kd_weight) * ce + config.kd_weight * kd + config.z_loss_weight * z_loss
        return LossOutput(loss=loss, ce=ce.detach(), kd=kd.detach(), z_loss=z_loss.detach())

    def record(self, tokens: int) -> ObjectiveRecord:
        teacher = self.teacher.info.record(
            self.teacher_val_loss, tokens, **self.shared,
            teacher_val_loss_unit="the teacher's nats on the student's validation text, per student token")
        return ObjectiveRecord(teacher=teacher, distillation=DistillationRecord(
            **self.loss_config.model_dump(), mode=MODE, uld_weight=self.uld_weight, note=LAW_NOTE,
            shared_tokens=len(self.aligner.shared_student_ids),
            student_vocab_size=len(self.aligner.student_pieces),
            teacher_vocab_size=len(self.aligner.teacher_pieces),
            aligned_fraction=self.aligned / max(1, self.positions)))


@torch.no_grad()
def teacher_text_loss(teacher: Teacher, aligner: TokenAligner, tokens: np.ndarray, seq_len: int,
                      batch_size: int, max_tokens: int | None,
                      autocast: contextlib.AbstractContextManager = contextlib.nullcontext()) -> float:
    """The teacher's loss on the text of the student's windows of `tokens`, in nats per student
    token predicted: comparable with the student's validation loss (the same text, the same unit,
    the same `autocast`; each window's first token differs between the two tokenisations)."""
    device = next(teacher.parameters()).device
    windows = eval_windows(len(tokens), seq_len, max_tokens)  # the student's evaluation windows
    nats, student_tokens = 0.0, 0
    for start in range(0, len(windows), batch_size):
        rows = np.stack([tokens[w * seq_len:(w + 1) * seq_len + 1]
                         for w in windows[start:start + batch_size]]).astype(np.int64)
        teacher_batch = aligner.teacher_batch(torch.from_numpy(rows))
        ids = teacher_batch.ids.to(device)
        with autocast:
            logits = teacher.head(teacher.hidden_states(ids)).float()
        log_probs = logits[:, :-1].log_softmax(-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
        lengths = torch.tensor(teacher_batch.lengths, device=device)
        mask = torch.arange(ids.shape[1] - 1, device=device)[None] < lengths[:, None] - 1
        nats -= log_probs[mask].sum().item()
        student_tokens += rows.shape[0] * seq_len
    return nats / max(1, student_tokens)
