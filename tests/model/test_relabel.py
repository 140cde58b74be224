"""Relabeling: every action, Go template expansion, RE2 translation and load-time validation.

Expected values follow Prometheus semantics (spec §5, §11 #9-#11, §12); several rows are taken
from Prometheus's ``model/relabel/relabel_test.go`` and restated in our own terms.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.errors import ConfigError
from collector.model.relabel import (
    RelabelConfig,
    Relabeler,
    compile_regex,
    compile_rules,
    expand_template,
    go_lower,
    go_upper,
    parse_rule,
    relabel,
)

Rule = dict[str, Any]


def run(labels: dict[str, str], *rules: Rule) -> dict[str, str] | None:
    """Parse ``rules`` as YAML mappings and relabel a copy of ``labels``."""
    return relabel(labels, [parse_rule(r) for r in rules])


# --------------------------------------------------------------------------- actions

ACTION_CASES: list[tuple[str, dict[str, str], list[Rule], dict[str, str] | None]] = [
    (
        "replace-template-braces",
        {"a": "foo", "b": "bar", "c": "baz"},
        [
            {
                "source_labels": ["a"],
                "regex": "f(.*)",
                "target_label": "d",
                "replacement": "ch${1}-ch${1}",
            }
        ],
        {"a": "foo", "b": "bar", "c": "baz", "d": "choo-choo"},
    ),
    (
        "replace-chain-two-sources",
        {"a": "foo", "b": "bar", "c": "baz"},
        [
            {
                "source_labels": ["a", "b"],
                "regex": "f(.*);(.*)r",
                "target_label": "a",
                "replacement": "b${1}${2}m",
            },
            {
                "source_labels": ["c", "a"],
                "regex": "(b).*b(.*)ba(.*)",
                "target_label": "d",
                "replacement": "$1$2$2$3",
            },
        ],
        {"a": "boobam", "b": "bar", "c": "baz", "d": "boooom"},
    ),
    (
        "replace-no-match-is-noop",
        {"a": "boo"},
        [{"source_labels": ["a"], "regex": "f", "target_label": "b", "replacement": "bar"}],
        {"a": "boo"},
    ),
    (
        "replace-anchored-regex-no-partial-match",
        {"name": "nm"},
        [{"source_labels": ["name"], "regex": "n", "target_label": "x", "replacement": "hit"}],
        {"name": "nm"},
    ),
    (
        "replace-empty-result-deletes-target",
        {"a": "foo", "f": "baz"},
        [{"source_labels": ["a"], "regex": "(f).*", "target_label": "$1", "replacement": "$2"}],
        {"a": "foo"},
    ),
    (
        "replace-empty-replacement-deletes-via-fast-path",
        {"a": "foo", "gone": "x"},
        [{"target_label": "gone", "replacement": ""}],
        {"a": "foo"},
    ),
    (
        "replace-missing-source-sets-constant",
        {"a": "foo"},
        [{"source_labels": ["missing"], "target_label": "c", "replacement": "const"}],
        {"a": "foo", "c": "const"},
    ),
    (
        "replace-missing-source-default-replacement-sets-nothing",
        {"a": "foo"},
        [{"source_labels": ["missing"], "target_label": "c"}],
        {"a": "foo"},
    ),
    (
        "replace-target-template",
        {"name": "nm"},
        [{"source_labels": ["name"], "target_label": "tl_$1", "replacement": "v"}],
        {"name": "nm", "tl_nm": "v"},
    ),
    (
        "replace-target-and-value-from-groups",
        {"a": "some-name-value"},
        [
            {
                "source_labels": ["a"],
                "regex": "some-([^-]+)-([^,]+)",
                "target_label": "${1}",
                "replacement": "${2}",
            }
        ],
        {"a": "some-name-value", "name": "value"},
    ),
    (
        "replace-target-expands-empty-is-noop",
        {"a": "some-name-0"},
        [
            {
                "source_labels": ["a"],
                "regex": "some-([^-]+)-([^,]+)",
                "target_label": "${3}",
                "replacement": "${1}",
            }
        ],
        {"a": "some-name-0"},
    ),
    (
        "replace-utf8-target-with-template",
        {"a": "line1\nline2"},
        [
            {
                "source_labels": ["a"],
                "regex": "line1.*line2",
                "target_label": "utf-8.label${1}",
                "replacement": "match${1}",
            }
        ],
        {"a": "line1\nline2", "utf-8.label": "match"},
    ),
    (
        "replace-named-groups-both-spellings",
        {"a": "line1\nline2"},
        [
            {
                "source_labels": ["a"],
                "regex": "(line1).*(?<second>line2)",
                "target_label": "l1_${1}",
                "replacement": "val_${second}",
            },
            {
                "source_labels": ["a"],
                "regex": "(line1).*(?P<second>line2)",
                "target_label": "l2_$1",
                "replacement": "val_$second",
            },
        ],
        {"a": "line1\nline2", "l1_line1": "val_line2", "l2_line1": "val_line2"},
    ),
    (
        "replace-sd-tags-real-life",
        {"__meta_sd_tags": "path:/secret,job:some-job,label:foo=bar"},
        [
            {
                "source_labels": ["__meta_sd_tags"],
                "regex": "(?:.+,|^)path:(/[^,]+).*",
                "target_label": "__metrics_path__",
            },
            {
                "source_labels": ["__meta_sd_tags"],
                "regex": "(?:.+,|^)job:([^,]+).*",
                "target_label": "job",
            },
            {
                "source_labels": ["__meta_sd_tags"],
                "regex": "(?:.+,|^)label:([^=]+)=([^,]+).*",
                "target_label": "${1}",
                "replacement": "${2}",
            },
        ],
        {
            "__meta_sd_tags": "path:/secret,job:some-job,label:foo=bar",
            "__metrics_path__": "/secret",
            "job": "some-job",
            "foo": "bar",
        },
    ),
    (
        "replace-address-with-port",
        {"__address__": "10.0.0.1:80", "__meta_port": "9100"},
        [
            {
                "source_labels": ["__address__", "__meta_port"],
                "regex": r"(.+?)(\:\d+)?;(\d+)",
                "target_label": "__address__",
                "replacement": "$1:$3",
            }
        ],
        {"__address__": "10.0.0.1:9100", "__meta_port": "9100"},
    ),
    (
        "replace-separator",
        {"ns": "default", "pod": "p1"},
        [{"source_labels": ["ns", "pod"], "separator": "/", "target_label": "x"}],
        {"ns": "default", "pod": "p1", "x": "default/p1"},
    ),
    (
        "replace-explicit-null-regex-is-empty-regex",
        {"a": "foo"},
        [{"regex": None, "target_label": "abc", "replacement": "static"}],
        {"a": "foo", "abc": "static"},
    ),
    (
        "replace-dollar-zero-target-is-noop",
        {"a": "foo"},
        [{"target_label": "${0}", "replacement": "dropped"}],
        {"a": "foo"},
    ),
    (
        "keep-match",
        {"a": "foo"},
        [{"source_labels": ["a"], "regex": "f.*", "action": "keep"}],
        {"a": "foo"},
    ),
    (
        "keep-no-match-drops",
        {"a": "foo"},
        [{"source_labels": ["a"], "regex": "no-match", "action": "keep"}],
        None,
    ),
    (
        "keep-anchored-n-vs-nm-drops",
        {"name": "nm"},
        [{"source_labels": ["name"], "regex": "n", "action": "keep"}],
        None,
    ),
    (
        "keep-literal-alternation",
        {"a": "b"},
        [{"source_labels": ["a"], "regex": "a|b|c", "action": "keep"}],
        {"a": "b"},
    ),
    (
        "keep-empty-regex-matches-missing",
        {"a": "x"},
        [{"source_labels": ["m"], "regex": "", "action": "keep"}],
        {"a": "x"},
    ),
    (
        "drop-match",
        {"a": "foo", "b": "bar"},
        [{"source_labels": ["a"], "regex": ".*o.*", "action": "drop"}],
        None,
    ),
    (
        "drop-alternation-must-match-whole",
        {"a": "foo"},
        [{"source_labels": ["a"], "regex": "f|o", "action": "drop"}],
        {"a": "foo"},
    ),
    (
        "drop-stops-processing",
        {"a": "foo"},
        [
            {"source_labels": ["a"], "regex": "foo", "action": "drop"},
            {"target_label": "b", "replacement": "x"},
        ],
        None,
    ),
    (
        "action-case-insensitive",
        {"a": "foo"},
        [{"source_labels": ["a"], "regex": "foo", "action": "DrOp"}],
        None,
    ),
    (
        "keepequal-equal-keeps",
        {"t": "1234", "p1": "1234"},
        [{"source_labels": ["t"], "target_label": "p1", "action": "keepequal"}],
        {"t": "1234", "p1": "1234"},
    ),
    (
        "keepequal-differs-drops",
        {"t": "1234", "p2": "5678"},
        [{"source_labels": ["t"], "target_label": "p2", "action": "keepequal"}],
        None,
    ),
    (
        "keepequal-both-missing-keeps",
        {"a": "x"},
        [{"source_labels": ["m"], "target_label": "n", "action": "keepequal"}],
        {"a": "x"},
    ),
    (
        "dropequal-equal-drops",
        {"t": "1234", "p1": "1234"},
        [{"source_labels": ["t"], "target_label": "p1", "action": "dropequal"}],
        None,
    ),
    (
        "dropequal-differs-keeps",
        {"t": "1234", "p2": "5678"},
        [{"source_labels": ["t"], "target_label": "p2", "action": "dropequal"}],
        {"t": "1234", "p2": "5678"},
    ),
    (
        "hashmod-spec-value",
        {"__address__": "host-a.invalid:9100"},
        [
            {
                "source_labels": ["__address__"],
                "target_label": "h",
                "modulus": 1000,
                "action": "hashmod",
            }
        ],
        {"__address__": "host-a.invalid:9100", "h": "210"},
    ),
    (
        "hashmod-prometheus-baz",
        {"c": "baz"},
        [{"source_labels": ["c"], "target_label": "d", "modulus": 1000, "action": "hashmod"}],
        {"c": "baz", "d": "976"},
    ),
    (
        "hashmod-newline-value",
        {"a": "foo\nbar"},
        [{"source_labels": ["a"], "target_label": "b", "modulus": 1000, "action": "hashmod"}],
        {"a": "foo\nbar", "b": "734"},
    ),
    (
        "labelmap-prefix",
        {"a": "foo", "b1": "bar", "b2": "baz"},
        [{"regex": "(b.*)", "replacement": "bar_${1}", "action": "labelmap"}],
        {"a": "foo", "b1": "bar", "b2": "baz", "bar_b1": "bar", "bar_b2": "baz"},
    ),
    (
        "labelmap-strip-meta",
        {"a": "foo", "__meta_my_bar": "aaa", "__meta_other": "ccc"},
        [{"regex": "__meta_(my.*)", "action": "labelmap"}],
        {"a": "foo", "__meta_my_bar": "aaa", "__meta_other": "ccc", "my_bar": "aaa"},
    ),
    (
        "labelmap-snapshot-new-names-not-reexamined",
        {"a": "1"},
        [{"regex": "(.*)", "replacement": "x_$1", "action": "labelmap"}],
        {"a": "1", "x_a": "1"},
    ),
    (
        "labelmap-empty-expansion-creates-nothing",
        {"a": "1"},
        [{"regex": "(a)", "replacement": "$2", "action": "labelmap"}],
        {"a": "1"},
    ),
    (
        "labeldrop",
        {"a": "foo", "b1": "bar", "b2": "baz"},
        [{"regex": "(b.*)", "action": "labeldrop"}],
        {"a": "foo"},
    ),
    (
        "labeldrop-literal",
        {"a": "foo", "b": "x"},
        [{"regex": "b", "action": "labeldrop"}],
        {"a": "foo"},
    ),
    (
        "labelkeep",
        {"a": "foo", "b1": "bar", "b2": "baz"},
        [{"regex": "(b.*)", "action": "labelkeep"}],
        {"b1": "bar", "b2": "baz"},
    ),
    (
        "labelkeep-nothing-left-drops-set",
        {"a": "foo"},
        [{"regex": "zzz", "action": "labelkeep"}],
        None,
    ),
    (
        "labeldrop-then-replace-then-keep-issue-12283",
        {"__meta_port_name": "foo", "__meta_annotation_port": "9091"},
        [
            {"regex": "^__meta_port_name$", "action": "labeldrop"},
            {
                "source_labels": ["__meta_annotation_port"],
                "regex": "(.+)",
                "target_label": "__meta_port_name",
                "replacement": "metrics",
            },
            {"source_labels": ["__meta_port_name"], "regex": "^metrics$", "action": "keep"},
        ],
        {"__meta_annotation_port": "9091", "__meta_port_name": "metrics"},
    ),
    (
        "uppercase-and-lowercase",
        {"foo": "bAr123Foo"},
        [
            {"source_labels": ["foo"], "target_label": "up", "action": "uppercase"},
            {"source_labels": ["foo"], "target_label": "low", "action": "lowercase"},
        ],
        {"foo": "bAr123Foo", "up": "BAR123FOO", "low": "bar123foo"},
    ),
    (
        "lowercase-empty-value-deletes-target",
        {"t": "old"},
        [{"source_labels": ["m"], "target_label": "t", "action": "lowercase"}],
        None,
    ),
    (
        "empty-input-is-dropped",
        {},
        [{"source_labels": ["a"], "regex": ".*", "action": "keep"}],
        None,
    ),
    (
        "only-empty-values-is-dropped",
        {"a": ""},
        [{"source_labels": ["a"], "regex": ".*", "action": "keep"}],
        None,
    ),
    (
        "empty-value-counts-as-missing",
        {"a": "", "b": "x"},
        [{"source_labels": ["a"], "target_label": "c", "replacement": "was-${1}-"}],
        {"a": "", "b": "x", "c": "was--"},
    ),
]


@pytest.mark.parametrize(
    ("labels", "rules", "expected"), [c[1:] for c in ACTION_CASES], ids=[c[0] for c in ACTION_CASES]
)
def test_actions(
    labels: dict[str, str], rules: list[Rule], expected: dict[str, str] | None
) -> None:
    """Each action transforms or drops the label set exactly as Prometheus does."""
    assert run(labels, *rules) == expected


# --------------------------------------------------------------------------- templates

TEMPLATE_CASES: list[tuple[str, str, str, str, str | None]] = [
    ("dollar-one-x-is-group-1x", "(.*)", "nm", "$1x", None),
    ("braced-one-then-x", "(.*)", "nm", "${1}x", "nmx"),
    ("double-dollar-is-literal", "(.*)", "nm", "$$1", "$1"),
    ("double-dollar-then-group", "(.*)", "nm", "$$$1", "$nm"),
    ("named-group", "(?P<host>[^:]+):(?P<port>.*)", "h:80", "${port}-${host}", "80-h"),
    ("named-group-unbraced", "(?P<host>[^:]+):.*", "h:80", "$host!", "h!"),
    ("dollar-ten-is-group-ten", "(a)(b)(c)(d)(e)(f)(g)(h)(i)(j)", "abcdefghij", "$10", "j"),
    ("braced-one-then-zero", "(a)(b)(c)(d)(e)(f)(g)(h)(i)(j)", "abcdefghij", "${1}0", "a0"),
    ("dollar-ten-without-ten-groups-is-empty", "(a)", "a", "$10", None),
    ("dollar-at-end-is-literal", "(.*)", "v", "v$", "v$"),
    ("dollar-space-is-literal", "(.*)", "v", "$ $1", "$ v"),
    ("unclosed-brace-keeps-dollar", "(.*)", "v", "${1", "${1"),
    ("empty-braces-keep-dollar", "(.*)", "v", "${}", "${}"),
    ("dollar-zero-is-whole-match", "a(b)c", "abc", "<$0>", "<abc>"),
    ("leading-zero-is-a-name-not-number", "(.*)", "v", "$01", None),
    ("non-participating-group-is-empty", "(a)|(b)", "b", "[$1][$2]", "[][b]"),
    ("missing-name-is-empty", "(.*)", "v", "${nope}x", "x"),
    ("unicode-letters-extend-name", "(.*)", "v", "$1é", None),
    ("hyphen-ends-name", "(.*)", "v", "$1-x", "v-x"),
    ("duplicate-names-first-participating", "(?P<n>a)|(?P<n>b)", "b", "$n", "b"),
]


@pytest.mark.parametrize(
    ("regex", "value", "replacement", "expected"),
    [c[1:] for c in TEMPLATE_CASES],
    ids=[c[0] for c in TEMPLATE_CASES],
)
def test_replacement_templates(
    regex: str, value: str, replacement: str, expected: str | None
) -> None:
    """Replacement templates expand with Go ``regexp.Expand`` rules; an empty result deletes."""
    out = run(
        {"src": value},
        {"source_labels": ["src"], "regex": regex, "target_label": "x", "replacement": replacement},
    )
    assert out is not None
    assert out.get("x") == expected


def test_expand_template_public_helper() -> None:
    """``expand_template`` applies the same rules to a plain Python match."""
    match = compile_regex("(?P<a>x)(y)").fullmatch("xy")
    assert match is not None
    assert expand_template("$a-$2-${1}0-$$-$9", match) == "x-y-x0-$-"


def test_spec_11_9_dollar_one_x() -> None:
    """Spec §11 #9: ``$1x`` leaves ``x`` unset, ``${1}x`` gives ``<name>x``."""
    rule: Rule = {"source_labels": ["name"], "target_label": "x", "replacement": "$1x"}
    assert run({"name": "nm"}, rule) == {"name": "nm"}
    assert run({"name": "nm"}, {**rule, "replacement": "${1}x"}) == {"name": "nm", "x": "nmx"}


