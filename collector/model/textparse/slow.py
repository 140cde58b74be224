"""The exact path: a token-by-token parser that mirrors Prometheus's lexers.

Place in the pipeline: `parse` (`fast`) falls back to `SlowParser` whenever the whole-body
regex fast path declines a body: every invalid body, and valid ones in rarer shapes (quoted
names, whitespace variants, escapes the fast rows do not take, raw newlines in label values).
It either parses the body or raises `ExpositionError` with Prometheus's wording, the 1-based
line where the bad entry starts, and ``partial``: the samples and metadata before that entry.

Prometheus counterpart: ``promparse.go`` and ``openmetricsparse.go`` with their lexers
``promlex.l`` and ``openmetricslex.l``.
"""

from __future__ import annotations

import re

from collector.model.textparse.exposition import (
    Exemplar,
    Exposition,
    ExpositionError,
    MetaRow,
    Sample,
)
from collector.model.textparse.syntax import (
    LABEL_ESCAPES,
    NAME_RE,
    OM_TOKEN,
    OM_TYPES,
    QSTR_OM,
    QSTR_TEXT,
    TEXT_TYPES,
    WS,
    Malformed,
    MissingEOF,
    go_float,
    om_ts,
    perr,
    quote,
    scan_labels,
    scan_series,
    unescape,
    unescape_bytes,
)
from collector.model.value import NORMAL_NAN

__all__ = ["SlowParser", "parse_exemplar"]

_TEXT_VALUE = re.compile(rb"[^{ \t\n]+")
_DIGITS = re.compile(rb"[0-9]+")
_TEXT_META = re.compile(rb"[ \t]*#[ \t]+(HELP|TYPE)[ \t]+")
_INT64_MAX = (1 << 63) - 1
# The plainest sample line, "name value\n" (no labels or timestamp, a value that float()
# reads exactly as Go does), in one match: the exact path's cost per line bounds a body the
# fast path declines for one odd line (fuzzing: 1 MiB of "a 1" lines and a bad last line
# took 1.1-1.5 s). Same result in both formats; anything else takes the full path.
_PLAIN_SAMPLE = re.compile(
    rb"([a-zA-Z_:][a-zA-Z0-9_:]*) ([+-]?[0-9]{1,15}(?:\.[0-9]{1,15})?"
    rb"|[+-]?[iI][nN][fF](?:[iI][nN][iI][tT][yY])?|[nN][aA][nN])\n"
)


def parse_exemplar(buf: bytes, pos: int) -> Exemplar:
    """Parse ``{labels} value [ts]`` at ``pos`` (just after ``" # "``) up to end of line."""
    if buf[pos : pos + 1] != b"{":
        raise perr(buf, 0, pos, "expected label set for exemplar")
    pos, _, raw = scan_labels(buf, pos + 1, openmetrics=True, start=0, named=True, exemplar=True)
    labels = tuple((n.decode(), unescape(v.decode(), LABEL_ESCAPES)) for n, v in raw)
    value_match = OM_TOKEN.match(buf, pos + 1) if buf[pos : pos + 1] == b" " else None
    if value_match is None:
        raise perr(buf, 0, pos, "expected value after exemplar labels")
    value = go_float(value_match.group())
    pos = value_match.end()
    ts: int | None = None
    if pos < len(buf) and buf[pos] != 0x0A:
        ts_match = OM_TOKEN.match(buf, pos + 1) if buf[pos] == 0x20 else None
        if ts_match is None:
            raise perr(buf, 0, pos, "expected timestamp or comment")
        ts = om_ts(ts_match.group(), "exemplar timestamp")
        pos = ts_match.end()
        if pos < len(buf) and buf[pos] != 0x0A:
            raise perr(buf, 0, pos, "expected next entry after exemplar timestamp")
    return Exemplar(labels=labels, value=value, ts_ms=ts)


