"""What each crasher the fuzzer found now gets: the component's own error, saying where and what.

The inputs are ``tests/fixtures/fuzz/crashers/<target>/`` (minimized by `benchmarks.fuzz`,
issue 13 §2). Before the fixes each escaped as an undocumented exception (``RecursionError``,
``AttributeError``, ``TypeError``, ``ValueError``) or took seconds; `tests/test_fuzz.py` also
runs every one of them under the fuzz harness's full contract (time and memory included).
Here each is held to the error message a user reads.
"""

from __future__ import annotations

import asyncio
import gc
import gzip
import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from collector.config import load_config_text
from collector.discovery.file import read_file
from collector.discovery.kubernetes.faults import error_event
from collector.discovery.kubernetes.informer import Informer, InformerKey
from collector.discovery.kubernetes.metrics import KubernetesMetrics
from collector.discovery.kubernetes.objects import SLIM, object_key
from collector.discovery.kubernetes.retry import Gone, Restart
from collector.discovery.kubernetes.wire import list_problem, status_error
from collector.errors import ConfigError, DiscoveryError
from collector.kubernetes.connection import Connection, ConnectionSpec
from collector.model.textparse import ExpositionError, parse
from collector.model.textparse.stream import StreamParser

CRASHERS = Path(__file__).resolve().parent / "fixtures" / "fuzz" / "crashers"


def _read(target: str, name: str) -> bytes:
    data = (CRASHERS / target / name).read_bytes()
    return gzip.decompress(data) if name.endswith(".gz") else data


# ----------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("alias-ladder.bin", "1:10: line 1: document contains excessive aliasing"),
        ("block-nesting-1000-deep.bin", "line 1: exceeded maximum nesting depth (64)"),
        ("flow-nesting-1500-deep.bin", "4:1017: yaml: line 4: exceeded maximum nesting depth"),
        ("nul-character.bin", "unacceptable character #x0000"),
    ],
)
def test_config_crasher_is_a_located_config_error(name: str, message: str) -> None:
    """Alias ladders, deep nesting and control characters: a `ConfigError` naming the line."""
    with pytest.raises(ConfigError) as caught:
        load_config_text(_read("config", name).decode(), base_dir="/nonexistent", env={})
    assert message in str(caught.value)


def test_config_nesting_below_the_limit_still_loads() -> None:
    """The depth limit leaves room: a relabel rule's value nested 40 deep is read (and refused
    for its type by the schema, not by the YAML reader)."""
    deep = "[" * 40 + "a" + "]" * 40
    text = f"scrape_configs:\n- job_name: j\n  metrics_path: {deep}\n"
    with pytest.raises(ConfigError) as caught:
        load_config_text(text, base_dir="/nonexistent", env={})
    assert "nesting depth" not in str(caught.value)
    assert "metrics_path" in str(caught.value)


# ----------------------------------------------------------------------------- file_sd
@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("alias-group-repeated.bin", "invalid YAML: document contains excessive aliasing"),
        (
            "flow-nesting-900-deep.bin",
            'exceeded maximum nesting depth (64)\n  in "<byte string>", line 1, column 65',
        ),
        ("flow-nesting-991-deep-250-kb.bin.gz", "exceeded maximum nesting depth (64)"),
        ("nested-lists-63-deep-143-kb.bin.gz", "expected a list of target groups, got mapping"),
    ],
)
def test_file_sd_crasher_is_a_discovery_error(name: str, message: str, tmp_path: Path) -> None:
    """A YAML file_sd document that expands or nests without end: `DiscoveryError` + path."""
    path = tmp_path / "targets.yml"
    path.write_bytes(_read("file_sd", name))
    with pytest.raises(DiscoveryError) as caught:
        read_file(str(path))
    assert str(caught.value) == f"{path}: {message}" or message in str(caught.value)
    assert str(path) in str(caught.value)


def test_file_sd_yaml_builds_without_garbage_collections(tmp_path: Path) -> None:
    """143 KB of nested lists took 1.04 s, mostly in the collections that the ~130,000 new
    nodes and lists triggered (0.19 s without): a YAML load runs none but the young collection
    owed when it ends (541 with the collector left on)."""
    path = tmp_path / "targets.yml"
    path.write_bytes(_read("file_sd", "nested-lists-63-deep-143-kb.bin.gz"))
    collections: list[int] = []
    # Which generation the owed collection takes depends on the older generations' counts,
    # i.e. on whatever ran before this test (one CI run saw [1] after an unrelated change to
    # the tests before it): from a full collection, the young one is owed, and only it.
    gc.collect()

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections.append(info["generation"])

    gc.callbacks.append(count)
    try:
        with pytest.raises(DiscoveryError):
            read_file(str(path))
    finally:
        gc.callbacks.remove(count)
    assert collections in ([], [0])
    assert gc.isenabled()


