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


@pytest.mark.parametrize("text, value", [("200TB", 2e14), ("1.5 PB", 1.5e15), ("20kB", 2e4), ("20KB", 2e4),
                                         ("64GiB", 64 * 2 ** 30), ("2TiB", 2 * 2 ** 40), ("1KiB", 1024),
                                         ("20M", 2e7), ("500G", 5e11), ("20k", 2e4), ("3e14", 3e14), ("4096", 4096),
                                         (4096, 4096)])
def test_sizes_in_bytes_take_decimal_and_binary_units(text, value):
    from distillscale.units import parse_bytes

    assert parse_bytes(text, "--max-bytes") == value


@pytest.mark.parametrize("text, fragment", [("30Tb", "a lowercase b means bits; give bytes, e.g. 30TB (decimal) or 30TiB"),
                                            ("30tb", "a lowercase b means bits"), ("5Mb", "5MB (decimal) or 5MiB"),
                                            ("2Gib", "a lowercase b means bits"),
                                            ("7B", "'7B' is ambiguous (B is billion in counts): write 7GB"),
                                            ("30XB", "malformed --cache-storage '30XB': give a size in bytes"), ("0", "positive"),
                                            ("-3TB", "positive"), ("1e300PB", "positive")])
def test_sizes_in_bytes_refuse_bits_and_a_bare_b_in_one_line(text, fragment):
    from distillscale.units import parse_bytes

    with pytest.raises(UserError) as error:
        parse_bytes(text, "--cache-storage")
    message = str(error.value)
    assert fragment in message and "\n" not in message and "--cache-storage" in message.split(":")[0]


def test_two_unequal_sizes_never_print_alike():
    from distillscale.units import format_byte_pair, format_bytes

    assert format_bytes(3e13) == "30TB" and format_bytes(500) == "500 bytes"   # no bare B: it is billion elsewhere
    assert format_byte_pair(30e12, 30.04e12) == ("30TB", "30.04TB")
    assert format_byte_pair(3e13, 3e13) == ("30TB", "30TB")
    first, second = format_byte_pair(29_999_999_999_999, 3e13)
    assert first != second


def test_a_cache_limit_below_what_a_run_needs_says_two_different_sizes():
    from distillscale.errors import ParameterError
    from distillscale.planning.family import bytes_per_token, cache_tokens

    per = bytes_per_token(32768, 128)
    with pytest.raises(ParameterError) as error:   # holds 999,500 tokens, below the 1M a run is planned on
        cache_tokens(32768, 128, per * 1e6 * 0.9995, 1e6)
    message = str(error.value)
    held, fewest = message.split(" holds ")[1].split()[0], message.split(" below the ")[1].split()[0]
    assert held != fewest, message


@pytest.mark.parametrize("flag", [["plan", "--students", "100M,300M", "--teacher-params", "3B", "--teacher-tokens", "100B",
                                   "--compute", "3e20", "--cache-storage"],
                                  ["loss", "model", "--data", "corpus", "--max-bytes"],
                                  ["data", "prepare", "--data", "corpus", "--max-bytes"],
                                  ["train", "--out", "run", "--max-bytes"]])
def test_every_byte_size_flag_reads_one_way(cli, flag):
    code, out, err = cli(*flag, "30Tb")
    assert code == 2 and err.count("\n") == 1 and "a lowercase b means bits" in err, err
    code, out, err = cli(*flag, "7B")
    assert code == 2 and err.count("\n") == 1 and "is ambiguous (B is billion in counts)" in err, err