# ----------------------------------------------------------------------------- slow path
class SlowParser:
    """Token-by-token parser mirroring Prometheus's lexers; exact errors with line numbers."""

    def __init__(self, body: bytes, *, openmetrics: bool) -> None:
        self.body = body
        self.om = openmetrics
        self.samples: list[Sample] = []
        self.lines: list[int] = []
        self.meta_rows: list[MetaRow] = []
        self.segments: list[tuple[int, bytes]] = []
        self.exemplars: dict[int, Exemplar] = {}
        self.line = 1  # 1-based line where the current entry starts

    def result(self) -> Exposition:
        """The `Exposition` of everything parsed so far."""
        return Exposition(
            samples=self.samples,
            openmetrics=self.om,
            meta_rows=self.meta_rows,
            segments=self.segments,
            exemplars=self.exemplars,
            lines=self.lines,
        )

    def fail(self, message: str, line: int) -> ExpositionError:
        """An error carrying the partial result (copies, so later appends cannot leak in)."""
        partial = Exposition(
            samples=list(self.samples),
            openmetrics=self.om,
            meta_rows=list(self.meta_rows),
            segments=list(self.segments),
            exemplars=dict(self.exemplars),
            lines=list(self.lines),
        )
        return ExpositionError(message, line=line, partial=partial)

    def run(self) -> Exposition:
        """Parse the whole body."""
        body = self.body
        size = len(body)
        pos = 0
        plain = _PLAIN_SAMPLE.match
        while True:
            found = plain(body, pos)
            if found is not None:
                key, raw = found.groups()
                value = float(raw)
                self.samples.append((key, value if value == value else NORMAL_NAN, None))
                self.lines.append(self.line)
                self.line += 1
                pos = found.end()
                continue
            if pos >= size:
                if self.om:
                    raise self.fail("data does not end with # EOF", 0)
                return self.result()
            eol = body.find(b"\n", pos)
            if eol < 0:
                eol = size
            try:
                if self.om:
                    if body.startswith(b"# EOF", pos):
                        if body[pos + 5 :] not in (b"", b"\n"):
                            raise Malformed("unexpected data after # EOF")
                        return self.result()
                    end = self.om_entry(pos, eol)
                else:
                    end = self.text_entry(pos, eol)
            except Malformed as exc:
                raise self.fail(str(exc), 0 if isinstance(exc, MissingEOF) else self.line) from None
            self.line += body.count(b"\n", pos, end + 1)
            pos = end + 1

    # -- text format -----------------------------------------------------------------------
    def text_entry(self, pos: int, eol: int) -> int:
        """Parse one text entry starting at ``pos``; return the index of its final newline."""
        body = self.body
        char = body[pos : pos + 1]
        if char in (b" ", b"\t"):
            after = WS.match(body, pos).end()  # type: ignore[union-attr]
            if after >= eol:
                return eol  # whitespace-only line
            if body[after : after + 1] != b"#":
                raise Malformed(
                    f"leading whitespace before metric name while parsing: {quote(body[pos:eol])}"
                )
            char = b"#"
        if char == b"\n":
            return pos
        if char == b"#":
            self.text_comment(body[pos:eol])
            return eol
        return self.sample(pos)

    def text_comment(self, line: bytes) -> None:
        """A ``#`` line: HELP/TYPE metadata, or a comment to ignore."""
        match = _TEXT_META.match(line)
        if match is None:
            return  # plain comment (incl. "#HELP", "# UNIT ...", "#" alone)
        kind = match.group(1)
        name, rest = self.meta_name(line, match.end(), kind)
        text = rest[1:]
        if kind == b"TYPE":
            if text not in TEXT_TYPES:
                raise Malformed(f"invalid metric type {quote(text)}")
            self.segments.append((len(self.samples), text))
        else:
            try:
                text.decode()
            except UnicodeDecodeError:
                raise Malformed(f"help text {quote(text)} is not a valid utf8 string") from None
        self.meta_rows.append((kind, name, text))

    def meta_name(self, line: bytes, pos: int, kind: bytes) -> tuple[bytes, bytes]:
        """The (unquoted) family name of a metadata line and the bytes after it."""
        if line[pos : pos + 1] == b'"':
            match = (QSTR_OM if self.om else QSTR_TEXT).match(line, pos)
            if match is not None:
                name = unescape_bytes(match.group()[1:-1], what="metric name")
                return name, line[match.end() :]
        else:
            match = NAME_RE.match(line, pos)
            if match is not None:
                return match.group(), line[match.end() :]
        raise perr(line, 0, pos, f"expected metric name after {kind.decode()}")

    # -- OpenMetrics -------------------------------------------------------------------------
    def om_entry(self, pos: int, eol: int) -> int:
        """Parse one OpenMetrics entry at ``pos``; return the index of its final newline."""
        body = self.body
        char = body[pos : pos + 1]
        if char == b"#":
            self.om_comment(body[pos:eol])
            if eol >= len(body):
                raise MissingEOF
            return eol
        if char == b"\n":
            raise Malformed('"INVALID" "\\n" is not a valid start token')
        return self.sample(pos)

    def om_comment(self, line: bytes) -> None:
        """``# HELP|TYPE|UNIT name text``; anything else starting with ``#`` is an error."""
        kind = line[2:6]
        if not line.startswith(b"# ") or kind not in (b"HELP", b"TYPE", b"UNIT"):
            raise Malformed(f'"INVALID" {quote(line[:20])} is not a valid start token')
        if line[6:7] != b" ":
            raise perr(line, 0, 6, f"expected metric name after {kind.decode()}")
        name, rest = self.meta_name(line, 7, kind)
        if rest[:1] != b" ":
            raise Malformed(f"expected text in {kind.decode()}")
        text = rest[1:]
        if kind == b"TYPE":
            if text not in OM_TYPES:
                raise Malformed(f"invalid metric type {quote(text)}")
            self.segments.append((len(self.samples), text))
        elif kind == b"UNIT":
            if text and not name.endswith(b"_" + text):
                raise Malformed(f"unit {quote(text)} not a suffix of metric {quote(name)}")
        else:
            try:
                text.decode()
            except UnicodeDecodeError:
                raise Malformed(f"help text {quote(text)} is not a valid utf8 string") from None
        self.meta_rows.append((kind, name, text))

    # -- samples (both formats) ---------------------------------------------------------------
    def sample(self, start: int) -> int:
        """Parse a sample line at ``start``; return the index of its final newline."""
        body = self.body
        om = self.om
        key_end, _, _ = scan_series(body, start, openmetrics=om, start=start)
        key = body[start:key_end]
        if om:
            match = (
                OM_TOKEN.match(body, key_end + 1) if body[key_end : key_end + 1] == b" " else None
            )
        else:
            match = _TEXT_VALUE.match(body, WS.match(body, key_end).end())  # type: ignore[union-attr]
        if match is None:
            raise perr(body, start, key_end, "expected value after metric")
        try:
            value = go_float(match.group())
        except Malformed as exc:
            raise Malformed(f"{exc} while parsing: {quote(body[start : match.end()])}") from None
        pos = match.end()
        ts: int | None = None
        exemplar: Exemplar | None = None
        if om:
            pos, ts, exemplar = self.om_tail(start, pos)
        else:
            pos = WS.match(body, pos).end()  # type: ignore[union-attr]
            if pos < len(body) and body[pos] != 0x0A:
                digits = _DIGITS.match(body, pos)
                if digits is None:
                    raise perr(body, start, pos, "expected timestamp or new record")
                # Not int(group): it refuses over 4,300 digits (ValueError; fuzzing). Leading
                # zeros do not count, as in Go; 20 significant digits are out of range anyway.
                ts = int(digits.group().lstrip(b"0")[:20] or b"0")
                if ts > _INT64_MAX:
                    raise Malformed(
                        f"strconv.ParseInt: parsing {quote(digits.group())}: value out of range"
                        f" while parsing: {quote(body[start : digits.end()])}"
                    )
                pos = WS.match(body, digits.end()).end()  # type: ignore[union-attr]
                if pos < len(body) and body[pos] != 0x0A:
                    raise perr(body, start, pos, "expected next entry after timestamp")
        if exemplar is not None:
            self.exemplars[len(self.samples)] = exemplar
        self.samples.append((key, value, ts))
        self.lines.append(self.line)
        return pos

    def om_tail(self, start: int, pos: int) -> tuple[int, int | None, Exemplar | None]:
        """After an OpenMetrics value: optional `` ts``, optional `` # {exemplar}``, newline."""
        body = self.body
        ts: int | None = None
        if body.startswith(b" ", pos) and not body.startswith(b" # {", pos):
            match = OM_TOKEN.match(body, pos + 1)
            if match is None:
                raise perr(body, start, pos, "expected timestamp or new record")
            try:
                ts = om_ts(match.group(), "timestamp")
            except Malformed as exc:
                raise Malformed(
                    f"{exc} while parsing: {quote(body[start : match.end()])}"
                ) from None
            pos = match.end()
        exemplar: Exemplar | None = None
        if body.startswith(b" # {", pos):
            eol = body.find(b"\n", pos)
            eol = len(body) if eol < 0 else eol
            line = body[pos:eol]
            exemplar = parse_exemplar(line, 3)
            pos = eol
        if pos >= len(body):
            raise MissingEOF
        if body[pos] != 0x0A:
            expected = (
                "expected next entry after timestamp"
                if ts is not None
                else ("expected timestamp or new record")
            )
            raise perr(body, start, pos, expected)
        return pos, ts, exemplar
