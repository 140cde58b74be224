"""The structured mutator: seeded random edits of real inputs, bytes-level and tree-level.

Every target draws its inputs from real seed corpora (fixtures, example configs, recorded
watch streams) and edits them with `Mutator.mutate`, which stacks one to several of:

- byte edits: a flipped bit, an "interesting" byte (NUL, 0x7f, 0x80, 0xff, quotes, braces,
  backslash, newline), random bytes inserted, a range deleted, the input truncated;
- splices of valid pieces: a line or a range of another seed, a token of the target's
  dictionary (``# TYPE``, ``le="``, ``"metadata"``...), the head of this input with the tail
  of another (crossover);
- line edits: a line duplicated, deleted, or swapped with another;
- odd values: odd unicode (BOM, NBSP, U+2028, RTL override, Arabic-Indic and fullwidth
  digits, a dotted capital I whose lower case is longer, lone surrogates, overlong and
  truncated UTF-8), odd numbers in place of a number (NaN spellings, 1e309, hex floats,
  ``1_0``, int64 edges, 5,000 digits);
- huge repetitions: a slice repeated up to ``max_size`` bytes, and nesting (``[[[[...]]]]``,
  a YAML alias ladder) that costs little input and much work when a parser expands it.

Targets whose input is a tree (JSON, YAML) also get tree edits (`benchmarks.fuzzing.trees`).
Everything draws from the `random.Random` passed in, so a seeded run is reproducible input by
input.

This engine has no coverage feedback (``sys.monitoring`` is 3.12-only, ``sys.settrace`` costs
10x); `benchmarks.fuzzing.coverage` runs the same edits as libFuzzer's custom mutator under
atheris, which adds it.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence

__all__ = [
    "INTERESTING_NUMBERS",
    "ODD_UNICODE",
    "Mutator",
    "alias_ladder",
    "deep_nesting",
]

Op = Callable[[random.Random, bytes], bytes]

_INTERESTING_BYTES = b'\x00\x01\x7f\x80\xff\n\r\t "\\{}[],=#:.-+eE'

ODD_UNICODE: tuple[bytes, ...] = (
    "\u00a0".encode(),  # NBSP: whitespace to str.split/strip, not to the grammars
    "\ufeff".encode(),  # BOM
    "\u2028".encode(),  # LINE SEPARATOR: a newline to str.splitlines only
    "\u202e".encode(),  # RTL override
    "\u0130".encode(),  # İ: its lower case is two code points
    "\u01c5".encode(),  # ǅ: title case
    "\uff11\uff12".encode(),  # fullwidth digits: float() takes them, [0-9] does not
    "\u0661\u0662".encode(),  # Arabic-Indic digits: same
    "\U0001f600".encode(),  # 4-byte UTF-8
    "e\u0301".encode(),  # combining accent
    "\u0085".encode(),  # NEL
    b"\xed\xa0\x80",  # a UTF-16 surrogate in UTF-8: invalid
    b"\xc0\x80",  # overlong NUL
    b"\xf4\x90\x80\x80",  # above U+10FFFF
    b"\x80",  # lone continuation byte
    b"\xe2\x82",  # truncated sequence
    b"\xff\xfe",  # never valid
)

INTERESTING_NUMBERS: tuple[bytes, ...] = (
    b"0",
    b"-0",
    b"1",
    b"-1",
    b"NaN",
    b"nan",
    b"-NaN",
    b"+Inf",
    b"-inf",
    b"Infinity",
    b"infinity",
    b"1e308",
    b"1e309",
    b"-1e309",
    b"4.9e-324",
    b"1e-400",
    b"0x1p3",
    b"0x10",
    b"1_0",
    b"1.",
    b".5",
    b"+.e1",
    b"1e",
    b"--1",
    b"2147483648",
    b"4294967296",
    b"9223372036854775807",
    b"9223372036854775808",
    b"-9223372036854775809",
    b"18446744073709551616",
    b"1" * 40,
    b"9" * 400,
    b"7" * 5000,  # past CPython's 4,300-digit int() limit
    "\u0661".encode(),
)

_NUMBER = re.compile(rb"[-+]?[0-9][0-9.eE+_]*|[-+]?(?:NaN|Inf)", re.I)


def _span(rng: random.Random, size: int) -> tuple[int, int]:
    """A random ``[start, end)`` inside ``size`` bytes, short ranges more likely."""
    if size == 0:
        return 0, 0
    start = rng.randrange(size)
    length = min(size - start, 1 + int(rng.expovariate(1 / 16)))
    return start, start + length


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")


class Mutator:
    """Structured edits of bytes; targets pass their seeds, dictionary and extra edits.

    ``tokens`` are pieces of the target's grammar; ``nest`` are (open, close) pairs for the
    nesting edit; ``extra`` are target-specific edits (tree edits, the YAML alias ladder)
    drawn with weight ``extra_weight`` against the byte edits' 1 each.
    """

    def __init__(
        self,
        seeds: Sequence[bytes],
        *,
        tokens: Sequence[bytes] = (),
        nest: Sequence[tuple[bytes, bytes]] = (),
        extra: Sequence[Op] = (),
        extra_weight: float = 4.0,
        max_size: int = 1 << 20,
    ) -> None:
        self.seeds = [seed for seed in seeds if seed] or [b"\n"]
        self.pieces = sorted({line for seed in self.seeds for line in _lines(seed) if line})
        self.tokens = list(tokens) or [b"\n"]
        self.nest = list(nest)
        self.max_size = max_size
        ops: list[Op] = [
            self.flip_bit,
            self.set_byte,
            self.insert_random,
            self.delete_range,
            self.truncate,
            self.duplicate_range,
            self.repeat,
            self.splice_piece,
            self.splice_range,
            self.crossover,
            self.token,
            self.token,
            self.unicode,
            self.number,
            self.number,
            self.dup_line,
            self.delete_line,
            self.swap_lines,
        ]
        if self.nest:
            ops.append(self.nesting)
        weights = [1.0] * len(ops) + [extra_weight] * len(extra)
        self._ops = [*ops, *extra]
        self._cum = _cumulative(weights)

    def mutate(self, rng: random.Random, data: bytes) -> bytes:
        """One to eight stacked edits of ``data`` (mostly one or two), at most ``max_size``."""
        count = 1 + min(7, int(rng.expovariate(0.9)))
        for _ in range(count):
            op = rng.choices(self._ops, cum_weights=self._cum)[0]
            data = op(rng, data)
            if len(data) > self.max_size:
                data = data[: self.max_size]
        return data

    # -- byte edits -------------------------------------------------------------------------
    def flip_bit(self, rng: random.Random, data: bytes) -> bytes:
        """Flip one bit."""
        if not data:
            return bytes([rng.randrange(256)])
        i = rng.randrange(len(data))
        return data[:i] + bytes([data[i] ^ (1 << rng.randrange(8))]) + data[i + 1 :]

    def set_byte(self, rng: random.Random, data: bytes) -> bytes:
        """Overwrite one byte with an interesting one."""
        byte = bytes([rng.choice(_INTERESTING_BYTES)])
        if not data:
            return byte
        i = rng.randrange(len(data))
        return data[:i] + byte + data[i + 1 :]

    def insert_random(self, rng: random.Random, data: bytes) -> bytes:
        """Insert 1-16 random (or interesting) bytes."""
        n = rng.randint(1, 16)
        if rng.random() < 0.5:
            blob = bytes(rng.randrange(256) for _ in range(n))
        else:
            blob = bytes(rng.choice(_INTERESTING_BYTES) for _ in range(n))
        i = rng.randint(0, len(data))
        return data[:i] + blob + data[i:]

    def delete_range(self, rng: random.Random, data: bytes) -> bytes:
        """Delete a short range."""
        start, end = _span(rng, len(data))
        return data[:start] + data[end:]

    def truncate(self, rng: random.Random, data: bytes) -> bytes:
        """Cut the input anywhere, often right before or after a newline."""
        if not data:
            return data
        cut = rng.randint(0, len(data))
        if rng.random() < 0.3:
            nl = data.find(b"\n", cut)
            cut = nl + rng.randint(0, 1) if nl >= 0 else cut
        return data[:cut]

    def duplicate_range(self, rng: random.Random, data: bytes) -> bytes:
        """Copy a range to another place."""
        start, end = _span(rng, len(data))
        i = rng.randint(0, len(data))
        return data[:i] + data[start:end] + data[i:]

    def repeat(self, rng: random.Random, data: bytes) -> bytes:
        """Repeat a slice (often a whole line) many times: up to ``max_size`` bytes."""
        if not data:
            return data
        if rng.random() < 0.5:
            start, end = _span(rng, len(data))
        else:
            lines = _lines(data)
            k = rng.randrange(len(lines))
            start = sum(len(line) + 1 for line in lines[:k])
            end = min(len(data), start + len(lines[k]) + 1)
        piece = data[start:end] or data[:1]
        room = max(1, (self.max_size - len(data)) // len(piece))
        # Mostly a few copies; one time in 32 up to max_size (huge inputs are slow to run).
        times = rng.randint(2, 32) if rng.random() < 31 / 32 else int(2 ** rng.uniform(5, 20))
        times = min(room, times)
        return data[:end] + piece * times + data[end:]

    def splice_piece(self, rng: random.Random, data: bytes) -> bytes:
        """Insert a whole line of some seed at a line boundary (or replace a line with it)."""
        piece = rng.choice(self.pieces) + b"\n"
        lines = _lines(data)
        k = rng.randint(0, len(lines))
        if rng.random() < 0.3 and k < len(lines):
            lines[k] = piece[:-1]
            return b"\n".join(lines)
        head = b"\n".join(lines[:k])
        return head + (b"\n" if head else b"") + piece + b"\n".join(lines[k:])

    def splice_range(self, rng: random.Random, data: bytes) -> bytes:
        """Insert a random range of another seed."""
        other = rng.choice(self.seeds)
        start, end = _span(rng, len(other))
        end = min(len(other), end + rng.randrange(64))
        i = rng.randint(0, len(data))
        return data[:i] + other[start:end] + data[i:]

    def crossover(self, rng: random.Random, data: bytes) -> bytes:
        """This input's head, another seed's tail."""
        other = rng.choice(self.seeds)
        return data[: rng.randint(0, len(data))] + other[rng.randint(0, len(other)) :]

    def token(self, rng: random.Random, data: bytes) -> bytes:
        """Insert a dictionary token, or replace a short range with one."""
        tok = rng.choice(self.tokens)
        start, end = _span(rng, len(data))
        if rng.random() < 0.5:
            end = start
        return data[:start] + tok + data[end:]

    def unicode(self, rng: random.Random, data: bytes) -> bytes:
        """Insert odd unicode or invalid UTF-8."""
        i = rng.randint(0, len(data))
        return data[:i] + rng.choice(ODD_UNICODE) + data[i:]

    def number(self, rng: random.Random, data: bytes) -> bytes:
        """Replace a number (or anything number-like) with an odd one."""
        new = rng.choice(INTERESTING_NUMBERS)
        match = _NUMBER.search(data, rng.randint(0, len(data))) or _NUMBER.search(data)
        if match is None:
            i = rng.randint(0, len(data))
            return data[:i] + new + data[i:]
        return data[: match.start()] + new + data[match.end() :]

    # -- line edits -------------------------------------------------------------------------
    def dup_line(self, rng: random.Random, data: bytes) -> bytes:
        """Duplicate one line in place."""
        lines = _lines(data)
        k = rng.randrange(len(lines))
        lines.insert(k, lines[k])
        return b"\n".join(lines)

    def delete_line(self, rng: random.Random, data: bytes) -> bytes:
        """Delete one line."""
        lines = _lines(data)
        del lines[rng.randrange(len(lines))]
        return b"\n".join(lines)

    def swap_lines(self, rng: random.Random, data: bytes) -> bytes:
        """Swap two lines."""
        lines = _lines(data)
        i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
        return b"\n".join(lines)

    # -- hostile structure ------------------------------------------------------------------
    def nesting(self, rng: random.Random, data: bytes) -> bytes:
        """Wrap a range in 10-5,000 levels of one of the target's bracket pairs."""
        opening, closing = rng.choice(self.nest)
        depth = int(10 ** rng.uniform(1, 3.7))
        start, end = _span(rng, len(data))
        return data[:start] + opening * depth + data[start:end] + closing * depth + data[end:]


def _cumulative(weights: Sequence[float]) -> list[float]:
    total = 0.0
    out = []
    for weight in weights:
        total += weight
        out.append(total)
    return out


def deep_nesting(depth: int, *, opening: bytes = b"[", closing: bytes = b"]") -> bytes:
    """``[[[...]]]`` ``depth`` levels deep."""
    return opening * depth + closing * depth


def alias_ladder(rng: random.Random, *, prefix: bytes = b"") -> bytes:
    """A YAML "billion laughs" ladder: a few hundred bytes whose expansion is exponential.

    Level 0 is a list of ``width`` scalars; level ``i`` lists level ``i - 1`` ``width`` times
    by alias. A loader that copies what an alias points at (rather than sharing it) does
    ``width ** depth`` work.
    """
    width = rng.randint(2, 10)
    depth = rng.randint(2, 9)
    lines = [prefix + b"l0: &l0 [" + b",".join([b"x"] * width) + b"]"]
    for i in range(1, depth):
        refs = b",".join([b"*l%d" % (i - 1)] * width)
        lines.append(prefix + b"l%d: &l%d [%s]" % (i, i, refs))
    return b"\n".join(lines) + b"\n"
