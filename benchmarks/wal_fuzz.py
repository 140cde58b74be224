"""Write-ahead log recovery fuzz: mutated segments through `collector.remote.walformat.scan`.

Each case takes a small segment of 1-8 records (random bodies of 0-300 bytes, some all zeros,
seqs with small gaps, some near the 2**32 boundary the resync search cares about) and applies
one mutation: a flipped byte, a truncation, an insertion of 1-16 bytes (random or zeros), or a
deletion of 1-16 bytes. The scanner must then hold these invariants (`check`):

- it never raises;
- every record it recovers is byte-identical to the original record with the same seq;
- every record whose bytes the mutation did not touch is recovered (so a damaged record costs
  that record only, wherever the damage is);
- a flipped byte inside a record is reported as damage (no silent loss), and when the flip is
  outside the length, seq and count fields the damage names that record's (seq, count);
- a segment whose 8-byte header was touched may be refused, one whose header was not must not.

Cases are generated from a seeded `random.Random`, so a violation is reproducible from its case
number. Prints cases/s and the first violations; exits 1 on any violation. Run:
``python -m benchmarks.wal_fuzz --cases 100000 [--seed N]``.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass

from collector.remote.walformat import (
    FRAME_OVERHEAD,
    SEGMENT_HEADER,
    Record,
    decode_frame,
    encode_frame,
    has_segment_header,
    scan,
)

__all__ = ["Mutation", "Original", "check", "main", "make_segment", "mutate"]

_FIRST_SEQS = (0, 1, 1000, (1 << 32) - 3, (1 << 40) + 7)
_LENGTH = range(4)  # field offsets inside a frame, for the damage-naming invariant
_SEQ = range(FRAME_OVERHEAD, FRAME_OVERHEAD + 8)
_COUNT = range(FRAME_OVERHEAD + 8 + 8 + 2, FRAME_OVERHEAD + 8 + 8 + 2 + 4)


@dataclass(slots=True, frozen=True, kw_only=True)
class Original:
    """An intact segment and where each record's frame sits in it."""

    data: bytes
    first_seq: int
    records: dict[int, Record]
    frames: dict[int, bytes]
    spans: list[tuple[int, int, int]]
    """(seq, start, end) of each frame."""


@dataclass(slots=True, frozen=True, kw_only=True)
class Mutation:
    """Mutated bytes and the original byte range the mutation touched."""

    kind: str
    data: bytes
    start: int
    end: int
    """``[start, end)`` for flip and delete; ``start == end`` is the point of an insertion;
    for a truncation ``start`` is the cut and ``end`` the original length."""


def make_segment(rng: random.Random) -> Original:
    """A segment of 1-8 records with random metadata and bodies."""
    seq = rng.choice(_FIRST_SEQS)
    first = seq
    pieces = [SEGMENT_HEADER]
    offset = len(SEGMENT_HEADER)
    records: dict[int, Record] = {}
    frames: dict[int, bytes] = {}
    spans: list[tuple[int, int, int]] = []
    for _ in range(rng.randint(1, 8)):
        size = rng.randint(0, 300)
        body = bytes(size) if rng.random() < 0.15 else rng.randbytes(size)
        record = Record(
            seq,
            rng.getrandbits(16),
            rng.getrandbits(16),
            rng.randint(1, 3000),
            rng.randint(-(1 << 40), 1 << 42),
            body,
        )
        frame = encode_frame(record)
        records[seq] = record
        frames[seq] = frame
        spans.append((seq, offset, offset + len(frame)))
        pieces.append(frame)
        offset += len(frame)
        seq += rng.choice((1, 1, 1, 2, 3))
    return Original(
        data=b"".join(pieces), first_seq=first, records=records, frames=frames, spans=spans
    )


def mutate(rng: random.Random, original: Original) -> Mutation:
    """One random flip, truncation, insertion or deletion."""
    data = original.data
    n = len(data)
    kind = rng.choice(("flip", "truncate", "insert", "delete"))
    if kind == "flip":
        at = rng.randrange(n)
        flipped = data[at] ^ rng.randint(1, 255)
        return Mutation(
            kind=kind, data=data[:at] + bytes((flipped,)) + data[at + 1 :], start=at, end=at + 1
        )
    if kind == "truncate":
        cut = rng.randrange(n)
        return Mutation(kind=kind, data=data[:cut], start=cut, end=n)
    size = rng.randint(1, 16)
    if kind == "insert":
        at = rng.randint(0, n)
        extra = bytes(size) if rng.random() < 0.3 else rng.randbytes(size)
        return Mutation(kind=kind, data=data[:at] + extra + data[at:], start=at, end=at)
    at = rng.randrange(n)
    end = min(n, at + size)
    return Mutation(kind="delete", data=data[:at] + data[end:], start=at, end=end)


