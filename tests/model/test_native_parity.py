"""The C steady-state pass (`collector._native`) is indistinguishable from the pure-Python one.

Two `IncrementalParser`s, one on the C pass and one on pure Python (``native=False``), take the
same sequence of bodies: a seed they remember, then bodies derived from it with values of
every kind (Go floats and near misses Python's ``float()`` takes), timestamps, changed keys
and lines, truncations, CRLF and NUL bytes. At every step both must give the same
exposition (keys, values by bits, stamps) or the same error. Each step also checks the steady
step alone against the Python reference on the same remembered state: the C function returns
the values exactly when the Python pass does without timestamps, and None otherwise.

Everything but `test_extension_is_built` is skipped when the extension is off: with
``COLLECTOR_NATIVE=0`` both parsers are the pure-Python one.
"""

from __future__ import annotations

import math
import os
import re
import sys

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from benchmarks.data import node_exporter_body
from collector import native
from collector.model.textparse import Columns, ExpositionError, IncrementalParser
from collector.model.textparse.syntax import FLOAT
from collector.model.value import NORMAL_NAN_BITS, float_bits

needs_native = pytest.mark.skipif(not native.ACTIVE, reason=f"native extension {native.REASON}")

SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

NODE = node_exporter_body()
SEEDS = [
    NODE,
    NODE.rstrip(b"\n"),  # no final newline: the last line is a sample
    b"# HELP a x\n# TYPE a histogram\n"
    b'a_bucket{le="1"} 1\na_bucket{le="+Inf"} 2\na_sum 2\na_count 2\n\n# c\nplain 7\nplain 8\n',
    b"a 1\nb 2\n",
    b"only 0",
    b'm{a="x\ny"} 1\nn 2\n',  # a raw newline in a label value: never remembered
]
OM_SEEDS = [
    b"# TYPE r counter\n# HELP r help\nr_total 1\nr_created 2\n"
    b'# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_count 2\nh_sum 1\n# EOF\n',
    b'g{a="b"} 1\ng{a="c"} 2\n# EOF',
]

# Values of every kind: what Go and float() both take, what only float() takes, and neither.
TOKENS = [
    *(b"0", b"1", b"-1", b"007", b"+5", b"123456789012345678901234567890"),
    *(b"1.5", b"-0.0", b".5", b"5.", b"+.5e-3", b"1.e5", b"1.446121e+06", b"1E5", b"2e-308"),
    *(b"4.9e-324", b"1e-400", b"1.7976931348623157e308", b"1.8e308", b"1e309", b"-1e999"),
    *(b"Inf", b"+Inf", b"-Inf", b"inf", b"INFINITY", b"-infinity", b"+InFiNiTy", b"infin"),
    *(b"NaN", b"nan", b"NAN", b"nAn", b"+NaN", b"-nan", b"nan(1)", b"nana"),
    *(b"0x10", b"0x1p3", b"1_000", b"1e", b"e5", b".", b"-", b"+", b"", b"1.2.3", b"--1"),
    *(b" 1", b"1 ", b"1  2", b"1\t", b"\t1", b"1\r", b"1\x00", b"\x001", b"\xff", b"\xd9\xa1"),
    *(b"1 123", b"1 -5", b"1 1.5", b"1 1234567890123456789", b"NaN 0", b'1 # {a="b"} 1'),
]

_FLOAT_RE = re.compile(FLOAT)
_VALUE = st.one_of(
    st.sampled_from(TOKENS),
    st.from_regex(_FLOAT_RE, fullmatch=True),
    st.floats().map(lambda f: repr(f).encode()),
    st.floats().map(lambda f: f"{f:.17e}".encode()),
    st.integers(-(2**80), 2**80).map(lambda i: str(i).encode()),
    st.text(alphabet="0123456789.+-eEiInNfFtTyYaA _x\t\r\x00", max_size=10).map(str.encode),
    st.binary(max_size=6),
)
_STAMP = st.one_of(
    st.integers(-(2**63), 2**63).map(lambda i: str(i).encode()),
    st.sampled_from([b"1.5", b"1e3", b"", b"x", b"1700000000.123"]),
)
_BYTE = st.sampled_from([bytes([b]) for b in b' \t\r\n\x00#{}",=\\_.+-019aeEInNfpx\xff'])

