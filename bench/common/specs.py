"""A sweep spec written from a bench script: `name` and its sections (data, model, teachers, tune, ...)
as TOML, a setting of None left out (the sweep's default)."""

from __future__ import annotations

from pathlib import Path


def write_spec(path: Path, name: str, sections: dict) -> None:
    import tomli_w

    path.write_text(tomli_w.dumps({"name": name, **{section: {key: value for key, value in keys.items()
                                                              if value is not None}
                                                    for section, keys in sections.items()}}))
