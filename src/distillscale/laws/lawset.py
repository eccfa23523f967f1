"""A set of laws that belong together (a supervised law, optionally a distillation law, the compute
settings they were measured under and what their losses are: nats/token of which tokenizer on which
text, `losses`), published presets, and JSON save/load."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from pydantic import ValidationError

from distillscale.checks import checked
from distillscale.data.loss_identity import LossIdentity, TextIdentity, TokenizerIdentity
from distillscale.errors import ParameterError, UserError
from distillscale.io import atomic_write_json, check_output_file, json_format_is, read_text_file
from distillscale.laws.forms import DistillationLaw, SupervisedLaw
from distillscale.laws.interaction_law import supervised_law_from_dict
from distillscale.laws.preset_error import coefficients_note, distillation_record, preset_record
from distillscale.laws.schema import describe, validate_law_file
from distillscale.laws.sweep_recipe import SweepRecipe

FORMAT = "distillscale.laws/1"
REPORT_FORMAT = "distillscale.report/"  # a report.json holds its fitted laws under "laws"
# `is_ours` of a law file: the output rule lets overwrite=True replace only such a file.
is_law_file = json_format_is(FORMAT.split("/")[0] + "/")


@dataclass
class ComputeSettings:
    """What the FLOP accounting of a law's setting needs: context length, vocabulary, aspect ratio."""

    n_ctx: int = 4096
    n_vocab: int = 32168
    aspect_ratio: float = 128.0

    @classmethod
    def of(cls, losses: LossIdentity | None, n_ctx: int | None = None) -> "ComputeSettings":
        """The settings of a law fitted to losses in `losses`' units: its tokenizer's vocabulary (the
        default's where no tokenizer was given) and the runs' context `n_ctx` (the default's where
        not known), so each student is priced with the head and attention it will have."""
        tokenizer = losses.tokenizer if losses is not None else None
        return cls(n_ctx=n_ctx or cls.n_ctx, n_vocab=tokenizer.vocab_size if tokenizer is not None else cls.n_vocab)


