import pytest

from distillscale.errors import UserError
from distillscale.units import format_quantity, parse_quantity


@pytest.mark.parametrize("text, value", [
    ("1e21", 1e21), ("546M", 546e6), ("7.75B", 7.75e9), ("2T", 2e12), ("20k", 2e4), ("3G", 3e9),
    (" 12 ", 12.0), (5, 5.0),
])
def test_parse_quantity(text, value):
    assert parse_quantity(text, kind=None) == pytest.approx(value)


@pytest.mark.parametrize("text", ["abc", "1e", "2X", "-5", "0", "nan", "", "1.2.3M"])
def test_parse_quantity_rejects(text):
    with pytest.raises(UserError, match="--budget"):
        parse_quantity(text, "--budget", kind=None)


@pytest.mark.parametrize("value, text", [
    (5.46e8, "546M"), (7.75e9, "7.75B"), (999999.9, "1M"), (999.6, "1K"), (12.0, "12"),
    (1e17, "100P"), (2.5e3, "2.5K"),
])
def test_format_quantity(value, text):
    assert format_quantity(value) == text
