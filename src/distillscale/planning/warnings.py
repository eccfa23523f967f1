"""What a plan warns about: a number of the plan far outside the data behind its laws
(`laws.extrapolation.extrapolation_warnings`), only where it is a number the user chose or will act
on. A teacher the scenario does not train (best-case's free teacher, the existing teacher
of teacher-inference that the plan chose) is none of those: its size and tokens only say which
teacher gives the loss L_T, and where the solver let its tokens run to the cap it is shown as "free,
not trained" (`FREE_TEACHER`), never warned about as an extrapolation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from distillscale.laws.extrapolation import extrapolation_warnings, teacher_loss_note, uniform_guess_warnings
from distillscale.laws.lawset import LawSet

if TYPE_CHECKING:
    from distillscale.planning.results import DistillationPlan

# A teacher's tokens the solver let run to the planner's cap, in a scenario that does not train it.
FREE_TEACHER = "free, not trained"


def warning_lines(warnings: list[str], explain: bool = False, more: str = "--explain lists each") -> list[str]:
    """What the text says of a plan's warnings (`Plan.warnings`, the list `--json` holds): each once; by
    default the warnings of one class (an `OutsideData` of one law and side, a `RepeatedData`: those with
    a `group`) in one line when there are several (their `summary`, pointing to where each is said:
    `more`), with `explain` each in full."""
    groups: dict[object, list[str]] = {}
    for message in dict.fromkeys(warnings):
        group = getattr(message, "group", None)
        groups.setdefault(message if explain or group is None else group, []).append(message)
    return [members[0] if len(members) == 1 else type(members[0]).summary(members, more)
            for members in groups.values()]


def teacher_is_trained(plan: DistillationPlan) -> bool:
    """Whether the plan's scenario pays for its teacher's pre-training (the user will train it)."""
    return bool(plan.scenario.teacher_pretraining)


def plan_warnings(laws: LawSet, plans: list[DistillationPlan], sweep: bool, given_teacher: bool = False) -> list[str]:
    """One message per quantity of the plans far outside the data (`distillation_warnings`): each
    student against the distillation law's runs; each teacher against the supervised law's, where the
    scenario trains it or the user gave it (`given_teacher`)."""
    messages = []
    for p in plans:
        name = p.scenario.name
        # a started student: the law is evaluated at its effective tokens, D_eff = m D_S
        tokens, what = ((p.student_tokens, "tokens") if p.start is None else
                        (p.start.value * p.student_tokens, "effective tokens (D_eff)"))
        teacher = ((f"the {name} teacher", p.teacher_params, p.teacher_tokens)
                   if teacher_is_trained(p) or given_teacher else None)
        messages += distillation_warnings(
            laws, (f"the best {name} student" if sweep else "the student", p.student_params),
            (f"the {name} student's {what}", tokens), teacher,
            {f"the {name} student's predicted loss": p.student_loss,
             f"the {name} model without a teacher's loss": p.supervised.loss})
    return list(dict.fromkeys(messages))


def distillation_warnings(laws: LawSet, student: tuple[str, float], tokens: tuple[str, float],
                          teacher: tuple[str, float | None, float | None] | None,
                          losses: dict[str, float | None]) -> list[str]:
    """What `plan` and `teacher` warn of for one distilled student: its size (`student`: its name and N)
    and tokens (`tokens`: their name and D) against the distillation law's runs, the teacher's size and
    tokens (`teacher`: its name, N and D, each may be None) against the supervised law's, and each loss
    (`losses`, named) no better than a uniform guess."""
    (student_name, params), (tokens_name, value) = student, tokens
    messages = extrapolation_warnings(laws, {student_name: params}, {tokens_name: value},
                                      {f"{tokens_name} per parameter": value / params}, students=True)
    if teacher is not None:
        name, teacher_params, teacher_tokens = teacher
        messages += extrapolation_warnings(
            laws, {name: teacher_params}, {f"{name}'s tokens": teacher_tokens},
            {f"{name}'s tokens per parameter": teacher_tokens / teacher_params}
            if teacher_tokens and teacher_params else {})
    return messages + uniform_guess_warnings(laws, losses)


def measured_teacher_notes(laws: LawSet, model, context: int, name: str = "the teacher") -> list[str]:
    """What `plan --teacher-model` and `teacher --candidates` say of a teacher measured as a model
    (`model`: a TeacherModel or a ServedTeacher), named `name`: a loss in units the law does not
    record (unchecked), measured at another context than it is priced at, or a context shorter than
    the plan's (`context`)."""
    messages = list(getattr(model, "notes", ()))
    if not laws.losses.given:
        messages.append(f"law {laws.name!r} does not record what its losses are (the tokenizer and text of its runs: "
                        f"fit it with --tokenizer and --text): {name}'s loss ({model.loss.losses.describe()}) is "
                        "taken as in its units, unchecked")
    if model.loss.seq_len != model.context:
        messages.append(f"{name}'s loss was measured at context {model.loss.seq_len} and the plan's context is "
                        f"{model.context}: a teacher reads its context; measure it at --seq-len {model.context}")
    if model.context < context:
        messages.append(f"{name} takes at most {model.context} tokens of context: its loss is measured and its "
                        f"logits priced at {model.context}, not at the plan's {context}")
    return messages