def _touched(mutation: Mutation, start: int, end: int) -> bool:
    if mutation.kind == "insert":
        return start < mutation.start < end
    if mutation.kind == "truncate":
        return end > mutation.start
    return start < mutation.end and mutation.start < end


def _equivalents(original: Original, mutation: Mutation) -> list[Mutation]:
    """Every insertion or deletion that yields the same bytes as ``mutation``.

    Deleting one byte of a run of equal bytes is deleting any of them, and likewise for
    insertions; the scanner cannot know which one happened, so the records it may lose are those
    touched by *some* equivalent mutation. Position ``p`` is equivalent when the bytes before it
    are a common prefix and the bytes after the inserted/deleted span a common suffix.
    """
    data, mutated = original.data, mutation.data
    prefix = 0
    limit = min(len(data), len(mutated))
    while prefix < limit and data[prefix] == mutated[prefix]:
        prefix += 1
    suffix = 0
    while suffix < limit and data[-1 - suffix] == mutated[-1 - suffix]:
        suffix += 1
    size = abs(len(data) - len(mutated))
    lowest = len(data) - suffix - (size if mutation.kind == "delete" else 0)
    found = []
    for at in range(max(0, lowest), prefix + 1):
        end = at + size if mutation.kind == "delete" else at
        found.append(Mutation(kind=mutation.kind, data=mutated, start=at, end=end))
    return found


def check(original: Original, mutation: Mutation) -> str | None:
    """The first broken invariant, or None."""
    data = mutation.data
    try:
        if not has_segment_header(data):
            # An insertion at offset 0 displaces the header too.
            if _touched(mutation, -1, len(SEGMENT_HEADER)):
                return None  # refused whole: quarantined by the log
            return "segment header refused though the mutation did not touch it"
        result = scan(data, prev_seq=original.first_seq - 1)
        recovered: set[int] = set()
        for info, offset in zip(result.infos, result.offsets, strict=True):
            record = decode_frame(data, offset)
            if record is None:
                return f"scan listed a frame at {offset} that does not decode"
            if original.frames.get(record.seq) != encode_frame(record):
                return f"recovered record {record.seq} differs from the original"
            if (info.seq, info.count, info.max_ts) != (record.seq, record.count, record.max_ts):
                return f"record {record.seq}: listed metadata differs from the frame"
            recovered.add(record.seq)
        missing = [(seq, s, e) for seq, s, e in original.spans if seq not in recovered]
        candidates = [mutation]
        if mutation.kind in ("insert", "delete") and missing:
            candidates += _equivalents(original, mutation)
        if not any(all(_touched(m, s, e) for _, s, e in missing) for m in candidates):
            seq, start, end = next(r for r in missing if not _touched(mutation, r[1], r[2]))
            return f"untouched record {seq} at {start}-{end} was not recovered"
        if mutation.kind == "flip":
            hit = [
                (seq, start) for seq, start, end in original.spans if start <= mutation.start < end
            ]
            if hit:
                seq, start = hit[0]
                if not result.damage:
                    return f"flip in record {seq} at {mutation.start} not reported as damage"
                at = mutation.start - start
                if at not in _LENGTH and at not in _SEQ and at not in _COUNT:
                    expected = [(seq, original.records[seq].count)]
                    named = [r for d in result.damage for r in d.records]
                    if named != expected:
                        return f"flip in record {seq} at +{at}: damage names {named}"
    except Exception as exc:  # the invariant under test: nothing escapes the scanner
        return f"raised {type(exc).__name__}: {exc}"
    return None


def run(cases: int, *, seed: int) -> tuple[float, Counter[str], list[str]]:
    """Run ``cases`` cases; returns (cases/s, cases per kind, violations)."""
    rng = random.Random(seed)
    pool = [make_segment(rng) for _ in range(512)]
    kinds: Counter[str] = Counter()
    violations: list[str] = []
    start = time.perf_counter()
    for case in range(cases):
        original = pool[case % len(pool)]
        mutation = mutate(rng, original)
        kinds[mutation.kind] += 1
        problem = check(original, mutation)
        if problem is not None:
            violations.append(
                f"case {case} ({mutation.kind} {mutation.start}-{mutation.end}): {problem}"
            )
    elapsed = time.perf_counter() - start
    return cases / elapsed, kinds, violations


def main() -> None:
    """Run the fuzz cases and print the rate, exiting 1 on a violation."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=8)
    args = parser.parse_args()
    rate, kinds, violations = run(args.cases, seed=args.seed)
    mix = ", ".join(f"{kind} {n}" for kind, n in sorted(kinds.items()))
    print(f"wal scan fuzz: {sum(kinds.values()):,} cases ({mix}), seed {args.seed}")
    print(f"rate: {rate:12,.0f} cases/s")
    print(f"violations: {len(violations)}")
    for line in violations[:20]:
        print("  " + line)
    if violations:
        sys.exit(1)


if __name__ == "__main__":
    main()
