"""Fuzz targets of the exposition parsers (`collector.model.textparse`).

- ``text`` / ``openmetrics``: `parse` of one body, then everything a scrape reads from it
  (columns, samples, metadata, exemplars, ``labels`` of every distinct key), also from the
  ``partial`` exposition of an error. Only `ExpositionError` may escape `parse` and `labels`
  (the package docstring's contract). When the regex fast path takes a body, the exact
  token-by-token path must return the same samples (they are two parsers of one grammar).
- ``stream``: the body fed to `StreamParser` in random chunks, with tiny segments so that
  every body spans many; the result must be `parse`'s over the whole body (samples by float
  bits, error message and line, metadata, labels of each key where it first appears), as
  the `stream` module docstring promises.
- ``incremental``: a sequence of bodies (the steady-state path needs "same lines, new
  values") through one `IncrementalParser`; every result must be `parse`'s.

Every value must be a float whose NaNs are all `NORMAL_NAN` by bits, every timestamp an int
or None. Seeds: the exposition fixtures, node_exporter's body cut in windows, and the parser
test tables (``tests/fixtures/fuzz/seeds/{text,openmetrics}``).

Prometheus counterpart: ``model/textparse``'s ``FuzzParseMetricText`` / ``FuzzParseOpenMetric``
(``promql/fuzz.go``), which only check for panics.
"""

from __future__ import annotations

import random
import re
import zlib
from collections.abc import Callable
from pathlib import Path

from benchmarks.fuzzing.harness import Target, Violation, untimed
from benchmarks.fuzzing.mutate import INTERESTING_NUMBERS, Mutator
from collector.model.textparse import Exposition, ExpositionError, IncrementalParser, parse
from collector.model.textparse.fast import NotFast, fast_om, fast_text
from collector.model.textparse.slow import SlowParser
from collector.model.textparse.stream import StreamParser
from collector.model.value import NORMAL_NAN_BITS, float_bits

__all__ = ["SEPARATOR", "targets"]

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"

SEPARATOR = b"\n\x00-- next body --\x00\n"
"""Between the bodies of one ``incremental`` input (a NUL line cannot be in a valid body)."""

TOKENS = [
    b"{",
    b"}",
    b'="',
    b'"',
    b'\\"',
    b"\\\\",
    b"\\n",
    b"\\",
    b",",
    b" ",
    b"\t",
    b"\n",
    b"\r\n",
    b"# HELP ",
    b"# TYPE ",
    b"# UNIT ",
    b"# EOF\n",
    b"# EOF",
    b" # {",
    b"} ",
    b"#",
    b"counter",
    b"gauge",
    b"histogram",
    b"gaugehistogram",
    b"summary",
    b"untyped",
    b"unknown",
    b"info",
    b"stateset",
    b'le="',
    b'quantile="',
    b'{le="+Inf"}',
    b'{quantile="0.5"}',
    b"_bucket",
    b"_total",
    b"_created",
    b"_count",
    b"_sum",
    b'{__name__="x"}',
    b'{"quoted.name"}',
    b'{"a.b"="c"}',
    b'a="1",a="2"',
    b"\x00",
]

Outcome = tuple[object, ...]


def _seed_files(*folders: Path, suffixes: tuple[str, ...]) -> list[bytes]:
    return [
        path.read_bytes()
        for folder in folders
        for path in sorted(folder.iterdir())
        if path.suffix in suffixes
    ]


def _windows(body: bytes, lines: int) -> list[bytes]:
    """``body`` cut into pieces of ``lines`` lines (small seeds keep the fuzzer fast)."""
    split = body.split(b"\n")
    return [b"\n".join(split[i : i + lines]) + b"\n" for i in range(0, len(split), lines)]


def text_seeds() -> list[bytes]:
    """Text-format seeds: fixtures, node_exporter in 40-line windows, the test table."""
    seeds = _seed_files(FIXTURES / "exposition", suffixes=(".prom",))
    seeds += _windows((FIXTURES / "node_exporter.prom").read_bytes(), 40)
    seeds += _seed_files(FIXTURES / "fuzz" / "seeds" / "text", suffixes=(".txt",))
    return seeds