def mode_warnings(laws: LawSet, student_params: float, modes: list, teacher) -> list[str]:
    """A mode comparison's: the student's tokens in each distilled mode (the distillation law's
    data), and the teacher the user gave (the supervised law's)."""
    distilled = [m for m in modes if m.mode != "supervised"]
    warnings = extrapolation_warnings(
        laws, {"the student": student_params}, {f"the {m.name} student's tokens": m.effective_tokens for m in distilled},
        {f"the {m.name} student's tokens per parameter": m.effective_tokens / student_params for m in distilled},
        students=True)
    warnings += extrapolation_warnings(laws, {"the teacher": teacher.params},
                                       {"the teacher's tokens": teacher.tokens} if teacher.tokens else {})
    return list(dict.fromkeys(warnings))


def loss_units_notes(laws: LawSet, settings, model=None, context: int | None = None) -> list[str]:
    """What a teacher's loss must be to plan with it (`data.loss_identity`): a given --teacher-loss is
    taken in the law's units, said in one line; a --teacher-model's measured loss (`model`, for a plan at
    `context`): `measured_teacher_notes`."""
    messages = []
    if settings.teacher_loss is not None:
        messages.append(teacher_loss_note(laws, settings.teacher_loss))
    if model is not None:
        messages += measured_teacher_notes(laws, model, model.context if context is None else context)
    return messages


def student_model_notes(size) -> list[str]:
    """What a plan says of its --student-model (`size`, a `model.sizes.ModelSize`; None: a size given):
    a mixture of experts is planned at N_S with every expert counted, and priced at the FLOPs of the
    experts a token is routed to."""
    if size is None or size.active_params is None:
        return []
    return [f"--student-model {size.path} is a mixture of experts: planned at N_S = {size.describe_params()}; "
            "its FLOPs per token count the experts a token is routed to"]


def vocabulary_notes(laws: LawSet, priced_vocab: int, models: dict[str, int | None]) -> list[str]:
    """Where the plan prices an output layer with another vocabulary than the law's losses are in:
    the law's FLOP accounting (`laws.compute.n_vocab`, or --vocab-size: `priced_vocab`) against its
    losses' tokenizer, and each model given (`models`: flag -> its output rows) against the law's
    vocabulary, beyond the padding a checkpoint adds (1%)."""
    tokenizer, recorded = laws.losses.tokenizer, laws.compute.n_vocab
    vocab = tokenizer.vocab_size if tokenizer is not None else recorded
    notes = []
    if priced_vocab != vocab:
        if tokenizer is not None and priced_vocab == recorded:
            notes.append(f"law {laws.name!r} prices each model's output layer at {recorded:,} rows, but its losses are "
                         f"in {tokenizer.describe()}: the FLOPs are another vocabulary's; pass --vocab-size "
                         f"{vocab} (a law fitted with --tokenizer records it)")
        else:
            notes.append(f"each model's output layer is priced at {priced_vocab:,} rows (--vocab-size), and law "
                         f"{laws.name!r}'s losses are in a {vocab:,}-token vocabulary: its losses are for models "
                         f"with {vocab:,} rows")
    for flag, rows in models.items():
        if rows is not None and abs(rows - vocab) > 0.01 * vocab:
            notes.append(f"{flag} has a {rows:,}-row output layer and law {laws.name!r}'s losses are in a "
                         f"{vocab:,}-token vocabulary: it is priced as it is, but the law predicts models of "
                         f"the law's vocabulary")
    return notes