# One edit of a body: (what, where, data). "where" picks a sample line, a line or a byte
# (modulo their count); "data" is the new value, timestamp or byte.
_EDIT = st.one_of(
    st.tuples(st.just("value"), st.integers(0, 600), _VALUE),
    st.tuples(st.just("stamp"), st.integers(0, 600), _STAMP),
    st.tuples(st.sampled_from(["key", "ins", "del", "set"]), st.integers(0, 80_000), _BYTE),
    st.tuples(st.sampled_from(["drop", "dup", "blank"]), st.integers(0, 1100), st.just(b"")),
    st.tuples(st.sampled_from(["truncate", "crlf", "empty"]), st.integers(0, 80_000), _BYTE),
)
_STEPS = st.lists(st.lists(_EDIT, max_size=3), min_size=1, max_size=5)


def _sample_lines(lines: list[bytes]) -> list[int]:
    return [i for i, line in enumerate(lines) if line and not line.startswith(b"#")]


def _key_end(line: bytes) -> int:
    """Where the series key of a sample line ends (its first byte after ``}`` or the name)."""
    if b"{" in line:
        return line.rfind(b"}") + 1
    space = line.find(b" ")
    return space if space >= 0 else len(line)


def edit(body: bytes, change: tuple[str, int, bytes]) -> bytes:
    """``body`` with one change applied (see `_EDIT`)."""
    how, where, data = change
    lines = body.split(b"\n")
    samples = _sample_lines(lines)
    if how in ("value", "stamp", "key"):
        if not samples:
            return body
        i = samples[where % len(samples)]
        line = lines[i]
        end = _key_end(line)
        if how == "value":
            lines[i] = line[:end] + b" " + data
        elif how == "stamp":
            lines[i] = line + b" " + data
        elif end:
            at = where % end
            lines[i] = line[:at] + data + line[at + 1 :]
        return b"\n".join(lines)
    if how in ("drop", "dup", "blank"):
        i = where % len(lines)
        lines[i : i + 1] = {"drop": [], "dup": [lines[i]] * 2, "blank": [b"", lines[i]]}[how]
        return b"\n".join(lines)
    if how == "truncate":
        return body[: where % (len(body) + 1)]
    if how == "crlf":
        return body.replace(b"\n", b"\r\n")
    if how == "empty":
        return b""
    buf = bytearray(body)
    at = where % (len(buf) + 1)
    if how == "ins":
        buf[at:at] = data
    elif at < len(buf):
        buf[at : at + 1] = b"" if how == "del" else data
    return bytes(buf)


def outcome(parser: IncrementalParser, body: bytes, *, om: bool) -> tuple[object, ...]:
    """Everything the scrape loop reads of one parse: the columns by bits, or the error."""
    try:
        exp = parser.parse(body, openmetrics=om)
    except ExpositionError as exc:
        partial = [(k, float_bits(v), t) for k, v, t in exc.partial.samples]
        return "error", exc.message, exc.line, partial
    keys, values, stamps = exp.columns()
    return "ok", keys, [float_bits(v) for v in values], stamps, exp.metadata


def python_step(parser: IncrementalParser, body: bytes) -> Columns | None:
    """The pure-Python steady step of ``parser.parse`` on its remembered state (the reference)."""
    lines = body.split(b"\n")
    if len(lines) != parser._nlines or parser._pick_fixed(lines) != parser._fixed:
        return None
    return parser._columns(parser._pick_samples(lines))


def check_step(parser: IncrementalParser, body: bytes) -> None:
    """The C step on ``parser``'s remembered state agrees with `python_step`."""
    from collector import _native

    if parser._shape is None:
        return  # nothing remembered: neither pass runs
    values = _native.steady_values(body, parser._nlines, parser._mask, parser._fixed, parser._keys)
    reference = python_step(parser, body)
    if values is None:
        # Refused: the Python pass refuses too, or it found explicit timestamps.
        assert reference is None or reference[2] is not None, body
    else:
        assert reference is not None, body
        assert reference[2] is None
        assert list(map(float_bits, values)) == list(map(float_bits, reference[1])), body