@dataclass
class LawSet:
    name: str
    supervised: SupervisedLaw | None = None
    distillation: DistillationLaw | None = None
    compute: ComputeSettings = field(default_factory=ComputeSettings)
    source: str = ""
    # What the laws' losses are: nats/token of a tokenizer on a text (`data.loss_identity`); a law file
    # written before it was recorded, or a fit to a table that did not say, has it "not given".
    losses: LossIdentity = field(default_factory=LossIdentity)
    # How the sweep the laws were fitted on trained its models (`laws.sweep_recipe`): a plan runs its
    # models the same way; None (a preset, a fit to a table, a file written before): a hyperparameter law's.
    recipe: SweepRecipe | None = None
    # The file it was loaded from (None: a preset, or a law made in this process): what `--law`
    # takes to load it again. Not part of the law, nor of its file.
    path: str | None = field(default=None, compare=False, repr=False)

    @property
    def spec(self) -> str | None:
        """What `--law` takes to load this very law: its file, or its preset's name when it is that
        preset unchanged; None for a law made in this process and not saved (a fit's)."""
        if self.path is not None:
            return self.path
        if self.name in PRESETS and self == PRESETS[self.name]():
            return self.name
        return None

    @property
    def bias_correction(self):
        """The supervised law's cross-ladder bias correction (`laws.crossladder`), or None."""
        return self.supervised.bias_correction if self.supervised is not None else None

    def bias_note(self) -> str | None:
        """One line saying that predictions beyond the runs are bias-corrected (None: they are raw)."""
        return None if self.bias_correction is None else self.bias_correction.describe()

    def interval_note(self) -> str | None:
        """One line saying what a preset's intervals are (`laws.preset_error`); None for a law whose
        fit record is its own (`fit` says what its intervals are)."""
        fit = self.supervised.fit if self.supervised is not None else None
        calibrated = fit.interval if fit is not None else None
        if calibrated is None or calibrated.stated is None:
            return None
        level, coefficients = calibrated.stated.level, coefficients_note(self.name)
        return (f"{self.name}'s {level:.0%} intervals: {calibrated.describe(level)}"
                + (f"; its coefficients: {coefficients}" if coefficients else ""))

    def without_bias_correction(self) -> "LawSet":
        """These laws with their raw predictions (`--no-bias-correction`): the supervised law without its
        correction, and the distillation law's student law with it; itself when there is none."""
        if self.bias_correction is None:
            return self
        supervised = self.supervised.without_bias_correction()
        distillation = None if self.distillation is None else replace(self.distillation, student_law=supervised)
        return replace(self, supervised=supervised, distillation=distillation)

    def require_supervised(self) -> SupervisedLaw:
        if self.supervised is None:
            raise UserError(f"law {self.name!r} has no supervised law: fit one with "
                            "`distillscale fit supervised` or use a preset such as busbridge2025")
        return self.supervised

    def require_distillation(self) -> DistillationLaw:
        if self.distillation is None:
            raise UserError(f"law {self.name!r} has no distillation law: fit one with "
                            "`distillscale fit distillation` or use the busbridge2025 preset")
        return self.distillation

    @property
    def uniform_loss(self) -> float:
        """The loss of a uniform guess over the law's vocabulary, ln V (nats/token): no model is worse."""
        return math.log(self.compute.n_vocab)

    def check_teacher_loss(self, loss: float, flag: str = "--teacher-loss", measured: str | None = None) -> float:
        """A teacher loss the law can take: above the irreducible loss E of the data (no model
        reaches E, so a smaller loss is a typo or another unit) and below a uniform guess over the
        law's vocabulary, ln V (a worse teacher has learnt nothing: another unit, or bits); returns it.
        `flag` names a given loss; `measured`, instead, the model whose loss was measured (a plan's
        --teacher-model): the refusal then names it and what to do about the model."""
        E = self.require_supervised().E
        what = f"{flag} {loss:g}" if measured is None else f"the loss of {measured}, {loss:.4f} nats/token measured,"
        if not loss > E:
            fix = ("give the teacher's validation loss in nats/token" if measured is None else
                   "the law's E is above what this model reaches on its text: fit the law on runs of this model's "
                   "text and tokenizer")
            raise UserError(f"{what} is not above the irreducible loss E = {E:.4g} nats/token "
                            f"of law {self.name!r}: no teacher reaches that; {fix}")
        uniform = self.uniform_loss
        if not loss < uniform:
            fix = ("give the teacher's validation loss in nats/token" if measured is None else
                   "the model predicts its text no better than chance, so it has nothing to teach: give a trained "
                   "teacher")
            raise UserError(f"{what} is not below {uniform:.4g} nats/token, a uniform guess over the "
                            f"{self.compute.n_vocab}-token vocabulary of law {self.name!r}: {fix}")
        return loss

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "name": self.name,
            "source": self.source,
            "compute": vars(self.compute),
            "losses": self.losses.to_json(),
            "supervised": self.supervised.to_dict() if self.supervised else None,
            "distillation": self.distillation.to_dict() if self.distillation else None,
            **({} if self.recipe is None else {"recipe": self.recipe.model_dump(mode="json")}),
        }

    @classmethod
    @checked
    def from_dict(cls, data: dict) -> "LawSet":
        """The law set of a law file's JSON, validated in full first (`laws.schema`): a UserError
        names the first bad field (`supervised.fit.level = 5: ...`)."""
        validate_law_file(data)
        supervised = _read_law("supervised", lambda: supervised_law_from_dict(data["supervised"])) \
            if data.get("supervised") else None
        distillation = _read_law("distillation",
                                 lambda: DistillationLaw.from_dict(data["distillation"], supervised)) \
            if data.get("distillation") else None
        return cls(name=data.get("name", "unnamed"), supervised=supervised, distillation=distillation,
                   compute=ComputeSettings(**data.get("compute", {})), source=data.get("source", ""),
                   losses=LossIdentity.from_json(data.get("losses")), recipe=_read_recipe(data.get("recipe")))

    def save(self, path: str | Path, overwrite: bool = False, inputs=(), *, flag: str = "path",
             overwrite_flag: str = "overwrite=True") -> None:
        """Write law.json (atomically): the laws, their fit records and the compute settings. An
        existing file is replaced only with `overwrite`, and only if it is a law file; `inputs`
        (the files the law came from) are never written over."""
        check_path_argument(path)
        check_output_file(path, overwrite=overwrite, is_ours=is_law_file, inputs=inputs, flag=flag,
                          what="distillscale law file", overwrite_flag=overwrite_flag)
        record = self.to_dict()
        try:  # what load_laws would refuse is never written (a name with an escape sequence)
            validate_law_file(json.loads(json.dumps(record, default=lambda value: value.tolist())))
        except UserError as exc:
            raise UserError(f"cannot save law {self.name!r} to {path}: {exc}") from None
        atomic_write_json(path, record)


