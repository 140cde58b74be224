# Types of the C extension built from _native.c (see collector/native.py for when it is used).

def steady_values(
    body: bytes, nlines: int, mask: bytes, fixed: tuple[bytes, ...], keys: list[bytes], /
) -> list[float] | None: ...
