"""JSON text that every reader accepts: what each JSON file, line and `--json` output of distillscale is
written with (below the floor's modules, which all may use it)."""

from __future__ import annotations

import json
import math
from typing import Any

# JSON has no NaN or infinity (Python's json writes bare NaN, which other readers refuse): a
# non-finite number is written as one of these strings, which pydantic's float fields read back.
NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def json_text(obj: Any, **options: Any) -> str:
    """`obj` as valid JSON (numpy scalars and arrays as numbers and lists, non-finite numbers as
    the strings of NON_FINITE): what every JSON file and line distillscale writes goes through."""
    return json.dumps(finite_json(obj), allow_nan=False, default=_jsonable, **options)


def finite_json(obj: Any) -> Any:
    """`obj` with every non-finite float replaced by its NON_FINITE string."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else NON_FINITE[repr(float(obj))]
    if isinstance(obj, dict):
        return {key: finite_json(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(value) for value in obj]
    return obj


def _jsonable(obj: Any) -> Any:
    """Let numpy scalars and arrays pass through json.dumps."""
    if hasattr(obj, "tolist"):
        return finite_json(obj.tolist())
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")