def om_seeds() -> list[bytes]:
    """OpenMetrics seeds: the fixture and the test table."""
    seeds = _seed_files(FIXTURES / "exposition", suffixes=(".om",))
    return seeds + _seed_files(FIXTURES / "fuzz" / "seeds" / "openmetrics", suffixes=(".txt",))


# ----------------------------------------------------------------------------- shared checks
def _check_values(exp: Exposition) -> None:
    keys, values, stamps = exp.columns()
    if len(values) != len(keys) or (stamps is not None and len(stamps) != len(keys)):
        raise Violation("columns: keys, values and timestamps differ in length")
    for value in values:
        if value != value and float_bits(value) != NORMAL_NAN_BITS:
            raise Violation(f"nan bits: a NaN is {float_bits(value):#x}, not NORMAL_NAN")
    for ts in stamps or ():
        if ts is not None and type(ts) is not int:
            raise Violation(f"timestamp type: {type(ts).__name__}")


def _labels(exp: Exposition, key: bytes) -> object:
    """``labels(key)``, or the (message, line) of its `ExpositionError`."""
    try:
        pairs = exp.labels(key)
    except ExpositionError as exc:
        return ("error", exc.message, exc.line)
    if not all(type(n) is str and type(v) is str for n, v in pairs):
        raise Violation(f"labels types: {pairs!r:.200}")
    return pairs


def _first_labels(exp: Exposition, seen: dict[bytes, object]) -> None:
    """Labels of each key not in ``seen`` yet (what a scrape cache asks on a miss)."""
    for key in exp.columns()[0]:
        if key not in seen:
            seen[key] = _labels(exp, key)


def _touch(exp: Exposition) -> dict[bytes, object]:
    """Everything a scrape reads from an exposition; returns the labels by first-seen key."""
    _check_values(exp)
    exp.samples  # noqa: B018  # building the tuples is part of what is fuzzed
    for index, exemplar in exp.exemplars.items():
        if not 0 <= index < len(exp.samples) or not isinstance(exemplar.labels, tuple):
            raise Violation(f"exemplar index {index} of {len(exp.samples)} samples")
    exp.metadata  # noqa: B018  # built lazily: this is where it is built
    seen: dict[bytes, object] = {}
    _first_labels(exp, seen)
    return seen


def _folded(parts: list[Exposition]) -> list[tuple[bytes, int, int | None]]:
    return [(k, float_bits(v), t) for part in parts for k, v, t in part.samples]


def _whole(body: bytes, *, openmetrics: bool) -> Outcome:
    """`parse` over the whole body: samples, error, first labels, metadata."""
    try:
        exp = parse(body, openmetrics=openmetrics)
    except ExpositionError as exc:
        if type(exc.line) is not int or exc.line < 0:
            raise Violation(f"error line: {exc.line!r}") from None
        labels = _touch(exc.partial)
        error = (exc.message, exc.line, exc.partial.columns()[0])
        return _folded([exc.partial]), error, labels, None
    return _folded([exp]), None, _touch(exp), exp.metadata


def _check_parse(data: bytes, *, openmetrics: bool) -> None:
    _whole(data, openmetrics=openmetrics)
    with untimed():  # the cross-check is ours, not the parser's cost
        try:
            fast = fast_om(data) if openmetrics else fast_text(data)
        except NotFast:
            return
        try:
            slow = SlowParser(data, openmetrics=openmetrics).run()
        except ExpositionError as exc:
            raise Violation(f"fast/slow: fast path parsed, slow path refused: {exc}") from None
        if _folded([fast]) != _folded([slow]):
            raise Violation("fast/slow: the two paths return different samples")


def check_text(data: bytes) -> None:
    """`parse(data, openmetrics=False)` and all reads; fast path == slow path."""
    _check_parse(data, openmetrics=False)


def check_openmetrics(data: bytes) -> None:
    """`parse(data, openmetrics=True)` and all reads; fast path == slow path."""
    _check_parse(data, openmetrics=True)