def run_sequence(seed: bytes, steps: list[list[tuple[str, int, bytes]]], *, om: bool) -> None:
    """Feed the seed, then each step's edited body, to a C and a pure parser; compare all."""
    fast, pure = IncrementalParser(), IncrementalParser(native=False)
    body = seed
    for step in [[], *steps]:
        for change in step:
            body = edit(body, change)
        check_step(pure, body)
        result = outcome(fast, body, om=om)
        assert result == outcome(pure, body, om=om), body
        if result[0] == "error":
            body = seed  # start over from a body that parses, to keep the steady path busy


@needs_native
@SETTINGS
@given(seed=st.sampled_from(SEEDS), steps=_STEPS)
@example(seed=NODE, steps=[[("value", 3, b"-nan")], [("value", 5, b"1e309")]])
@example(seed=NODE, steps=[[("stamp", 0, b"1700000000000")], [("value", 0, b"2")]])
def test_text_bodies_agree(seed: bytes, steps: list[list[tuple[str, int, bytes]]]) -> None:
    """Text format: node_exporter and small bodies, edited, parse alike on both paths."""
    run_sequence(seed, steps, om=False)


@needs_native
@SETTINGS
@given(seed=st.sampled_from(OM_SEEDS), steps=_STEPS, om=st.booleans())
def test_openmetrics_bodies_agree(
    seed: bytes, steps: list[list[tuple[str, int, bytes]]], om: bool
) -> None:
    """OpenMetrics bodies (``# EOF`` kept as a fixed line), in either format, alike."""
    run_sequence(seed, steps, om=om)


_NAME = st.sampled_from([b"a", b"up", b"node_cpu_seconds_total", b"h_bucket", b"x:y"])
_LABELS = st.lists(
    st.tuples(st.sampled_from([b"le", b"mode", b"cpu"]), st.sampled_from([b"", b"1", b"+Inf"])),
    max_size=2,
).map(
    lambda pairs: b"{" + b",".join(n + b'="' + v + b'"' for n, v in pairs) + b"}" if pairs else b""
)
_LINE = st.one_of(
    st.tuples(_NAME, _LABELS, _VALUE).map(lambda t: t[0] + t[1] + b" " + t[2]),
    st.sampled_from([b"# HELP a some help", b"# TYPE a gauge", b"# TYPE up counter", b"", b"#"]),
)


@needs_native
@SETTINGS
@given(
    lines=st.lists(_LINE, max_size=12),
    final_newline=st.booleans(),
    values=st.lists(_VALUE, min_size=1, max_size=12),
    steps=st.lists(st.lists(_EDIT, max_size=2), max_size=3),
)
def test_generated_bodies_agree(
    lines: list[bytes],
    final_newline: bool,
    values: list[bytes],
    steps: list[list[tuple[str, int, bytes]]],
) -> None:
    """Generated bodies: each sample line takes new values (and then edits), alike."""
    seed = b"\n".join(lines) + (b"\n" if final_newline else b"")
    run_sequence(seed, [[("value", i, t) for i, t in enumerate(values)], *steps], om=False)


@needs_native
@pytest.mark.parametrize("token", TOKENS)
def test_every_listed_value_alike(token: bytes) -> None:
    """Each listed value, as the first and as the last line's, gives the same on both paths."""
    for seed in (b"# c\na 1\nb 2\n", b"a 1\nb 2"):
        for line in (0, 1):
            run_sequence(seed, [[("value", line, token)]], om=False)