def check_path_argument(path, param: str = "path") -> None:
    """`path` names a file: a str or a path-like object (not None, a number or a list)."""
    if isinstance(path, bool) or not isinstance(path, (str, os.PathLike)):
        raise ParameterError(param, "{} must be a file name (a str or a pathlib.Path), got {value!r}", value=path)


def _read_law(part: str, read):
    """`read()`, with a fit-record error's field (`fit.level`) named in full (`supervised.fit.level`)."""
    try:
        return read()
    except UserError as exc:
        raise UserError(f"{part}.{exc}") from None


def _read_recipe(data) -> SweepRecipe | None:
    """A law file's "recipe" (`laws.sweep_recipe`), None where it has none; a bad field is one line."""
    if data is None:
        return None
    try:
        return SweepRecipe.model_validate(data)
    except ValidationError as exc:
        raise UserError(describe(exc, "recipe") + "; fix the file or fit the law again") from None


def _busbridge2025() -> LawSet:
    supervised = SupervisedLaw(E=1.220, A=3355.0, B=18186.0, alpha=0.408, beta=0.431, gamma=0.452,
                               fit=preset_record("busbridge2025"))
    distillation = DistillationLaw(A=2243.0, B=24181.0, alpha=0.321, beta=0.637, gamma=0.764,
                                   c0=2.549, c1=522.6, f1=0.090, d1=1.315, student_law=supervised,
                                   fit=distillation_record("busbridge2025"))
    return LawSet("busbridge2025", supervised, distillation, ComputeSettings(4096, 32168, 128.0),
                  "Busbridge et al. 2025, Table 6 (C4-English, vocab 32168, context 4096)", losses=LossIdentity(
                      tokenizer=TokenizerIdentity(name="of Busbridge et al. 2025, not published", vocab_size=32168),
                      text=TextIdentity(name="C4 English (Busbridge et al. 2025's validation loss)")))


# Hoffmann et al. 2022 (Sec. 4.1 and App. A): a SentencePiece tokenizer of 32,000 tokens, Gopher's
# without NFKC normalisation; the losses of its runs on MassiveText. Epoch's refit reads the same runs.
_CHINCHILLA_LOSSES = LossIdentity(
    tokenizer=TokenizerIdentity(name="SentencePiece of Hoffmann et al. 2022, not published",
                                vocab_size=32000),
    text=TextIdentity(name="MassiveText (the final losses of Hoffmann et al. 2022's runs)"))


def _chinchilla2022() -> LawSet:
    return LawSet("chinchilla2022",
                  SupervisedLaw(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28, fit=preset_record("chinchilla2022")),
                  source="Hoffmann et al. 2022, Eq. 10 (MassiveText)", losses=_CHINCHILLA_LOSSES)


def _epoch2024() -> LawSet:
    return LawSet("epoch2024",
                  SupervisedLaw(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658,
                                fit=preset_record("epoch2024")),
                  source="Besiroglu et al. 2024, refit of Chinchilla Fig. 4", losses=_CHINCHILLA_LOSSES)


