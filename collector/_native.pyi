# Types of the C extension built from _native.c (see collector/native.py for when it is used).

from typing import Any

def steady_values(
    body: bytes, nlines: int, mask: bytes, fixed: tuple[bytes, ...], keys: list[bytes], /
) -> list[float] | None: ...
def encode_run(
    samples: list[tuple[int, float, int]],
    start: int,
    ts: int,
    values: list[bytes | None],
    zeros: list[bytes | None],
    runs: list[list[bytes]],
    /,
) -> tuple[int, int]: ...
def encode_labelled(
    samples: list[tuple[int, float, int]],
    start: int,
    ts: int,
    label_sets: list[Any],
    hist: dict[int, bytes],
    runs: list[list[bytes]],
    /,
) -> int: ...
def bulk_append(
    refs: list[int], values: list[float], now: int, last: list[int], batch: list[Any], /
) -> bool: ...