@pytest.mark.parametrize(
    ("text", "groups"),
    [
        # 200 flow collections, none deeper than 3: the depth check reads events, finds none
        (
            "[" + ", ".join(f"{{targets: ['h{i}:1'], labels: {{i: '{i}'}}}}" for i in range(100)),
            100,
        ),
        # brackets inside a quoted value are not nesting
        ("- targets: ['a:1']\n  labels: {x: '" + "[" * 100 + "'}\n", 1),
    ],
    ids=["many-flow-groups", "brackets-in-a-string"],
)
def test_file_sd_depth_check_leaves_shallow_yaml_alone(
    text: str, groups: int, tmp_path: Path
) -> None:
    """Only nesting past 64 levels is refused, wherever the brackets are."""
    path = tmp_path / "targets.yml"
    path.write_text(text + ("]" if text.startswith("[") else ""))
    assert len(read_file(str(path))) == groups


@pytest.mark.parametrize(
    ("levels", "message"),
    [(64, "expected a string value, got list"), (65, "exceeded maximum nesting depth (64)")],
)
def test_file_sd_flow_nesting_limit_is_64(levels: int, message: str, tmp_path: Path) -> None:
    """64 flow levels (``{`` then 63 ``[``, under two block levels) are read and refused for
    their shape; one more is refused for its depth, at the bracket that goes past."""
    path = tmp_path / "targets.yml"
    inner = "[" * (levels - 1) + "a" + "]" * (levels - 1)
    path.write_text(f"- targets: ['a:1']\n  labels: {{x: {inner}}}\n")
    with pytest.raises(DiscoveryError, match=re.escape(message)) as caught:
        read_file(str(path))
    if levels > 64:
        assert "line 2, column 78" in str(caught.value)


def test_file_sd_large_yaml_reads_every_group(tmp_path: Path) -> None:
    """344 KB of YAML groups (once 1.2 s with the pure-Python parser) reads all 8,000."""
    path = tmp_path / "targets.yml"
    path.write_bytes(_read("file_sd", "yaml-344-kb.bin.gz"))
    groups = read_file(str(path))
    assert len(groups) == 8000
    assert groups[0].labels["x"] == "y"


# ----------------------------------------------------------------------------- text parsers
def test_timestamp_of_5000_digits_is_out_of_range() -> None:
    """Once ``int()``'s 4,300-digit ValueError; now Go's message on the right line."""
    with pytest.raises(ExpositionError) as caught:
        parse(_read("text", "timestamp-5000-digits.bin"), openmetrics=False)
    assert caught.value.line == 1
    assert caught.value.message.startswith('strconv.ParseInt: parsing "7777')
    assert '": value out of range while parsing: "a 1 7777' in caught.value.message


@pytest.mark.parametrize(
    ("target", "name", "openmetrics"),
    [
        ("text", "value-digit-run-backtracks.bin", False),
        ("openmetrics", "timestamp-digit-run-backtracks.bin", True),
    ],
)
def test_long_digit_runs_are_refused_on_their_line(
    target: str, name: str, openmetrics: bool
) -> None:
    """Digit runs that made the float regex backtrack quadratically: refused on line 1."""
    with pytest.raises(ExpositionError) as caught:
        parse(_read(target, name), openmetrics=openmetrics)
    assert caught.value.line == 1
    assert caught.value.message.startswith("strconv.Parse")


def test_plain_lines_then_a_bad_one_keep_every_sample() -> None:
    """The plain-line shortcut of the exact path: every sample before the bad line is kept,
    and the error names that line."""
    body = b"a 1\nb_total -2.5\nc NaN\nd +Inf\n" * 1000 + b"e{\n"
    with pytest.raises(ExpositionError) as caught:
        parse(body, openmetrics=False)
    assert caught.value.line == 4001
    keys, values, _ = caught.value.partial.columns()
    assert len(keys) == 4000
    assert list(values[:2]) == [1.0, -2.5]