def test_spec_11_10_hashmod() -> None:
    """Spec §11 #10: hashmod of ``host-a.invalid:9100`` modulo 1000 is ``210``."""
    rule = {"source_labels": ["a"], "target_label": "h", "modulus": 1000, "action": "hashmod"}
    assert run({"a": "host-a.invalid:9100"}, rule) == {"a": "host-a.invalid:9100", "h": "210"}


def test_spec_11_11_keep_is_anchored() -> None:
    """Spec §11 #11: ``regex: n`` does not keep the value ``nm``."""
    assert run({"name": "nm"}, {"source_labels": ["name"], "regex": "n", "action": "keep"}) is None


# --------------------------------------------------------------------------- regex dialect

REGEX_MATCH_CASES: list[tuple[str, str, str, bool]] = [
    ("anchored-start", "b", "ab", False),
    ("anchored-end", "a", "ab", False),
    ("alternation-whole", "a|ab", "ab", True),
    ("dot-matches-newline", "a.b", "a\nb", True),
    ("dotall-can-be-turned-off", "(?-s:a.b)", "a\nb", False),
    ("dollar-is-end-of-text-not-before-newline", "a$", "a\n", False),
    ("multiline-dollar", "(?m)a$\n", "a\n", True),
    ("lower-z-end-of-text", r"a\z", "a", True),
    ("digit-is-ascii-only", r"\d", "٣", False),
    ("word-is-ascii-only", r"\w+", "é", False),
    ("not-word-matches-unicode", r"\W", "é", True),
    ("space-excludes-vertical-tab", r"\s", "\v", False),
    ("word-boundary-ascii", r"a\b", "a", True),
    ("case-insensitive-flag", "(?i)abc", "ABC", True),
    ("flag-mid-pattern-spans-alternation", "a(?i)b|c", "C", True),
    ("flag-mid-pattern-keeps-prefix-case", "a(?i)b|c", "AB", False),
    ("flag-group-scoped", "(?i:a)b", "AB", False),
    ("posix-alpha", "[[:alpha:]]+", "abcXYZ", True),
    ("posix-negated", "[[:^digit:]]", "5", False),
    ("posix-with-literals", "[[:digit:]x-]+", "1-x", True),
    ("unicode-letter-short", r"\pL+", "Σίσυφος", True),
    ("unicode-letter-braced", r"\p{L}", "1", False),
    ("unicode-number", r"\pN+", "٣²", True),
    ("unicode-not-number", r"\PN", "5", False),
    ("unicode-caret-negation", r"\p{^Lu}", "a", True),
    ("unicode-any", r"\p{Any}", "\n", True),
    ("quote-literal", r"\Qa.b*\E", "a.b*", True),
    ("quote-literal-not-regex", r"\Qa.b\E", "axb", False),
    ("brace-not-repeat-is-literal", "a{,3}", "a{,3}", True),
    ("repeat-range", "a{2,3}", "aaa", True),
    ("repeat-open", "a{2,}", "aaaaa", True),
    ("lazy-repeat", "(a+?)(a*)", "aaa", True),
    ("octal-escape-not-backreference", r"(a)\12", "a\n", True),
    ("hex-braced", r"\x{263a}", "☺", True),
    ("hex-two-digits", r"\x41", "A", True),
    ("named-group-angle", "(?<n>x)", "x", True),
    ("negated-class-matches-newline", "[^a]", "\n", True),
    ("class-with-bracket-literal", r"[\[\]]+", "[]", True),
    ("class-close-bracket-first", "[]a]+", "]a", True),
    ("empty-regex-matches-empty", "", "", True),
    ("empty-flags-group", "(?)a", "a", True),
]


