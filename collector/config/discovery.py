"""Step 3 of a load, service discovery area: a scrape config's ``*_sd_configs`` and targets.

`collector.config.scrape` hands each ``static_configs``, ``file_sd_configs``,
``http_sd_configs``, ``kubernetes_sd_configs`` and ``kubelet_sd_configs`` list to
`parse_sd_list` with the entry parser from here. Each entry is checked in full (every problem
reported, see `collector.config.section`); an entry that is not even a mapping is reported once
and left out. The resulting `StaticConfig` / `FileSDConfig` / `HTTPSDConfig` /
`KubernetesSDConfig` / `KubeletSDConfig` values are what `collector.discovery` runs.

Prometheus counterpart: the ``SDConfig.UnmarshalYAML`` methods of ``discovery/file``,
``discovery/http`` and ``discovery/kubernetes`` (selector syntax: apimachinery ``labels.Parse``
and ``fields.ParseSelector``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Literal, TypeVar, cast
from urllib.parse import urlsplit

from collector.config.http_client import (
    HTTP_KEYS,
    HTTP_UNSUPPORTED,
    check_http_url,
    parse_http_client,
    refuse_unhonoured,
)
from collector.config.schema import (
    AttachMetadata,
    FileSDConfig,
    HTTPClientConfig,
    HTTPSDConfig,
    KubeletSDConfig,
    KubernetesSDConfig,
    KubernetesSelector,
    StaticConfig,
)
from collector.config.section import Section, Source, valid_utf8
from collector.config.yaml_tree import Tree, idx, join
from collector.model.labels import is_valid_label_name

__all__ = [
    "SD_UNSUPPORTED",
    "parse_file_sd",
    "parse_http_sd",
    "parse_kubelet_sd",
    "parse_kubernetes_sd",
    "parse_sd_list",
    "parse_static_config",
]

_T = TypeVar("_T")

SD_UNSUPPORTED = frozenset(
    f"{name}_sd_configs"
    for name in (
        "azure",
        "consul",
        "digitalocean",
        "docker",
        "dockerswarm",
        "dns",
        "ec2",
        "eureka",
        "gce",
        "hetzner",
        "ionos",
        "kuma",
        "lightsail",
        "linode",
        "marathon",
        "nerve",
        "nomad",
        "openstack",
        "ovhcloud",
        "puppetdb",
        "scaleway",
        "serverset",
        "stackit",
        "triton",
        "uyuni",
        "vultr",
    )
)
"""Discovery mechanisms Prometheus has and collector refuses when they carry a value."""

# Glob shape Prometheus accepts: at most one ``*``, not in a directory part, a known extension.
_PAT_FILE_SD_NAME = re.compile(r"[^*]*(\*[^/]*)?\.(json|yml|yaml|JSON|YML|YAML)")

_K8S_ROLES = ("pod", "service", "endpoints", "endpointslice", "node", "ingress")
# Which resources a discovery role may filter with ``selectors`` (spec §2.1).
_K8S_SELECTOR_ROLES: Mapping[str, tuple[str, ...]] = {
    "pod": ("pod", "node"),
    "service": ("service",),
    "endpoints": ("pod", "service", "endpoints"),
    "endpointslice": ("pod", "service", "endpointslice"),
    "node": ("node",),
    "ingress": ("ingress",),
}
_K8S_KEYS = (
    frozenset(
        {"role", "api_server", "kubeconfig_file", "namespaces", "selectors", "attach_metadata"}
    )
    | HTTP_KEYS
)

# HTTP client keys the discovery clients do not act on (issue 12: refused, not ignored). Only
# the scraper applies ``no_proxy`` and sends ``proxy_connect_header``; the Kubernetes client
# builds its own TLS context (no version bounds) and always follows redirects.
_SD_UNHONOURED: Mapping[str, str] = {
    "no_proxy": "service discovery requests do not apply it (only scrapes do)",
    "proxy_connect_header": "service discovery requests do not send it (only scrapes do)",
}
_K8S_UNHONOURED: Mapping[str, str] = {
    **_SD_UNHONOURED,
    "follow_redirects": "the Kubernetes client always follows redirects",
    "tls_config.min_version": "the Kubernetes client does not bound the TLS version",
    "tls_config.max_version": "the Kubernetes client does not bound the TLS version",
}
_ATTACH_UNHONOURED = ("deployment", "job", "cronjob")


def parse_sd_list(
    s: Section, key: str, parse: Callable[[Source, Tree, str], _T | None]
) -> tuple[_T, ...]:
    """An ``*_configs`` list; a null or empty entry is refused like Prometheus does."""
    out: list[_T] = []
    for i, raw in enumerate(s.list_(key)):
        path = idx(s.at(key), i)
        if raw is None or raw == {}:
            s.src.report(f"empty or null section in {key}", path)
            continue
        parsed = parse(s.src, raw, path)
        if parsed is not None:
            out.append(parsed)
    return tuple(out)


def parse_static_config(src: Source, raw: Tree, path: str) -> StaticConfig | None:
    """One ``static_configs`` entry."""
    s = Section(raw, path, src=src, kind="static_config", known=frozenset({"targets", "labels"}))
    if not s.valid:
        return None
    labels: list[tuple[str, str]] = []
    for name, value in s.str_map("labels"):
        if not is_valid_label_name(name):
            src.report(f'"{name}" is not a valid label name', join(s.at("labels"), name))
        elif not valid_utf8(value):
            src.report(f'"{value}" is not a valid label value', join(s.at("labels"), name))
        else:
            labels.append((name, value))
    return StaticConfig(targets=tuple(s.str_list("targets")), labels=tuple(sorted(labels)))


def parse_file_sd(src: Source, raw: Tree, path: str) -> FileSDConfig | None:
    """One ``file_sd_configs`` entry."""
    s = Section(
        raw, path, src=src, kind="file_sd_config", known=frozenset({"files", "refresh_interval"})
    )
    if not s.valid:
        return None
    files = s.str_list("files")
    if not files and "files" not in s.failed:
        s.report("file service discovery config must contain at least one path name")
    for i, name in enumerate(files):
        if _PAT_FILE_SD_NAME.fullmatch(name) is None:
            src.report(f'path name "{name}" is not valid for file discovery', idx(s.at("files"), i))
    refresh = s.duration("refresh_interval")
    return FileSDConfig(
        files=tuple(src.join_dir(f) for f in files),
        refresh_interval=300.0 if refresh is None else refresh,
    )


def parse_http_sd(src: Source, raw: Tree, path: str) -> HTTPSDConfig | None:
    """One ``http_sd_configs`` entry."""
    s = Section(
        raw,
        path,
        src=src,
        kind="http_sd_config",
        known=frozenset({"url", "refresh_interval"}) | HTTP_KEYS,
        unsupported=HTTP_UNSUPPORTED,
    )
    if not s.valid:
        return None
    url = s.str_("url")
    if not url:
        if "url" not in s.failed:
            s.report("URL is missing", "url" if "url" in s.raw else None)
    else:
        _check_sd_url(s, url)
    http_client = parse_http_client(s, HTTPClientConfig())
    refuse_unhonoured(s, http_client, HTTPClientConfig(), _SD_UNHONOURED)
    refresh = s.duration("refresh_interval")
    return HTTPSDConfig(
        url=url, refresh_interval=60.0 if refresh is None else refresh, http_client=http_client
    )


def parse_kubelet_sd(src: Source, raw: Tree, path: str) -> KubeletSDConfig | None:
    """One ``kubelet_sd_configs`` entry (collector extension): ``url``, ``refresh_interval``
    and the HTTP client keys of ``http_sd_configs``.

    Without ``url`` the kubelet is ``https://$NODE_NAME:10250``: in a DaemonSet ``NODE_NAME``
    comes from the downward API (``spec.nodeName``), and kubelet serving certificates name the
    node, not ``localhost`` (which is the agent's own pod without host networking).
    """
    s = Section(
        raw,
        path,
        src=src,
        kind="kubelet_sd_config",
        known=frozenset({"url", "refresh_interval"}) | HTTP_KEYS,
        unsupported=HTTP_UNSUPPORTED,
    )
    if not s.valid:
        return None
    url = s.str_("url")
    if not url and "url" not in s.failed:
        node = src.env.get("NODE_NAME", "")  # the environment the config is expanded from
        if node:
            url = f"https://{node}:10250"
        else:
            s.report("url is missing and NODE_NAME is not set to default it")
    elif url:
        _check_sd_url(s, url)
    http_client = parse_http_client(s, HTTPClientConfig())
    refuse_unhonoured(s, http_client, HTTPClientConfig(), _SD_UNHONOURED)
    refresh = s.duration("refresh_interval")
    return KubeletSDConfig(
        url=url, refresh_interval=15.0 if refresh is None else refresh, http_client=http_client
    )


def _check_sd_url(s: Section, url: str) -> None:
    """``http_sd_configs`` URL rules, with Prometheus's messages."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        s.fail(f"invalid URL {url!r}: {exc}", "url")
        return
    if parts.scheme not in ("http", "https"):
        s.fail("URL scheme must be 'http' or 'https'", "url")
    elif not parts.netloc:
        s.fail("host is missing in URL", "url")


def parse_kubernetes_sd(src: Source, raw: Tree, path: str) -> KubernetesSDConfig | None:
    """One ``kubernetes_sd_configs`` entry with every check of spec §2.1."""
    s = Section(
        raw,
        path,
        src=src,
        kind="kubernetes_sd_config",
        known=_K8S_KEYS,
        unsupported=HTTP_UNSUPPORTED,
    )
    if not s.valid:
        return None
    role = s.str_("role")
    if not role:
        if "role" not in s.failed:
            s.report("role missing (one of: pod, service, endpoints, endpointslice, node, ingress)")
    elif role not in _K8S_ROLES:
        s.fail(f'unknown Kubernetes SD role "{role}"', "role")
    http_client = parse_http_client(s, HTTPClientConfig())
    refuse_unhonoured(s, http_client, HTTPClientConfig(), _K8S_UNHONOURED)
    custom_http = http_client != HTTPClientConfig()
    api_server = s.str_("api_server")
    kubeconfig = s.str_("kubeconfig_file")
    ns = s.section(
        "namespaces", kind="namespace_discovery", known=frozenset({"names", "own_namespace"})
    )
    own_namespace = ns.bool_("own_namespace", False)
    if api_server:
        check_http_url(s, "api_server", api_server)
    if api_server and kubeconfig:
        s.report("cannot use 'kubeconfig_file' and 'api_server' simultaneously")
    if kubeconfig and custom_http:
        s.report("cannot use a custom HTTP client configuration together with 'kubeconfig_file'")
    elif not api_server and custom_http:  # the line above already said what to do
        s.report(
            "to use custom HTTP client configuration please provide the 'api_server' URL explicitly"
        )
    if api_server and own_namespace:
        s.report("cannot use 'api_server' and 'namespaces.own_namespace' simultaneously")
    if kubeconfig and own_namespace:
        s.report("cannot use 'kubeconfig_file' and 'namespaces.own_namespace' simultaneously")

    selectors = _parse_selectors(s, role if "role" not in s.failed else "")
    am = s.section(
        "attach_metadata",
        kind="attach_metadata",
        known=frozenset({"node", "namespace", *_ATTACH_UNHONOURED}),
    )
    for key in _ATTACH_UNHONOURED:
        if am.bool_(key, False):
            am.unsupported(key, f"discovery does not attach {key} metadata; only false is accepted")
    return KubernetesSDConfig(
        role=cast(
            "Literal['node', 'pod', 'service', 'endpoints', 'endpointslice', 'ingress']", role
        ),
        api_server=api_server,
        kubeconfig_file=src.join_dir(kubeconfig),
        namespaces=tuple(ns.str_list("names")),
        own_namespace=own_namespace,
        selectors=selectors,
        attach_metadata=AttachMetadata(
            node=am.bool_("node", False),
            namespace=am.bool_("namespace", False),
            # deployment, job and cronjob stay False: true is refused above.
        ),
        http_client=http_client,
    )


def _parse_selectors(s: Section, role: str) -> tuple[KubernetesSelector, ...]:
    """``selectors`` of a discovery ``role`` ("" when the role itself is wrong: not checked)."""
    selectors: list[KubernetesSelector] = []
    seen_roles: set[str] = set()
    allowed = _K8S_SELECTOR_ROLES.get(role)
    for i, raw_sel in enumerate(s.list_("selectors")):
        sel = Section(
            raw_sel,
            idx(s.at("selectors"), i),
            src=s.src,
            kind="selector_config",
            known=frozenset({"role", "label", "field"}),
        )
        if not sel.valid:
            continue
        sel_role = sel.str_("role")
        if sel_role and sel_role not in _K8S_ROLES:
            sel.fail(f'unknown Kubernetes SD role "{sel_role}"', "role")
        elif sel_role in seen_roles:
            sel.fail(f"duplicated selector role: {sel_role}", "role")
        elif allowed is not None and sel_role not in allowed and "role" not in sel.failed:
            sel.report(
                f"{role} role supports only {', '.join(allowed)} selectors",
                "role" if "role" in sel.raw else None,
            )
        seen_roles.add(sel_role)
        label, field_sel = sel.str_("label"), sel.str_("field")
        problem = _label_selector_problem(label)
        if problem:
            sel.fail(f'invalid label selector "{label}": {problem}', "label")
        problem = _field_selector_problem(field_sel)
        if problem:
            sel.fail(f'invalid field selector "{field_sel}": {problem}', "field")
        selectors.append(KubernetesSelector(role=sel_role, label=label, field=field_sel))
    return tuple(selectors)


# Kubernetes selector syntax (apimachinery ``labels.Parse`` / ``fields.ParseSelector``), checked
# only as far as needed to refuse what the API server would refuse.
_K8S_NAME = r"[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_K8S_PREFIX = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*"
_K8S_KEY = rf"(?:{_K8S_PREFIX}/)?{_K8S_NAME}"
_K8S_VALUE = rf"(?:{_K8S_NAME})?"
_LABEL_REQUIREMENT = re.compile(
    rf"\s*(?:!\s*{_K8S_KEY}"
    rf"|{_K8S_KEY}\s*(?:(?:==|=|!=)\s*{_K8S_VALUE}|[<>]\s*-?[0-9]+"
    rf"|\s+(?:in|notin)\s*\(\s*{_K8S_VALUE}(?:\s*,\s*{_K8S_VALUE})*\s*\))?)\s*"
)


def _split_top_level(s: str) -> Iterator[str]:
    """Split a label selector on commas outside parentheses."""
    depth = 0
    start = 0
    for i, ch in enumerate(s):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            yield s[start:i]
            start = i + 1
    yield s[start:]


def _label_selector_problem(selector: str) -> str:
    """Why a Kubernetes label selector is invalid, or "" when it is fine (or empty)."""
    if not selector.strip():
        return ""
    for requirement in _split_top_level(selector):
        if not requirement.strip():
            return "empty requirement"
        if _LABEL_REQUIREMENT.fullmatch(requirement) is None:
            return f"unable to parse requirement {requirement.strip()!r}"
        key = re.split(r"[\s!=<>]", requirement.strip().lstrip("!").strip(), maxsplit=1)[0]
        if "/" in key and len(key.split("/", 1)[0]) > 253:
            return f"prefix part of {key!r} must be no more than 253 characters"
    return ""


def _field_selector_problem(selector: str) -> str:
    """Why a Kubernetes field selector is invalid, or "" when it is fine (or empty)."""
    if not selector:
        return ""
    for term in re.split(r"(?<!\\),", selector):
        match = re.search(r"!=|==|=", term)
        if match is None or match.start() == 0:
            return f"can't understand {term!r}"
    return ""
