"""`StreamParser`: a body too large to hold, parsed in segments of whole lines as it arrives.

Place in the pipeline: `collector.scrape.stream` feeds it the chunks of a body above the
scraper's streaming threshold and hands each returned `Exposition` to the scrape cache before
reading on, so the body is never held whole. Bodies below the threshold never come here: they
go through `IncrementalParser` as before.

How it stays exact. Chunks are buffered until a segment's worth arrived; the buffer is cut at
its last newline and the whole lines before it are parsed by `parse` (`fast`, falling back to
`slow`), so each segment takes the same fast path a whole body would. What a segment's result
would otherwise lack is carried from the segments before it:

* line numbers count from the body's start (`ExpositionError.line`, duplicate-label errors);
* the TYPE in force where the segment starts still decides ``le``/``quantile``
  canonicalisation (`Exposition.labels`);
* `metadata` folds the HELP/TYPE/UNIT lines of every segment (last line of each kind wins);
* OpenMetrics: a segment that is not the body's end is parsed as if ``# EOF`` followed it,
  and a trailing ``# EOF`` line is held back until the body's end shows whether data follows.

The text format allows raw newlines inside quoted label values, so a cut may fall inside an
entry. That entry cannot parse (its closing quote is past the cut); when the error's entry
holds an odd number of unescaped quotes, it is carried into the next segment instead of being
reported, as long as it stays under ``max_entry`` bytes. So the result, error message, line
and partial samples are those of `parse` over the whole body, but for one bound: an entry
whose quoted value is still open after ``max_entry`` bytes is refused on its line with
"entry longer than N bytes with a newline inside a quoted value" and `parse`'s message for the
part read. A genuine unterminated quote fails on that line in `parse` too; a quoted value
that does close, with raw newlines, past ``max_entry`` bytes, is one that `parse` would have
read (fuzzing found it; the bound is what keeps the memory below).

Memory: the buffered chunks, one segment and its parse, and the longest entry: bounded by a
small multiple of ``max(segment_size, longest line)``, never by the body.

Prometheus counterpart: none (Prometheus reads the whole body, then parses it).
"""

from __future__ import annotations

import re

from collector.model.textparse.exposition import (
    Exposition,
    ExpositionError,
    Metadata,
    MetaRow,
    build_metadata,
)
from collector.model.textparse.fast import parse

__all__ = ["MAX_ENTRY", "SEGMENT_SIZE", "StreamParser"]

SEGMENT_SIZE = 1 << 19
"""Bytes buffered before a segment is cut: large enough that per-segment overhead (one parse
call, one cache append) is noise, small enough that a segment's parse stays a few MB."""

MAX_ENTRY = 4 << 20
"""Longest text entry carried across a cut inside a quoted value (see the module docstring)."""

_EOF_LINE = b"# EOF\n"
_TOO_LONG = -2
"""`StreamParser._cut_entry`: the open quote's entry reached ``max_entry`` bytes."""
_ESCAPE_PAIR = re.compile(rb"\\.", re.S)