class LargerThanCorpus(str):
    """A run of the plan that reads more tokens than the corpus the law was calibrated on holds in its
    split (a warning: the message, with what puts several in one line)."""

    group = "larger than the law's corpus"

    def __new__(cls, message: str, split_tokens: float = 0.0, ratio: float = 1.0) -> "LargerThanCorpus":
        self = super().__new__(cls, message)
        self.split_tokens, self.ratio = split_tokens, ratio
        return self

    @staticmethod
    def summary(members: list["LargerThanCorpus"], more: str = "--explain lists each") -> str:
        from distillscale.units import format_quantity

        worst = max(members, key=lambda m: m.ratio)
        return (f"{len(members)} of the plan's runs read more tokens than the {format_quantity(worst.split_tokens)} "
                f"of a split of the corpus the law was calibrated on, up to {worst.ratio:.3g}x: trained on it, they "
                f"repeat its data, which the plan does not price; give --unique-tokens "
                f"{format_quantity(worst.split_tokens)} to plan for that corpus, or train on a larger one ({more})")


def calibration_pool(laws: LawSet) -> tuple[float, str] | None:
    """(the tokens a training split of the corpus the law was calibrated on holds, the corpus's name), read
    from its prepared validation text's manifest where it is still in the cache; None where no such corpus
    is known."""
    from distillscale.data.manifest import prepared_manifest   # the manifest alone: no tokenizer needed

    text = laws.losses.text
    manifest = None if text is None or not text.directory else prepared_manifest(text.directory)
    try:
        splits = manifest["splits"]
        return float(min(splits[name]["tokens"] for name in ("teacher", "student"))), text.name
    except (KeyError, TypeError, ValueError):
        return None


def corpus_size_warnings(laws: LawSet, runs: dict[str, tuple[float, float]], unique_tokens: float | None) -> list[str]:
    """The runs (`Plan.runs()`: name -> (N, D)) that read more tokens than a split of the corpus the law
    was calibrated on holds (`calibration_pool`): trained there they would repeat their data, which a plan
    prices only with a pool (`plan_from_settings` then takes that corpus's by default)."""
    from distillscale.units import format_quantity

    known = None if unique_tokens is not None else calibration_pool(laws)
    if known is None:
        return []
    split, name = known
    return [LargerThanCorpus(f"{run} reads {format_quantity(tokens)} tokens, {tokens / split:.3g}x the "
                             f"{format_quantity(split)} of a split of the corpus law {laws.name!r} was calibrated on "
                             f"({name}): trained on it, it repeats its data, which the plan does not price; give "
                             f"--unique-tokens {format_quantity(split)} to plan for that corpus, or train on a larger one",
                             split, tokens / split)
            for run, (_, tokens) in runs.items() if tokens > split]


def known_pool_note(laws: LawSet, larger: list[LargerThanCorpus]) -> str:
    """One line: the plan priced its runs on the pool of the corpus the law was calibrated on, which they
    would repeat (`larger`), and how to plan for another corpus."""
    from distillscale.units import format_quantity

    worst = max(larger, key=lambda member: member.ratio)
    name = calibration_pool(laws)[1]
    return (f"priced on the corpus law {laws.name!r} was calibrated on ({name}): {len(larger)} of the plan's runs "
            f"read up to {worst.ratio:.3g}x its split's {format_quantity(worst.split_tokens)} tokens, so each "
            f"loss includes that repetition (--unique-tokens {format_quantity(worst.split_tokens)}); give "
            "--unique-tokens to plan for another corpus")