@pytest.mark.parametrize(
    ("pattern", "value", "matches"),
    [c[1:] for c in REGEX_MATCH_CASES],
    ids=[c[0] for c in REGEX_MATCH_CASES],
)
def test_regex_translation(pattern: str, value: str, matches: bool) -> None:
    """RE2 patterns keep Go's meaning, anchored as ``^(?s:<regex>)$``."""
    assert (compile_regex(pattern).fullmatch(value) is not None) is matches


REGEX_REJECT_CASES: list[tuple[str, str, str]] = [
    ("backreference", r"(a)\1", "backreferences are not supported"),
    ("named-backreference", "(?P<n>a)(?P=n)", "backreferences and recursion are not supported"),
    ("lookahead", "a(?=b)", "lookaround is not supported"),
    ("negative-lookahead", "a(?!b)", "lookaround is not supported"),
    ("lookbehind", "(?<=a)b", "lookaround is not supported"),
    ("negative-lookbehind", "(?<!a)b", "lookaround is not supported"),
    ("atomic-group", "(?>a)", "atomic groups are not supported"),
    ("possessive", "a++", "invalid nested repetition operator: `++`"),
    ("stacked-stars", "a**", "invalid nested repetition operator: `**`"),
    ("upper-z", r"a\Z", r"invalid escape sequence: `\Z`"),
    ("comment-group", "(?#c)a", "invalid or unsupported Perl syntax"),
    ("ungreedy-flag", "(?U)a*", "ungreedy flag"),
    ("verbose-flag", "(?x)a", "invalid or unsupported Perl syntax"),
    ("unicode-script", r"\p{Greek}", "Unicode scripts are not supported"),
    ("unknown-posix-class", "[[:foo:]]", "invalid character class range"),
    ("repeat-over-1000", "a{1001}", "invalid repeat count"),
    ("repeat-min-over-max", "a{3,2}", "invalid repeat count"),
    ("repeat-of-4301-digits", "a{" + "9" * 4301 + "}", "invalid repeat count"),  # fuzzing
    ("repeat-max-of-4301-digits", "a{1," + "9" * 4301 + "}", "invalid repeat count"),
    ("missing-paren", "(a", "missing closing )"),
    ("unexpected-paren", "a)", "unexpected )"),
    ("missing-bracket", "[a", "missing closing ]"),
    ("reversed-range", "[z-a]", "invalid character class range"),
    ("nothing-to-repeat", "*a", "missing argument to repetition operator"),
    ("bad-named-capture", "(?P<a-b>x)", "invalid named capture"),
    ("unknown-escape", r"\C", "invalid escape sequence"),
    ("python-only-escape", r"\N{DASH}", "invalid escape sequence"),
    ("trailing-backslash", "a\\", "trailing backslash"),
    ("dangling-negation", "(?i-)a", "invalid or unsupported Perl syntax"),
]