class StreamParser:
    """Parse one body from its chunks: `feed` each chunk, then `close` at the body's end.

    Both return the `Exposition` of the entries completed since the last call (`feed` returns
    None while less than a segment is buffered) and raise `ExpositionError` with the line
    counted from the body's start and ``partial`` holding this segment's entries before the
    bad one (earlier segments were returned already). After an error, stop feeding.
    """

    __slots__ = (
        "_chunks",
        "_last_nl",
        "_line",
        "_max_entry",
        "_meta",
        "_om",
        "_seen",
        "_segment_size",
        "_size",
        "_type",
        "_want",
    )

    def __init__(
        self, *, openmetrics: bool, segment_size: int = SEGMENT_SIZE, max_entry: int = MAX_ENTRY
    ) -> None:
        self._om = openmetrics
        self._segment_size = segment_size
        self._max_entry = max_entry
        self._chunks: list[bytes] = []
        self._size = 0
        self._want = segment_size
        """Buffered bytes that trigger the next cut (more after a carried entry)."""
        self._last_nl: tuple[int, int] | None = None
        """(chunk index, offset) of the last buffered newline."""
        self._line = 0
        """Lines of the body before the buffer."""
        self._type: bytes | None = None
        """Type of the last TYPE line before the buffer."""
        self._meta: dict[tuple[bytes, bytes], bytes] = {}
        """Last text of each (kind, family) HELP/TYPE/UNIT line, in order of first sight."""
        self._seen = False

    @property
    def metadata(self) -> dict[str, Metadata]:
        """Family name -> `Metadata` of the lines parsed so far (as `Exposition.metadata`)."""
        rows: list[MetaRow] = [(kind, name, text) for (kind, name), text in self._meta.items()]
        return build_metadata(rows, openmetrics=self._om)

    def feed(self, data: bytes) -> Exposition | None:
        """Buffer a chunk; parse the complete lines once a segment's worth is buffered."""
        if not data:
            return None
        self._seen = True
        chunks = self._chunks
        chunks.append(data)
        self._size += len(data)
        nl = data.rfind(b"\n")
        if nl >= 0:
            self._last_nl = (len(chunks) - 1, nl)
        if self._size < self._want or self._last_nl is None:
            return None  # a line longer than a segment is buffered until it ends
        index, nl = self._last_nl
        last = chunks[index]
        segment = b"".join([*chunks[:index], last[: nl + 1]])
        rest = [piece for piece in (last[nl + 1 :], *chunks[index + 1 :]) if piece]
        if self._om and (segment == _EOF_LINE or segment.endswith(b"\n" + _EOF_LINE)):
            # Only the body's end may say whether anything follows "# EOF".
            segment = segment[: -len(_EOF_LINE)]
            rest.insert(0, _EOF_LINE)
        self._set_buffer(rest)
        if not segment:
            return None
        return self._parse(segment, final=False)

    def close(self) -> Exposition:
        """The entries left at the body's end (the last line may lack its newline)."""
        segment = b"".join(self._chunks)
        self._set_buffer([])
        if self._om and not segment and self._seen:
            # parse(b"") is the empty-body rule; here the body had lines but no "# EOF".
            exp = Exposition(samples=[], openmetrics=True)
            raise ExpositionError("data does not end with # EOF", line=0, partial=exp)
        return self._parse(segment, final=True)

    def _set_buffer(self, chunks: list[bytes]) -> None:
        self._chunks = chunks
        self._size = sum(map(len, chunks))
        self._want = self._segment_size
        self._last_nl = None
        for index in range(len(chunks) - 1, -1, -1):
            nl = chunks[index].rfind(b"\n")
            if nl >= 0:
                self._last_nl = (index, nl)
                break

    def _parse(self, segment: bytes, *, final: bool) -> Exposition:
        """Parse one segment and place its result in the body."""
        om = self._om
        base = self._line
        try:
            if om and not final:
                exp = parse(segment + _EOF_LINE, openmetrics=True)
            else:
                exp = parse(segment, openmetrics=om)
            rows = exp._shape.rows  # the fast path's one row per line (the appended EOF: none)
            consumed = segment.count(b"\n") if rows is None else len(rows)
        except ExpositionError as exc:
            partial = exc.partial
            start = -1 if final or om else self._cut_entry(segment, exc.line)
            if start < 0:
                self._absorb(partial, base)
                line = exc.line + base if exc.line else 0
                message = exc.message
                if start == _TOO_LONG:
                    message = (
                        f"entry longer than {self._max_entry} bytes with a newline inside a"
                        f" quoted value (the streamed parse's limit): {message}"
                    )
                raise ExpositionError(message, line=line, partial=partial) from None
            # The cut fell inside this entry's quoted value: parse it again with more data.
            self._set_buffer([segment[start:], *self._chunks])
            self._want = self._size + self._segment_size
            exp = partial
            consumed = exc.line - 1
        self._absorb(exp, base)
        self._line = base + consumed
        return exp

    def _absorb(self, exp: Exposition, base: int) -> None:
        """Place a segment's result in the body; take its metadata and last TYPE."""
        exp._place(line_base=base, type_in_force=self._type)
        meta = self._meta
        for kind, name, text in exp._metadata_rows():
            meta[kind, name] = text
            if kind == b"TYPE":
                self._type = text

    def _cut_entry(self, segment: bytes, line: int) -> int:
        """Offset of the failed entry (starting at ``line``) when the cut may be inside it.

        That is: the entry runs to the segment's end (everything from its line on) with an
        odd number of unescaped quotes, so a quoted value is still open at the cut. -1 when
        the error is the body's own; `_TOO_LONG` when the quote is open but the entry grew
        past ``max_entry`` bytes (an entry of exactly ``max_entry`` bytes is still carried:
        the body may end right there, and the error says "longer than").
        """
        if line <= 0:
            return -1
        pos = len(segment)
        for _ in range(segment.count(b"\n") - line + 2):
            pos = segment.rfind(b"\n", 0, pos)
        start = pos + 1
        tail = segment[start:]
        if _ESCAPE_PAIR.sub(b"", tail).count(b'"') % 2 == 0:
            return -1
        return _TOO_LONG if len(tail) > self._max_entry else start
