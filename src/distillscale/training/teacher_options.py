"""How teachers are given on the command line: `--teacher NAME=PATH` (a mixture's named teacher),
`--teacher-url` (a server's /v1 base, and the URL as messages and records may show it), and a
mixture's settings (`check_mixture`); `flag`, the flag of a setting, for the messages of the run's
settings (`training.config`)."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from distillscale.model.served import api_base as teacher_api_base
from distillscale.urls import redacted_url


def teacher_name(path: Path) -> str | None:
    """The NAME of a --teacher given as NAME=PATH (a word of letters, digits, _ or -), else None."""
    match = re.fullmatch(r"([A-Za-z0-9_-]+)=(.+)", str(path))
    return match.group(1) if match else None


def teacher_location(path: Path | None) -> Path | None:
    """The PATH of a --teacher given as NAME=PATH, or `path` itself."""
    if path is None:
        return None
    match = re.fullmatch(r"([A-Za-z0-9_-]+)=(.+)", str(path))
    return Path(match.group(2)) if match else path


def flag(key: str) -> str:
    """The command-line flag of a setting (every TOML key may also be written this way, unprefixed)."""
    return "--" + key.replace("_", "-")


def check_mixture(config: Any) -> None:
    """A mixture's settings (`training.mixture`): weights and route need several --teacher, one weight per
    teacher, none negative, a positive finite sum; each teacher once; a route names every teacher;
    ValueError otherwise."""
    paths = config.teacher_paths() if len(config.teacher_paths()) > 1 else config.teacher_urls()
    if len(paths) < 2:
        for key in ("teacher_weight", "teacher_route"):
            if getattr(config, key) is not None:
                raise ValueError(f"{flag(key)} needs several --teacher (a mixture): leave it out, or give "
                                 f"--teacher more than once")
        return
    kind = "teacher" if len(config.teacher_paths()) > 1 else "teacher_url"
    places = ([teacher_location(Path(path)).expanduser().resolve() for path in paths] if kind == "teacher"
              else [teacher_api_base(url) for url in paths])
    twice = next((str(paths[i]) for i in range(len(places)) if places[i] in places[:i]), None)
    if twice is not None:
        raise ValueError(f"{flag(kind)} {redacted_url(twice)} is given twice: a mixture of a teacher with itself "
                         f"is that teacher; give each teacher once (--teacher-weight sets their shares)")
    for other in ("teacher", "teacher_cache", "teacher_url"):
        if other != kind and getattr(config, other) is not None:
            raise ValueError(f"several {flag(kind)} cannot be mixed with {flag(other)} (a mixture of in-process "
                             f"teachers, or of served ones): give only {flag(kind)}, more than once")
    if kind == "teacher_url" and config.teacher_route is not None:
        raise ValueError("--teacher-route needs teachers in process (--teacher NAME=PATH): routing served "
                         "teachers is not available yet")
    weights = config.teacher_weight
    if weights is not None:
        if len(weights) != len(paths):
            raise ValueError(f"{len(weights)} --teacher-weight for {len(paths)} --teacher: give one weight per "
                             f"teacher, in their order")
        total = sum(weights)  # finite weights can add up to infinity (1e308 + 1e308)
        if any(not math.isfinite(weight) or weight < 0 for weight in weights) or not 0 < total < math.inf:
            raise ValueError(f"--teacher-weight {', '.join(f'{w:g}' for w in weights)}: the weights must be "
                             f"finite, none negative, and sum to a positive finite number")
    if config.teacher_route is not None:
        if weights is not None:
            raise ValueError("--teacher-route and --teacher-weight exclude each other: a routed sequence "
                             "is distilled from its one teacher")
        names = [teacher_name(path) for path in paths]
        if any(name is None for name in names):
            raise ValueError("--teacher-route needs every teacher named, --teacher NAME=PATH (e.g. "
                             "--teacher code=runs/code --teacher prose=runs/prose)")
        if len(set(names)) != len(names):
            raise ValueError(f"--teacher names {', '.join(map(str, names))} repeat: give each teacher its own name")