@needs_native
def test_steady_node_exporter_takes_the_c_pass() -> None:
    """Values only: the C pass answers, keys stay the remembered list, NaN is NORMAL_NAN."""
    fast, pure = IncrementalParser(), IncrementalParser(native=False)
    first = fast.parse(NODE, openmetrics=False)
    pure.parse(NODE, openmetrics=False)
    body = edit(edit(NODE, ("value", 3, b"NaN")), ("value", 7, b"-Inf"))
    assert native.steady_values is not None
    values = native.steady_values(body, fast._nlines, fast._mask, fast._fixed, fast._keys)
    assert values is not None
    assert float_bits(values[3]) == NORMAL_NAN_BITS
    second = fast.parse(body, openmetrics=False)
    assert second.columns()[0] is first.columns()[0]
    assert outcome(fast, body, om=False) == outcome(pure, body, om=False)


@needs_native
def test_stamped_bodies_skip_the_c_pass_until_stamps_go() -> None:
    """A body with timestamps is parsed by the Python pass; the next one without goes to C."""
    parser = IncrementalParser()
    parser.parse(b"a 1\nb 2\n", openmetrics=False)
    assert parser.parse(b"a 1 5\nb 2\n", openmetrics=False).columns()[2] == [5, None]
    assert parser._has_stamps
    assert parser.parse(b"a 3 6\nb 4\n", openmetrics=False).columns()[2] == [6, None]
    assert parser.parse(b"a 7\nb 8\n", openmetrics=False).columns() == ([b"a", b"b"], [7, 8], None)
    assert not parser._has_stamps


def _decimal(mantissa: int, point: int, exponent: int | None, sign: str) -> bytes:
    """``mantissa`` written with ``point`` digits after the decimal point, then ``e<exponent>``."""
    digits = str(mantissa).rjust(point + 1, "0")
    text = f"{sign}{digits[: len(digits) - point]}.{digits[len(digits) - point :]}"
    return (text if exponent is None else f"{text}e{exponent:+d}").encode()


@needs_native
@SETTINGS
@given(
    st.lists(
        st.builds(
            _decimal,
            st.one_of(
                st.integers(0, 2**53 + 16),
                st.integers(2**53 - 64, 2**53 + 64),  # the fast path's edge
                st.integers(0, 10**25),
            ),
            st.integers(0, 30),
            st.one_of(st.none(), st.integers(-40, 40), st.integers(-400, 400)),
            st.sampled_from(["", "-", "+"]),
        ),
        min_size=1,
        max_size=20,
    )
)
@example([b"9007199254740993", b"9007199254740992.0", b"900719925474099.3e1", b"1e22", b"1e23"])
@example([b"123456789012345.6e-22", b"1.0000000000000000000001", b"-0.0e-5", b"0.000e400"])
def test_decimal_values_are_the_bits_float_gives(values: list[bytes]) -> None:
    """Decimals around the C pass's exact fast path (a mantissa up to 2^53 and a power of ten
    up to 1e22, one IEEE operation) and past it (strtod) read as ``float()`` reads them, bit
    for bit; values Go refuses (out of range) are refused as the Python pass refuses them."""
    from collector import _native

    body = b"".join(b"k%d %s\n" % (i, v) for i, v in enumerate(values))
    keys = [b"k%d" % i for i in range(len(values))]
    got = _native.steady_values(body, len(values) + 1, b"\x01" * len(values), (b"",), keys)
    want = [float(v) for v in values]
    if not all(map(math.isfinite, want)):
        assert got is None
        return
    assert got is not None
    assert list(map(float_bits, got)) == list(map(float_bits, want))


def _steady_args() -> tuple[bytes, int, bytes, tuple[bytes, ...], list[bytes]]:
    parser = IncrementalParser(native=False)
    parser.parse(b"# TYPE a gauge\na 1\nb 2\n", openmetrics=False)
    return b"", parser._nlines, parser._mask, parser._fixed, parser._keys