@pytest.mark.parametrize(
    ("pattern", "message"),
    [c[1:] for c in REGEX_REJECT_CASES],
    ids=[c[0] for c in REGEX_REJECT_CASES],
)
def test_regex_rejections(pattern: str, message: str) -> None:
    """Constructs RE2 refuses are refused at load with a Go-style message."""
    with pytest.raises(ConfigError) as info:
        compile_regex(pattern)
    assert info.value.message.startswith("error parsing regexp: ")
    assert message in info.value.message


def test_regex_error_in_rule_names_the_key() -> None:
    """A bad regex in a rule is a ConfigError whose path is ``regex``."""
    with pytest.raises(ConfigError) as info:
        parse_rule({"source_labels": ["a"], "regex": "(a", "action": "keep"})
    assert info.value.path == "regex"
    assert "missing closing )" in info.value.message


# --------------------------------------------------------------------------- case mapping

CASE_CASES: list[tuple[str, str, str, str]] = [
    ("upper-sharp-s-unchanged", "upper", "straße", "STRAßE"),
    ("upper-ff-ligature-unchanged", "upper", "ﬀ", "ﬀ"),
    ("upper-ypogegrammeni-simple", "upper", "ᾳ", "ᾼ"),
    ("upper-n-apostrophe-unchanged", "upper", "ŉ", "ŉ"),
    ("upper-greek", "upper", "σς", "ΣΣ"),
    ("lower-dotted-capital-i", "lower", "İ", "i"),
    ("lower-final-sigma-is-sigma", "lower", "ΟΔΟΣ", "οδοσ"),
    ("lower-kelvin", "lower", "K", "k"),
    ("lower-ascii", "lower", "MiXeD-1", "mixed-1"),
]


