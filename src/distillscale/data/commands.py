"""`distillscale data ...`: tokenise a corpus ahead of training and see what it holds."""

from __future__ import annotations

import typer
from rich.table import Table

from distillscale.console import console, print_json
from distillscale.errors import UserError
from distillscale.units import format_quantity

data_app = typer.Typer(help="Prepare training corpora: tokenizer and val / teacher / student splits.",
                       no_args_is_help=True)


@data_app.command("prepare")
def prepare(
    data: str | None = typer.Option(
        None, "--data", help="directory, file or glob of text/.jsonl/.parquet files, or a datasets "
                             "save_to_disk directory (default: this Python's standard library)"),
    text_field: str | None = typer.Option(None, "--text-field",
                                          help="text field of .jsonl/.parquet/datasets (default: text)"),
    vocab_size: int | None = typer.Option(None, "--vocab-size",
                                          help="vocabulary of the BPE to train (default: 8192)"),
    tokenizer: str | None = typer.Option(None, "--tokenizer",
                                         help="tokenizer.json or tokenizer directory to use instead"),
    val_fraction: float | None = typer.Option(None, "--val-fraction",
                                              help="share of the text held out (default: 0.05)"),
    max_bytes: str | None = typer.Option(None, "--max-bytes", help="read at most this much text, e.g. 20M"),
    seed: int | None = typer.Option(None, "--seed", help="salt of the document split (default: 0)"),
    cache_dir: str | None = typer.Option(
        None, "--cache-dir",
        help="where prepared corpora live (default: $DISTILLSCALE_CACHE or ~/.cache/distillscale)"),
    as_json: bool = typer.Option(False, "--json", help="print the manifest as JSON"),
) -> None:
    """Tokenise a corpus into cached splits (reused while the corpus is unchanged) and summarise them."""
    from pydantic import ValidationError

    from distillscale.data.config import DataConfig
    from distillscale.data.prepare import SPLITS, prepare_data

    given = {"path": data, "text_field": text_field, "vocab_size": vocab_size, "tokenizer": tokenizer,
             "val_fraction": val_fraction, "max_bytes": max_bytes, "seed": seed, "cache_dir": cache_dir}
    try:
        config = DataConfig(**{name: value for name, value in given.items() if value is not None})
    except ValidationError as exc:
        error = exc.errors()[0]
        flag = "--data" if error["loc"][0] == "path" else "--" + str(error["loc"][0]).replace("_", "-")
        raise UserError(f"{flag}: {error['msg']}") from None
    prepared = prepare_data(config, progress=not as_json)
    manifest = prepared.manifest
    if as_json:
        print_json({"directory": str(prepared.directory), "reused": prepared.reused, "manifest": manifest})
        return

    source, vocabulary = manifest["source"], manifest["tokenizer"]
    table = Table(title=f"Prepared corpus {prepared.fingerprint}", show_header=False)
    table.add_row("source", source["description"])
    table.add_row("read", f"{source['documents']} documents, {format_quantity(source['bytes'])} bytes"
                          + (" (cut at --max-bytes)" if source["truncated_by_max_bytes"] else ""))
    if source["skipped_non_utf8"]:
        table.add_row("skipped", f"{source['skipped_non_utf8']} not UTF-8, "
                                 f"e.g. {source['skipped_examples'][0]}")
    table.add_row("tokenizer", f"{vocabulary['origin']}: {vocabulary['vocab_size']} tokens, "
                               f"sha256 {vocabulary['hash'][:12]}")
    for name in SPLITS:
        split = manifest["splits"][name]
        table.add_row(f"{name} split", f"{format_quantity(split['tokens'])} tokens ({manifest['dtype']}), "
                                       f"{split['documents']} documents")
    table.add_row("directory", str(prepared.directory))
    table.add_row("status", "reused (nothing tokenised)" if prepared.reused else "tokenised now")
    console.print(table)