@needs_native
def test_broken_layouts_raise_and_wrong_types_are_refused() -> None:
    """The C function checks its layout as it walks: a broken one raises, never reads past."""
    from collector import _native

    _, nlines, mask, fixed, keys = _steady_args()
    body = b"# TYPE a gauge\na 1\nb 2\n"
    assert _native.steady_values(body, nlines, mask, fixed, keys) == [1.0, 2.0]
    for args, error in [
        ((body, nlines, mask, fixed, keys[:1]), "more sample lines than keys"),
        ((body, nlines, mask, fixed, [*keys, b"c"]), "does not match"),
        ((body, nlines, mask, (), keys), "more fixed lines"),
        ((body, nlines, mask, (*fixed, b""), keys), "does not match"),
        ((body, 0, mask, fixed, keys), "nlines"),
        ((body, 1, mask, fixed, keys), "nlines"),
        ((body, nlines, mask, fixed, [b"a", 1]), "not bytes"),
        ((body, nlines, mask, (1, b""), keys), "not bytes"),
    ]:
        with pytest.raises(ValueError, match=error):
            _native.steady_values(*args)  # type: ignore[arg-type]
    # An empty key is refused like removeprefix refuses it (it returns the line itself).
    assert _native.steady_values(b" 1", 1, b"\x01", (), [b""]) is None
    with pytest.raises(TypeError):
        _native.steady_values(bytearray(body), nlines, mask, fixed, keys)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        _native.steady_values(body, nlines, mask, fixed)  # type: ignore[call-arg]
    with pytest.raises(OverflowError):
        _native.steady_values(body, 2**64, mask, fixed, keys)


@needs_native
@settings(max_examples=500, deadline=None)
@given(body=st.binary(max_size=40), nlines=st.integers(1, 6), mask=st.binary(max_size=6))
def test_any_body_and_layout_is_safe(body: bytes, nlines: int, mask: bytes) -> None:
    """Arbitrary bytes against arbitrary layouts: a list, None or ValueError, nothing else."""
    from collector import _native

    samples = sum(1 for i, b in enumerate(mask) if b and i < nlines)
    fixed = (b"", b"#", b"a 1", b"\x00", b"", b"")[: nlines - samples if nlines >= samples else 0]
    keys = [b"a", b"b", b'a{x="\x00"}', b"c", b"d", b"e"][:samples]
    try:
        values = _native.steady_values(body, nlines, mask, fixed, keys)
    except ValueError:
        return
    assert values is None or len(values) == len(keys)


@needs_native
def test_no_references_or_memory_leak() -> None:
    """Accepted, refused and broken calls leave refcounts and allocated blocks as they were."""
    from collector import _native

    parser = IncrementalParser(native=False)
    parser.parse(NODE, openmetrics=False)
    layout = (parser._nlines, parser._mask, parser._fixed, parser._keys)
    bodies = [
        edit(NODE, ("value", 1, b"NaN")),  # accepted
        edit(NODE, ("value", 400, b"1e999")),  # refused late, after most floats were made
        edit(NODE, ("stamp", 2, b"5")),  # refused (timestamp)
        NODE + b"\n",  # refused (line count)
    ]

    def calls() -> None:
        for body in bodies:
            _native.steady_values(body, *layout)
        try:
            _native.steady_values(bodies[0], layout[0], layout[1], layout[2], layout[3][:-1])
        except ValueError:
            pass

    calls()
    counts = [sys.getrefcount(x) for x in (*bodies, *layout, *parser._keys[:50])]
    blocks = sys.getallocatedblocks()
    for _ in range(300):
        calls()
    assert [sys.getrefcount(x) for x in (*bodies, *layout, *parser._keys[:50])] == counts
    assert sys.getallocatedblocks() - blocks < 100


@pytest.mark.skipif(
    os.environ.get("COLLECTOR_NATIVE") == "0", reason="COLLECTOR_NATIVE=0: pure Python asked for"
)
def test_extension_is_built() -> None:
    """Where the extension is not switched off (CI's first run), it is built and in use."""
    import collector._native

    assert native.ACTIVE, native.REASON
    assert native.steady_values is collector._native.steady_values
    assert native.describe() == "on (collector._native)"


def test_version_says_whether_native_is_on() -> None:
    """``collector --version`` names the pass in use and why (both CI runs check their own)."""
    from collector.cli import version_text

    line = f"  native extension: {native.describe()}"
    assert line in version_text().splitlines()
    assert native.describe().startswith("on (" if native.ACTIVE else "off (")