@pytest.mark.parametrize(
    ("direction", "text", "expected"), [c[1:] for c in CASE_CASES], ids=[c[0] for c in CASE_CASES]
)
def test_go_case_mapping(direction: str, text: str, expected: str) -> None:
    """lowercase/uppercase map per code point like Go's ``unicode.ToLower/ToUpper`` (spec §12)."""
    convert = go_upper if direction == "upper" else go_lower
    assert convert(text) == expected
    action = "uppercase" if direction == "upper" else "lowercase"
    assert run({"a": text}, {"source_labels": ["a"], "target_label": "b", "action": action}) == {
        "a": text,
        "b": expected,
    }


# --------------------------------------------------------------------------- validation

VALIDATION_CASES: list[tuple[str, object, str, str, str]] = [
    (
        "null-target-rule",
        None,
        "target",
        "empty or null target relabeling rule in scrape config",
        "",
    ),
    (
        "null-metric-rule",
        None,
        "metric",
        "empty or null metric relabeling rule in scrape config",
        "",
    ),
    ("null-write-rule", None, "write", "empty or null relabeling rule in remote write config", ""),
    (
        "null-action",
        {"target_label": "a", "action": None},
        "target",
        "relabel action cannot be empty",
        "action",
    ),
    (
        "unknown-action",
        {"target_label": "a", "action": "repalce"},
        "target",
        'unknown relabel action "repalce"',
        "action",
    ),
    (
        "empty-string-action",
        {"target_label": "a", "action": ""},
        "target",
        'unknown relabel action ""',
        "action",
    ),
    (
        "hashmod-zero-modulus",
        {"target_label": "a", "action": "hashmod"},
        "target",
        "relabel configuration for hashmod requires non-zero modulus",
        "modulus",
    ),
    (
        "replace-needs-target",
        {"source_labels": ["a"]},
        "target",
        "relabel configuration for replace action requires 'target_label' value",
        "target_label",
    ),
    (
        "hashmod-needs-target",
        {"modulus": 3, "action": "hashmod"},
        "target",
        "relabel configuration for hashmod action requires 'target_label' value",
        "target_label",
    ),
    (
        "lowercase-needs-target",
        {"action": "lowercase"},
        "target",
        "relabel configuration for lowercase action requires 'target_label' value",
        "target_label",
    ),
    (
        "uppercase-needs-target",
        {"action": "uppercase"},
        "target",
        "relabel configuration for uppercase action requires 'target_label' value",
        "target_label",
    ),
    (
        "keepequal-needs-target",
        {"action": "keepequal"},
        "target",
        "relabel configuration for keepequal action requires 'target_label' value",
        "target_label",
    ),
    (
        "dropequal-needs-target",
        {"action": "dropequal"},
        "target",
        "relabel configuration for dropequal action requires 'target_label' value",
        "target_label",
    ),
    (
        "lowercase-no-replacement",
        {"target_label": "a", "replacement": "x", "action": "lowercase"},
        "target",
        "'replacement' can not be set for lowercase action",
        "replacement",
    ),
    (
        "uppercase-no-replacement",
        {"target_label": "a", "replacement": "x", "action": "uppercase"},
        "target",
        "'replacement' can not be set for uppercase action",
        "replacement",
    ),
    (
        "keepequal-no-replacement",
        {"target_label": "a", "replacement": "x", "action": "keepequal"},
        "target",
        "'replacement' can not be set for keepequal action",
        "replacement",
    ),
    (
        "dropequal-no-replacement",
        {"target_label": "a", "replacement": "x", "action": "dropequal"},
        "target",
        "'replacement' can not be set for dropequal action",
        "replacement",
    ),
    (
        "labelmap-empty-replacement",
        {"regex": "(.*)", "replacement": "", "action": "labelmap"},
        "target",
        "\"\" is invalid 'replacement' for labelmap action",
        "replacement",
    ),
    (
        "keepequal-with-regex",
        {"target_label": "a", "regex": "(.*)", "action": "keepequal"},
        "target",
        "keepequal action requires only 'source_labels' and `target_label`, and no other fields",
        "",
    ),
    (
        "dropequal-with-separator",
        {"target_label": "a", "separator": ",", "action": "dropequal"},
        "target",
        "dropequal action requires only 'source_labels' and `target_label`, and no other fields",
        "",
    ),
    (
        "dropequal-with-modulus",
        {"target_label": "a", "modulus": 2, "action": "dropequal"},
        "target",
        "dropequal action requires only 'source_labels' and `target_label`, and no other fields",
        "",
    ),
    (
        "labeldrop-with-source-labels",
        {"source_labels": ["a"], "regex": "a", "action": "labeldrop"},
        "target",
        "labeldrop action requires only 'regex', and no other fields",
        "",
    ),
    (
        "labelkeep-with-empty-source-list",
        {"source_labels": [], "regex": "a", "action": "labelkeep"},
        "target",
        "labelkeep action requires only 'regex', and no other fields",
        "",
    ),
    (
        "labelkeep-with-target",
        {"target_label": "x", "regex": "a", "action": "labelkeep"},
        "target",
        "labelkeep action requires only 'regex', and no other fields",
        "",
    ),
    (
        "labeldrop-with-replacement",
        {"replacement": "x", "regex": "a", "action": "labeldrop"},
        "target",
        "labeldrop action requires only 'regex', and no other fields",
        "",
    ),
    (
        "unknown-key",
        {"target_label": "a", "regexp": "x"},
        "target",
        "unknown field 'regexp' in relabel rule",
        "regexp",
    ),
    ("not-a-mapping", ["a"], "target", "relabel rule must be a mapping, got a list", ""),
    (
        "source-labels-scalar",
        {"source_labels": "a", "target_label": "b"},
        "target",
        "source_labels must be a list of label names, got str",
        "source_labels",
    ),
    (
        "source-label-empty-name",
        {"source_labels": [""], "target_label": "b"},
        "target",
        '"" is not a valid label name',
        "source_labels[0]",
    ),
    (
        "modulus-string",
        {"modulus": "3", "target_label": "b", "action": "hashmod"},
        "target",
        "modulus must be an integer in [0, 2^64), got '3'",
        "modulus",
    ),
    (
        "modulus-negative",
        {"modulus": -1, "target_label": "b", "action": "hashmod"},
        "target",
        "modulus must be an integer in [0, 2^64), got -1",
        "modulus",
    ),
    (
        "target-label-bool",
        {"target_label": True},
        "target",
        "target_label must be a string, got bool",
        "target_label",
    ),
    (
        "regex-list",
        {"target_label": "a", "regex": ["x"]},
        "target",
        "regex must be a string, got a list",
        "regex",
    ),
]