# ----------------------------------------------------------------------------- kubernetes
def _informer(resource: str) -> Informer:
    connection = Connection(ConnectionSpec(api_server="http://fuzz.invalid"))
    metrics = KubernetesMetrics.for_registry(CollectorRegistry(auto_describe=False))
    return Informer(
        InformerKey(connection=connection.spec, resource=resource), connection, metrics=metrics
    )


def _watch(name: str) -> tuple[Informer, list[bytes]]:
    head, _, body = _read("k8s_watch", name).partition(b"\n")
    return _informer(head[1:].decode()), [line for line in body.split(b"\n") if line.strip()]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("event-object-not-a-mapping.bin", "watch: ADDED object is not a JSON object"),
        ("event-type-nested-1000-deep.bin", "watch: unknown event type of JSON list"),
        ("error-event-code-nested-1000-deep.bin", "watch: error event: 0 : "),
    ],
)
def test_unusable_watch_event_restarts_the_watch_saying_why(name: str, message: str) -> None:
    """An event the informer cannot apply restarts the watch (as client-go's decoder does),
    with a message that says what is wrong."""
    informer, lines = _watch(name)
    (line,) = lines
    with pytest.raises(Restart) as caught:
        informer._event(line)
    assert str(caught.value).startswith(message)
    assert informer.store == {}


def test_nested_resource_version_is_ignored() -> None:
    """A bookmark whose resourceVersion is not a string leaves the version as it was."""
    informer, lines = _watch("bookmark-resource-version-nested-1000-deep.bin")
    informer.resource_version = "7"
    informer._event(lines[0])
    assert informer.resource_version == "7"


@pytest.mark.parametrize(
    "name",
    [
        "endpointslice-conditions-a-string.bin",
        "ingress-spec-a-string.bin",
        "node-spec-a-string.bin",
        "pod-container-status-name-a-list.bin",
        "pod-spec-a-string.bin",
        "service-load-balancer-a-list.bin",
        "service-spec-a-list.bin",
    ],
)
def test_object_section_of_another_type_is_read_as_missing(name: str) -> None:
    """A section of another JSON type (``"spec": "x"``) is read as absent, as a null one is:
    the object is stored with its name, the rest of the watch goes on."""
    informer, lines = _watch(name)
    for line in lines:
        informer._event(line)
    assert len(informer.store) == 1
    (key,) = informer.store
    assert key in ("e", "i", "n", "p", "s")


def test_error_event_keeps_a_410_and_drops_odd_fields() -> None:
    """410 is still `Gone`; a code that is no HTTP status is 0, never a new counter label."""
    assert isinstance(error_event(410, "Expired", "too old"), Gone)
    odd = error_event([[1]], {"a": 1}, ["m"])
    assert isinstance(odd, Restart)
    assert odd.reason == "http_0"
    assert str(odd) == "watch: error event: 0 : "


def test_status_error_with_nested_fields_quotes_the_body() -> None:
    """A Status whose reason is not a string: the reason is dropped, the body quoted."""
    body = _read("k8s_watch", "status-reason-nested-1000-deep.bin").partition(b"\n")[2]
    error = status_error(500, body)
    assert error.reason == ""
    assert str(error).startswith('500: {"kind":"Status","reason":[[[')


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("list-item-metadata-a-list.bin", "items[0] is not an object with object metadata"),
        ("list-items-a-string.bin", "items is a JSON str, not a list"),
    ],
)
def test_list_page_of_the_wrong_shape_is_named(name: str, problem: str) -> None:
    """A LIST page the informer cannot read: `list_problem` says what (the informer restarts
    with ``list: <problem>``); a good page has none and every item converts."""
    body = orjson.loads(_read("k8s_watch", name).partition(b"\n")[2])
    assert list_problem(body) == problem
    item: dict[str, Any] = {"metadata": {"name": "p"}}
    assert list_problem({"metadata": {"resourceVersion": "1"}, "items": [item]}) == ""
    assert object_key(item) == "p"
    assert SLIM["pods"](item).name == "p"


