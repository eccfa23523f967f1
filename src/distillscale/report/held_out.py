"""A verdict given by a law that failed its own held-out check says so on its line.

Each law of the report is refitted without its largest model and asked to predict those runs
(`laws.calibrate.HoldoutCheck`); when it fails (`HoldoutCheck.failed`: one-sided errors, or far
fewer runs inside its intervals than their level), a verdict it gives is worth less than its
interval says, and the line that prints the verdict says which law failed and how.

    failed = failed_checks(report["extrapolation_check"])   # {"supervised": "held-out runs predicted ..."}
    line += verdict_clause(failed)                            # "; the supervised law failed its held-out check (...)"
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def failed_checks(checks: Mapping[str, Any]) -> dict[str, str]:
    """Law name -> why it failed its held-out check, from report.json's extrapolation checks (those
    skipped, and a report written before they said, fail nothing)."""
    return {name: check["failed"] for name, check in checks.items()
            if isinstance(check, Mapping) and check.get("failed")}


def verdict_clause(failed: Mapping[str, str]) -> str:
    """The clause a verdict's line ends with when a law behind it failed its held-out check ('' when none did)."""
    return "".join(f"; the {name} law failed its held-out check ({why})" for name, why in failed.items())
