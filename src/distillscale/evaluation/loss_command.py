"""`distillscale loss MODEL --data DIR`: a model's cross-entropy on a corpus's validation split, in
nats/token and bits per byte, written to loss.json (`evaluation.loss` does the work, and names the
module of each step)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar, Literal

from distillscale.cli_options import CommandSettings, argument, command, option
from distillscale.console import Table, console, print_json
from distillscale.model.teacher_limits import RequestLimits, check_limits_used, retries_option, timeout_option
from distillscale.settings import byte_size, count
from distillscale.units import Quantity
from distillscale.urls import is_url, misspelled_url


class LossSettings(CommandSettings):
    """`distillscale loss`."""

    command_path: ClassVar[str] = "loss"

    model: str = argument(help="a finished distillscale run, a Hugging Face causal-LM directory (with its tokenizer) "
                               "or a served teacher's URL (http://host:port, `serve-teacher` or vLLM)")
    data: Path | None = option(None, help="the corpus whose validation split is scored (a directory, file or glob of "
                                          "text, .jsonl or .parquet), prepared with the model's tokenizer as `data "
                                          "prepare` splits it; or a prepared corpus directory (default for a run: its "
                                          "own corpus)")
    seq_len: int | None = option(None, min=1, help="tokens per window (default: a run's own; else 2048, at most the "
                                                   "model's context)")
    max_tokens: Annotated[int | None, count("--max-tokens", kind=Quantity.TOKENS)] = option(
        None, help="score at most this many tokens, a fixed sample of windows (default: a run's own evaluation cap; "
                   "else the whole split)")
    batch_size: int = option(8, min=1, help="windows per forward pass")
    device: Literal["auto", "cpu", "cuda"] = option("auto", help="auto, cpu or cuda")
    trust_remote_code: bool = option(False, help="run the model's own code (its config's auto_map): only code you trust")
    tokenizer: Path | None = option(None, help="a served model's tokenizer, to prepare --data with")
    max_bytes: Annotated[int | None, byte_size("--max-bytes")] = option(
        None, help="read at most this many bytes of the corpus, e.g. 20MB (as `data prepare`)")
    val_fraction: float | None = option(None, above=0, below=1, help="share of the corpus's tokens held out for "
                                        "validation, between 0 and 1 (as `data prepare`; default 0.05)")
    seed: int | None = option(None, min=0, help="salt of the corpus's split (as `data prepare`; default 0)")
    other_corpus: bool = option(False, help="for a run: --data shares no text with the corpus the run trained on; "
                                            "split it on its own, without the run's split settings or the check "
                                            "that keeps the run's training text out of the validation split")
    out: Path | None = option(None, help="also write the measurement to this file (loss.json); it is kept in "
                                         "distillscale's cache either way, never in the model's directory")
    overwrite: bool = option(False, help="replace an --out file `distillscale loss` wrote for another measurement")
    teacher_timeout: float | None = timeout_option()
    teacher_retries: int | None = retries_option()
    as_json: bool = option(False, flag="--json", help="print JSON")


@command(LossSettings)
def loss_command(s: LossSettings) -> None:
    """Measure a model's cross-entropy on a corpus's validation split: nats/token and bits per byte, with
    its standard error, the tokens and bytes scored and the time; kept, so asking again costs nothing."""
    from distillscale.evaluation.kept_loss import loss_output, write_loss
    from distillscale.evaluation.loss import evaluate_loss
    from distillscale.evaluation.model_argument import check_model

    check_model(s.model, s.trust_remote_code, s.tokenizer)
    check_limits_used(s.teacher_timeout, s.teacher_retries, is_url(s.model), "MODEL", misspelled_url(s.model))
    out = loss_output(s.model, s.out, s.overwrite)
    record = evaluate_loss(s.model, s.data, tokenizer=s.tokenizer, seq_len=s.seq_len, max_tokens=s.max_tokens,
                           batch_size=s.batch_size, device=s.device, trust_remote_code=s.trust_remote_code,
                           max_bytes=s.max_bytes, val_fraction=s.val_fraction, seed=s.seed, progress=not s.as_json,
                           limits=RequestLimits.given(s.teacher_timeout, s.teacher_retries), other_corpus=s.other_corpus)
    write_loss(out, record, s.overwrite)
    if s.as_json:
        print_json({**record.model_dump(mode="json"), "written_to": None if out is None else str(out)})
        return
    console.print(loss_table(record, out))


def loss_table(record, out: Path | None) -> Table:
    """The measurement as a table of two columns: what, and its value with its unit."""
    table = Table(title=f"Loss of {record.model}", show_header=False)
    table.add_column("what")
    table.add_column("value")
    from distillscale.data.loss_record import windows_text, with_error

    bits = "not known (the split's bytes were not counted)" if record.bits_per_byte is None else (
        with_error(record.bits_per_byte, record.bits_per_byte_standard_error, "bits/byte"))
    for name, value in (("cross-entropy", with_error(record.nats_per_token, record.standard_error, "nats/token")),
                        ("bits per byte", bits),
                        ("tokenizer", record.losses.tokenizer.describe()),
                        ("text", record.losses.text.describe()),
                        ("scored", f"{record.tokens:,} tokens" + ("" if record.bytes is None else
                                                                 f", {record.bytes:,.0f} bytes")
                         + f" ({windows_text(record.windows, record.seq_len)})"),
                        ("time", record.how_measured()),
                        *([] if out is None else [("written to", str(out))])):
        table.add_row(name, value)
    return table