@pytest.mark.parametrize(
    ("data", "context", "message", "path"),
    [c[1:] for c in VALIDATION_CASES],
    ids=[c[0] for c in VALIDATION_CASES],
)
def test_validation_messages(data: object, context: str, message: str, path: str) -> None:
    """Invalid rules are refused with Prometheus's message and the key inside the rule."""
    with pytest.raises(ConfigError) as info:
        parse_rule(data, context=context)
    assert info.value.message == message
    assert info.value.path == path


VALID_RULES: list[tuple[str, Rule, RelabelConfig]] = [
    ("defaults", {"target_label": "a"}, RelabelConfig(target_label="a")),
    ("regex-number", {"target_label": "a", "regex": 1}, RelabelConfig(target_label="a", regex="1")),
    (
        "replacement-number",
        {"target_label": "port", "replacement": 80},
        RelabelConfig(target_label="port", replacement="80"),
    ),
    (
        "action-mixed-case",
        {"target_label": "a", "action": "Replace"},
        RelabelConfig(target_label="a"),
    ),
    (
        "null-fields-are-zero",
        {"target_label": "a", "separator": None, "source_labels": None},
        RelabelConfig(target_label="a", separator=""),
    ),
    (
        "keepequal-explicit-defaults",
        {
            "source_labels": ["a"],
            "target_label": "b",
            "separator": ";",
            "replacement": "$1",
            "action": "keepequal",
        },
        RelabelConfig(source_labels=("a",), target_label="b", action="keepequal"),
    ),
    ("utf8-target", {"target_label": "utf-8.label"}, RelabelConfig(target_label="utf-8.label")),
    ("template-target", {"target_label": "-${3}"}, RelabelConfig(target_label="-${3}")),
    (
        "lowercase-template-target-utf8",
        {"target_label": "${3}", "action": "lowercase"},
        RelabelConfig(target_label="${3}", action="lowercase"),
    ),
    (
        "labelmap-default-replacement",
        {"regex": "__meta_(.+)", "action": "labelmap"},
        RelabelConfig(regex="__meta_(.+)", action="labelmap"),
    ),
    (
        "hashmod-max-modulus",
        {"target_label": "h", "modulus": 2**64 - 1, "action": "hashmod"},
        RelabelConfig(target_label="h", modulus=2**64 - 1, action="hashmod"),
    ),
]