# ----------------------------------------------------------------------------- stream
def _streamed(
    data: bytes, rng: random.Random, *, openmetrics: bool, segment_size: int, max_entry: int
) -> Outcome:
    parser = StreamParser(openmetrics=openmetrics, segment_size=segment_size, max_entry=max_entry)
    parts: list[Exposition] = []
    seen: dict[bytes, object] = {}
    pos = 0
    try:
        while pos < len(data):
            step = rng.randint(1, 2 * segment_size + 1)
            exp = parser.feed(data[pos : pos + step])
            pos += step
            if exp is not None:
                parts.append(exp)
                _check_values(exp)
                _first_labels(exp, seen)
        exp = parser.close()
        parts.append(exp)
        _check_values(exp)
        _first_labels(exp, seen)
    except ExpositionError as exc:
        parts.append(exc.partial)
        _first_labels(exc.partial, seen)
        keys = [key for part in parts for key in part.columns()[0]]
        return _folded(parts), (exc.message, exc.line, keys), seen, None
    return _folded(parts), None, seen, parser.metadata


_BOTH_FORMATS_SIZE = 64 * 1024


def _formats(data: bytes) -> tuple[bool, ...]:
    """``openmetrics`` values to check an input with: both up to 64 KiB, one (by CRC) above.

    The time limit is per parse: a 1 MiB body parsed as both formats in one check would sum
    two parses that each take half a second (fuzzing: 0.49 s each, 1.14 s together).
    """
    if len(data) <= _BOTH_FORMATS_SIZE:
        return (False, True)
    return (bool(zlib.crc32(data) & 1),)


def check_stream(data: bytes) -> None:
    """`StreamParser` over random chunks == `parse` over the whole body (`_formats`)."""
    rng = random.Random(zlib.crc32(data))
    for openmetrics in _formats(data):
        # At most ~256 segments a body: the agent cuts 512 KiB segments, so a 1 MiB body of
        # 7-byte segments would time per-segment overhead the agent never pays (fuzzing: 2 s),
        # and keeping that many parts here would outgrow the memory bound.
        segment_size = max(rng.choice((1, 7, 64, 512, 4096)), len(data) >> 8)
        # The agent's ratio is 8 (4 MiB / 512 KiB): an entry carried across cuts is parsed
        # again at each one, so a larger ratio would measure a setup that never runs.
        max_entry = max(64, segment_size * rng.choice((1, 8)))
        with untimed():  # the reference
            whole = _whole(data, openmetrics=openmetrics)
        streamed = _streamed(
            data, rng, openmetrics=openmetrics, segment_size=segment_size, max_entry=max_entry
        )
        if streamed != whole and not _long_entry(data, streamed, whole, max_entry):
            raise Violation(
                f"stream: differs from parse (openmetrics={openmetrics}, segment_size="
                f"{segment_size}, max_entry={max_entry}): {_first_difference(streamed, whole)}"
            )


def _long_entry(data: bytes, streamed: Outcome, whole: Outcome, max_entry: int) -> bool:
    """The documented difference: an entry whose quoted value is open past ``max_entry``
    bytes is refused on its line, saying so, where `parse` of the whole body fails on that
    line too (an unterminated quote) or later (a long value with raw newlines). What was
    returned before it are `parse`'s first samples.
    """
    got, want = streamed[1], whole[1]
    if not isinstance(got, tuple) or not str(got[0]).startswith(f"entry longer than {max_entry}"):
        return False
    if isinstance(want, tuple) and 0 < want[1] < got[1]:
        return False
    samples, reference = streamed[0], whole[0]
    if not isinstance(samples, list) or not isinstance(reference, list):
        return False
    return samples == reference[: len(samples)] and len(data) > max_entry


def _first_difference(got: Outcome, want: Outcome) -> str:
    names = ("samples", "error", "labels", "metadata")
    for name, a, b in zip(names, got, want, strict=True):
        if a != b:
            return f"{name}: {a!r:.300} != {b!r:.300}"
    return "?"


