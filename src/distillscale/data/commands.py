"""`distillscale data ...`: tokenise a corpus ahead of training and see what it holds."""

from __future__ import annotations

import typer

from distillscale.console import Table, console, print_json
from distillscale.data.config import DataConfig
from distillscale.errors import UserError
from distillscale.cli_options import with_config_options
from distillscale.settings import describe_error
from distillscale.units import format_quantity

data_app = typer.Typer(help="Prepare training corpora: tokenizer and val / teacher / student splits.",
                       no_args_is_help=True)
FLAG_NAMES = {"path": "data"}  # the corpus is --data, as in train


def prepare(as_json: bool = False, **settings) -> None:
    """Tokenise a corpus into cached splits (reused while the corpus is unchanged) and summarise them."""
    from pydantic import ValidationError

    from distillscale.data.prepare import prepare_data

    given = {name: value for name, value in settings.items() if value is not None}
    try:
        config = DataConfig(**given)
    except ValidationError as exc:
        raise UserError(describe_error(exc, given, flag_names=FLAG_NAMES)) from None
    prepared = prepare_data(config, progress=not as_json)
    if as_json:
        print_json({"directory": str(prepared.directory), "reused": prepared.reused, "manifest": prepared.manifest})
    else:
        console.print(_summary(prepared))


def _summary(prepared) -> Table:
    from distillscale.data.prepare import SPLITS

    manifest = prepared.manifest
    source, vocabulary = manifest["source"], manifest["tokenizer"]
    table = Table(title=f"Prepared corpus {prepared.fingerprint}", show_header=False)
    table.add_row("source", source["description"])
    table.add_row("read", f"{source['documents']} documents, {format_quantity(source['bytes'])} bytes"
                          + (" (cut at --max-bytes)" if source["truncated_by_max_bytes"] else "")
                          + (f", {source['duplicates_skipped']} duplicate files left out"
                             if source.get("duplicates_skipped") else ""))
    if source["skipped_non_utf8"]:
        table.add_row("skipped", f"{source['skipped_non_utf8']} not UTF-8, "
                                 f"e.g. {source['skipped_examples'][0]}")
    table.add_row("tokenizer", f"{vocabulary['origin']}: {vocabulary['vocab_size']} tokens, "
                               f"sha256 {vocabulary['hash'][:12]}")
    for name in SPLITS:
        split = manifest["splits"][name]
        table.add_row(f"{name} split", f"{format_quantity(split['tokens'])} tokens ({manifest['dtype']}), "
                                       f"{split['documents']} documents"
                                       + (f" in {split['units']} units, the largest document "
                                          f"{split['largest_document_share']:.0%}"
                                          if split.get("units", split["documents"]) != split["documents"] else ""))
    table.add_row("directory", str(prepared.directory))
    table.add_row("status", "reused (nothing tokenised)" if prepared.reused else "tokenised now")
    return table


data_app.command("prepare")(with_config_options(prepare, DataConfig, flag_names=FLAG_NAMES,
                                                json_help="print the manifest as JSON"))