@pytest.mark.parametrize(
    ("data", "expected"), [c[1:] for c in VALID_RULES], ids=[c[0] for c in VALID_RULES]
)
def test_parse_valid_rules(data: Rule, expected: RelabelConfig) -> None:
    """Valid rules parse into a RelabelConfig with Prometheus's defaults filled in."""
    assert parse_rule(data) == expected


def test_compile_rules_validates_programmatic_rules() -> None:
    """Rules built in code are validated by compile_rules, never failing mid-relabel."""
    with pytest.raises(ConfigError, match="non-zero modulus"):
        compile_rules([RelabelConfig(target_label="h", action="hashmod")])
    with pytest.raises(ConfigError, match="missing closing"):
        compile_rules([RelabelConfig(target_label="h", regex="(")])


def test_relabeler_truthiness_and_reuse() -> None:
    """An empty Relabeler is falsy; a compiled one is reused across label sets."""
    assert not compile_rules([])
    relabeler = compile_rules([parse_rule({"target_label": "env", "replacement": "prod"})])
    assert relabeler
    assert len(relabeler) == 1
    assert isinstance(relabeler, Relabeler)
    assert relabeler.process({"a": "1"}) == {"a": "1", "env": "prod"}
    assert relabeler.process({"b": "2"}) == {"b": "2", "env": "prod"}