PRESETS = {"busbridge2025": _busbridge2025, "chinchilla2022": _chinchilla2022,
           "epoch2024": _epoch2024}
# The help of every command's --law option: what `load_laws` takes.
LAW_HELP = f"a preset ({', '.join(PRESETS)}), a law JSON file, or a report.json (the laws `report` fitted)"
# What `fit_supervised(form=...)` (and so `fit supervised --form`, `report --form`) fits.
FORM_HELP = ("auto (the median of the three forms below, refitted into one law of the busbridge form; "
             "the forms alone are backtested and shown, not chosen), chinchilla (gamma = 1), tied "
             "(gamma = 1, alpha = beta), busbridge (gamma fitted) or interaction (chinchilla with a data exponent "
             "beta + beta1 ln(N/N0) that depends on model size; beta1 = 0 when the runs do not pin it down) or "
             "farseer (Farseer's surface to first order in ln N: a data term B (N/N0)^kappa / D^(beta (N/N0)^nu) "
             "whose coefficient and exponent depend on model size; kappa = nu = 0 when the runs do not pin them "
             "down)")


# The help of every command's --no-bias-correction (`laws.crossladder`).
NO_BIAS_CORRECTION_HELP = ("use the law's raw predictions: without a correction of predictions beyond the fitted runs "
                           "that a law carries (fitted with --bias-correction, or a builtin design's own term; "
                           "docs/validation_pack.md), to compare")
# The help of `fit supervised --bias-correction` (the cross-ladder correction is opt-in).
BIAS_CORRECTION_HELP = ("correct the law's predictions beyond the fitted runs by the cross-ladder bias model (off by "
                        "default: on the published ladders, left out a family at a time, it did not lower the error; "
                        "docs/validation_pack.md)")


def load_laws(spec: str | Path, *, bias_correction: bool = True) -> LawSet:
    """A preset name, the path of a law JSON file (as written by `fit ... --out`) or of a report.json
    (the laws `report` and `demo` fitted to a sweep); with
    `bias_correction=False`, without the cross-ladder correction its supervised law carries."""
    laws = _load_laws(spec)
    return laws if bias_correction else laws.without_bias_correction()


def _load_laws(spec: str | Path) -> LawSet:
    spec = str(spec)
    if spec in PRESETS:
        return PRESETS[spec]()
    path = Path(spec)
    if not path.exists():
        raise UserError(f"unknown law {spec!r}: use a preset ({', '.join(PRESETS)}) "
                        "or the path of a law JSON file")
    text = read_text_file(path, "law file")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"law file {spec} is not valid JSON: {exc}") from None
    if isinstance(data, dict) and str(data.get("format", "")).startswith(REPORT_FORMAT) \
            and isinstance(data.get("laws"), dict):
        data = data["laws"]  # a report's fitted laws (`distillscale report`, `demo`: report.json)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        written = data.get("format") if isinstance(data, dict) else None
        if isinstance(written, str) and written.startswith(FORMAT.split("/")[0] + "/"):
            raise UserError(f"{spec} is a law file of format {written!r}, which this distillscale does not "
                            f"read (it reads {FORMAT!r}): upgrade distillscale to read it")
        raise UserError(f"{spec} is not a distillscale law file (expected \"format\": \"{FORMAT}\")")
    try:
        laws = LawSet.from_dict(data)
    except UserError as exc:  # a bad field, a fit record from a newer distillscale
        raise UserError(f"law file {spec}: {exc}") from None
    laws.path = spec
    text = laws.losses.text
    if text is not None and text.directory and not Path(text.directory).expanduser().is_absolute():
        # a law written with a relative split: relative to the law's own file, from any directory
        directory = (path.parent / Path(text.directory).expanduser()).resolve()
        laws.losses = laws.losses.model_copy(update={"text": text.model_copy(update={"directory": str(directory)})})
    return laws