def test_list_problem_restarts_the_informer_list() -> None:
    """The informer's LIST returns `Restart` ("bad_list") naming the problem of the page."""
    informer = _informer("pods")

    async def fetch(_token: str, _rv: str) -> bytes | Exception:
        return b'{"metadata":{"resourceVersion":"1"},"items":[[1]]}'

    informer._fetch_outcome = fetch  # type: ignore[method-assign,assignment]  # no request

    async def run() -> object:
        async with asyncio.TaskGroup() as group:
            return await informer._list_pages(group)

    got = asyncio.run(run())
    assert isinstance(got, Restart)
    assert got.reason == "bad_list"
    assert str(got) == "list: items[0] is not an object with object metadata"


# ----------------------------------------------------------------------------- streamed parse
def _stream(body: bytes, *, max_entry: int) -> tuple[int, int, str]:
    """(samples returned, error line, error message) of a byte-by-byte streamed text parse."""
    parser = StreamParser(openmetrics=False, segment_size=1, max_entry=max_entry)
    returned = 0
    try:
        for pos in range(len(body)):
            exp = parser.feed(body[pos : pos + 1])
            returned += len(exp.samples) if exp is not None else 0
        parser.close()
    except ExpositionError as exc:
        return returned + len(exc.partial.samples), exc.line, exc.message
    raise AssertionError("the streamed parse accepted the body")


def test_quoted_value_open_past_max_entry_is_refused_saying_so() -> None:
    """A label value with a raw newline whose entry outgrows ``max_entry``: refused on its line
    (6) naming the limit, after the five samples before it; `parse` reads it and fails later."""
    body = _read("stream", "quoted-value-with-newline-past-max-entry.bin")
    # The entry with the newline is 64 bytes up to its closing quote: 63 is too little.
    returned, line, message = _stream(body, max_entry=63)
    assert (returned, line) == (5, 6)
    assert message.startswith(
        "entry longer than 63 bytes with a newline inside a quoted value (the streamed"
        " parse's limit): expected label value"
    )
    with pytest.raises(ExpositionError) as whole:
        parse(body, openmetrics=False)
    assert whole.value.line == 8
    assert _stream(body, max_entry=4096)[1:] == (8, whole.value.message)


def test_entry_of_exactly_max_entry_bytes_is_parsed_as_parse_does() -> None:
    """An open quote whose entry is the whole 64-byte body, fed a byte at a time with
    ``max_entry=64``: it is not "longer than 64 bytes", so it is carried to the body's end and
    fails as `parse` does (the fuzzer's stream violation of this session)."""
    body = _read("stream", "quoted-value-open-entry-of-exactly-max-entry.bin")
    assert len(body) == 64
    with pytest.raises(ExpositionError) as whole:
        parse(body, openmetrics=False)
    assert _stream(body, max_entry=64) == (0, whole.value.line, whole.value.message)
    assert _stream(body, max_entry=63)[2].startswith("entry longer than 63 bytes")


def test_yaml_integer_past_int_digit_limit_is_invalid_yaml(tmp_path: Path) -> None:
    """A 4,310-digit YAML integer: once int()'s ValueError, now "invalid YAML" + the path."""
    path = tmp_path / "targets.yml"
    path.write_bytes(_read("file_sd", "integer-of-4310-digits.bin"))
    with pytest.raises(DiscoveryError) as caught:
        read_file(str(path))
    assert str(caught.value).startswith(f"{path}: invalid YAML: unreadable value: Exceeds the")


@pytest.mark.parametrize(
    ("name", "word"),
    [
        ("explicit-bool-tag-bad-value.bin", "bool"),
        ("explicit-timestamp-tag-bad-value.bin", "timestamp"),
    ],
)
def test_bad_explicitly_tagged_value_is_invalid_yaml(tmp_path: Path, name: str, word: str) -> None:
    """``!!bool xyz`` / ``!!timestamp xyz``: once PyYAML's KeyError / AttributeError out of
    file_sd (the fuzzer's mutator met it first), now "invalid YAML" naming the value and line."""
    path = tmp_path / "targets.yml"
    path.write_bytes(_read("file_sd", name))
    with pytest.raises(DiscoveryError) as caught:
        read_file(str(path))
    assert str(caught.value).startswith(f"{path}: invalid YAML: invalid !!{word} value 'xyz'")
    assert "line 2, column 15" in str(caught.value)
    with pytest.raises(ConfigError) as config_error:
        load_config_text(_read("config", name).decode(), base_dir="/nonexistent", env={})
    assert "xyz" in str(config_error.value)
    assert config_error.value.line == 3