def test_process_mutates_and_relabel_copies() -> None:
    """``process`` mutates the builder dict it is given; ``relabel`` leaves its input alone."""
    rules = compile_rules([parse_rule({"target_label": "x", "replacement": "1"})])
    builder = {"a": "1"}
    assert rules.process(builder) is builder
    original = {"a": "1"}
    assert relabel(original, rules) == {"a": "1", "x": "1"}
    assert original == {"a": "1"}


def test_empty_rule_list_keeps_non_empty_set() -> None:
    """No rules: a non-empty set is kept, an empty one is still dropped."""
    assert relabel({"a": "1"}, []) == {"a": "1"}
    assert relabel({}, []) is None


# --------------------------------------------------------------------------- properties


@given(template=st.text(alphabet="$12{}ab_é-", max_size=20), value=st.text(max_size=10))
def test_template_expansion_never_raises(template: str, value: str) -> None:
    """Any template expands without raising, whatever mix of ``$``, braces and names it has."""
    relabeler = compile_rules(
        [
            RelabelConfig(
                source_labels=("s",),
                regex="(.)?(?P<a>.*)",
                target_label="t",
                replacement=template or "x",
            )
        ]
    )
    out = relabeler.process({"s": value, "keep": "1"})
    assert out is not None
    assert "t" not in out or out["t"] != ""


@given(value=st.text(), modulus=st.integers(min_value=1, max_value=2**64 - 1))
def test_hashmod_in_range(value: str, modulus: int) -> None:
    """hashmod always yields a decimal in ``[0, modulus)`` equal to the md5 tail mod modulus."""
    out = relabel(
        {"s": value},
        [RelabelConfig(source_labels=("s",), target_label="h", modulus=modulus, action="hashmod")],
    )
    assert out is not None
    result = int(out["h"])
    assert 0 <= result < modulus
    assert result == int.from_bytes(hashlib.md5(value.encode()).digest()[8:], "big") % modulus


@given(text=st.text())
def test_case_mapping_is_per_code_point(text: str) -> None:
    """Go case mapping never changes the number of code points."""
    assert len(go_upper(text)) == len(text)
    assert len(go_lower(text)) == len(text)