# ----------------------------------------------------------------------------- incremental
def check_incremental(data: bytes) -> None:
    """Each body of the sequence through one `IncrementalParser` == `parse` (`_formats`)."""
    bodies = data.split(SEPARATOR)
    for openmetrics in _formats(data):
        parser = IncrementalParser()
        for index, body in enumerate(bodies):
            with untimed():  # the reference
                want = _whole(body, openmetrics=openmetrics)
            try:
                exp = parser.parse(body, openmetrics=openmetrics)
            except ExpositionError as exc:
                error = (exc.message, exc.line, exc.partial.columns()[0])
                got: Outcome = (_folded([exc.partial]), error, _touch(exc.partial), None)
            else:
                got = (_folded([exp]), None, _touch(exp), exp.metadata)
            if got != want:
                raise Violation(
                    f"incremental: body {index} differs from parse (openmetrics={openmetrics}):"
                    f" {_first_difference(got, want)}"
                )


_VALUE = re.compile(rb"^([^#\s][^\n]*?[} ]|[a-zA-Z_:][a-zA-Z0-9_:]* )(\S+)", re.M)


def _new_values(rng: random.Random, body: bytes) -> bytes:
    """The same body with new values in some sample lines (the steady-state path's input)."""

    def value(match: re.Match[bytes]) -> bytes:
        if rng.random() < 0.5:
            return match.group()
        choice = rng.random()
        if choice < 0.6:
            new = repr(rng.uniform(-1e6, 1e6)).encode()
        elif choice < 0.8:
            new = rng.choice(INTERESTING_NUMBERS)
        else:
            new = match.group(2) + b" " + str(rng.randrange(1 << 45)).encode()
        return match.group(1) + new

    return _VALUE.sub(value, body)


def _incremental_mutate(mutator: Mutator) -> Callable[[random.Random, bytes], bytes]:
    """Edits of a body sequence: new values (the steady state), an edited body, one more."""

    def mutate(rng: random.Random, data: bytes) -> bytes:
        bodies = data.split(SEPARATOR)
        action = rng.random()
        if action < 0.5 or len(bodies) > 6:
            bodies = [bodies[0]] + [_new_values(rng, bodies[0]) for _ in range(rng.randint(1, 3))]
        elif action < 0.8:
            k = rng.randrange(len(bodies))
            bodies[k] = mutator.mutate(rng, bodies[k])
        else:
            bodies.append(mutator.mutate(rng, bodies[-1]))
        return SEPARATOR.join(bodies)

    return mutate


def targets(*, max_size: int) -> list[Target]:
    """The four parser targets (inputs up to ``max_size`` bytes)."""
    text, om = text_seeds(), om_seeds()
    nest = [(b"{", b"}"), (b'"', b'"')]
    text_mutator = Mutator(text + om[:5], tokens=TOKENS, nest=nest, max_size=max_size)
    om_mutator = Mutator(om + text[:5], tokens=TOKENS, nest=nest, max_size=max_size)
    both = Mutator(text + om, tokens=TOKENS, nest=nest, max_size=max_size)
    # Memory: a line as short as "a 1\n" becomes a key, a float, list slots and a regex row
    # (~400 bytes); labels() of every distinct key adds its pairs.
    return [
        Target(
            name="text",
            summary="parse(openmetrics=False) + labels/metadata; ExpositionError only",
            check=check_text,
            mutate=text_mutator.mutate,
            seeds=text,
            memory_factor=256,
        ),
        Target(
            name="openmetrics",
            summary="parse(openmetrics=True) + labels/exemplars; ExpositionError only",
            check=check_openmetrics,
            mutate=om_mutator.mutate,
            seeds=om,
            memory_factor=256,
        ),
        Target(
            name="stream",
            summary="StreamParser in random chunks == parse, both formats",
            check=check_stream,
            mutate=both.mutate,
            seeds=text + om,
            memory_factor=256,
        ),
        Target(
            name="incremental",
            summary="IncrementalParser over body sequences == parse, both formats",
            check=check_incremental,
            mutate=_incremental_mutate(both),
            seeds=[
                SEPARATOR.join([s, _new_values(random.Random(i), s)]) for i, s in enumerate(text)
            ]
            + om,
            memory_factor=256,
        ),
    ]
