"""Step 3 of a load, HTTP client area: the inline ``http_config`` keys and URL checks.

Scrape configs, ``http_sd_configs``, ``kubernetes_sd_configs`` and ``remote_write`` all carry the
same inline HTTP client block (auth, TLS, proxy, headers); `parse_http_client` reads it from
their `Section` into an `HTTPClientConfig`, reporting every rule it breaks. Also here: the URL
helpers the other areas share (`check_http_url`, `redact_url`) and the reserved header sets.

Prometheus counterpart: ``prometheus/common/config/http_config.go`` (``HTTPClientConfig.Validate``,
``TLSConfig.Validate``, ``ReservedHeaders``).
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from collector.config.schema import Authorization, BasicAuth, HTTPClientConfig, TLSConfig
from collector.config.section import Section, names
from collector.config.yaml_tree import join

__all__ = [
    "HTTP_KEYS",
    "HTTP_UNSUPPORTED",
    "RESERVED_WRITE_HEADERS",
    "check_http_url",
    "parse_http_client",
    "redact_url",
    "refuse_unhonoured",
]

HTTP_KEYS = names(
    """
    basic_auth authorization bearer_token bearer_token_file tls_config proxy_url
    no_proxy proxy_from_environment proxy_connect_header follow_redirects enable_http2
    http_headers
    """
)
"""The inline HTTP client keys every section with an HTTP client accepts."""

HTTP_UNSUPPORTED = frozenset({"oauth2"})
"""HTTP client keys Prometheus knows and collector refuses when they carry a value."""

# remote_write ``headers`` may not override these (spec §6.1); Authorization has its own message.
RESERVED_WRITE_HEADERS = frozenset(
    h.lower()
    for h in (
        "Host",
        "Content-Encoding",
        "Content-Length",
        "Content-Type",
        "User-Agent",
        "Connection",
        "Keep-Alive",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "WWW-Authenticate",
        "Accept-Encoding",
        "X-Prometheus-Remote-Write-Version",
        "X-Prometheus-Remote-Read-Version",
        "X-Amz-Date",
        "X-Amz-Security-Token",
        "X-Amz-Content-Sha256",
    )
)
# ``http_headers`` may not set these (prometheus/common ``ReservedHeaders``): the remote-write
# set plus the two that scraping owns.
_RESERVED_HTTP_HEADERS = RESERVED_WRITE_HEADERS | {
    "authorization",
    "x-prometheus-scrape-timeout-seconds",
}
_TLS_VERSIONS = ("TLS10", "TLS11", "TLS12", "TLS13")


def parse_http_client(s: Section, default: HTTPClientConfig) -> HTTPClientConfig:
    """The inline HTTP client keys of section ``s`` (prometheus/common ``Validate``)."""
    bearer = s.str_("bearer_token")
    bearer_file = s.str_("bearer_token_file")
    # ``basic_auth:`` (null) is "not configured"; ``basic_auth: {}`` is configured, empty.
    basic = _parse_basic_auth(s) if s.has("basic_auth") else None
    if bearer and bearer_file:
        s.report("at most one of bearer_token & bearer_token_file must be configured")
    if basic is not None and (bearer or bearer_file):
        s.report(
            "at most one of basic_auth, oauth2, bearer_token & bearer_token_file must be configured"
        )
    authorization: Authorization | None = None
    if s.get("authorization") is not None:
        authorization = _parse_authorization(s, bearer=bool(bearer or bearer_file))
        if basic is not None:
            s.report("at most one of basic_auth, oauth2 & authorization must be configured")
    elif bearer:
        authorization = Authorization(credentials=bearer)
    elif bearer_file:
        authorization = Authorization(credentials_file=s.src.join_dir(bearer_file))

    proxy_url = s.str_("proxy_url")
    if proxy_url:
        check_http_url(s, "proxy_url", proxy_url)
    no_proxy = s.str_("no_proxy")
    from_env = s.bool_("proxy_from_environment", False)
    connect_header = s.str_lists_map("proxy_connect_header")
    if connect_header and not from_env and not proxy_url:
        s.report(
            "if proxy_connect_header is configured, proxy_url or proxy_from_environment must "
            "also be configured"
        )
    if from_env and proxy_url:
        s.report("if proxy_from_environment is configured, proxy_url must not be configured")
    if from_env and no_proxy:
        s.report("if proxy_from_environment is configured, no_proxy must not be configured")
    if no_proxy and not proxy_url:
        s.report("if no_proxy is configured, proxy_url must also be configured")
    headers = _parse_http_headers(s)
    return HTTPClientConfig(
        basic_auth=basic,
        authorization=authorization,
        tls_config=_parse_tls(s),
        proxy_url=proxy_url,
        no_proxy=no_proxy,
        proxy_from_environment=from_env,
        proxy_connect_header=tuple(connect_header),
        follow_redirects=s.bool_("follow_redirects", default.follow_redirects),
        enable_http2=s.bool_("enable_http2", default.enable_http2),
        http_headers=headers,
    )


def refuse_unhonoured(
    s: Section, hc: HTTPClientConfig, default: HTTPClientConfig, unhonoured: Mapping[str, str]
) -> None:
    """Refuse the HTTP client keys this section's client does not act on (issue 12).

    Every section parses the whole inline block, but each client (scrape, SD, remote write,
    Kubernetes) honours only part of it. ``unhonoured`` maps a key (``tls_config.min_version``
    for a nested one) to why it is refused; a value equal to ``default``'s is a no-op and
    loads, so Prometheus files that spell out defaults still load.
    """
    for key, why in unhonoured.items():
        block, _, name = key.rpartition(".")
        value = getattr(hc.tls_config if block else hc, name)
        if value != getattr(default.tls_config if block else default, name):
            s.unsupported(key, why)


def _parse_authorization(s: Section, *, bearer: bool) -> Authorization:
    """``authorization``; ``bearer`` says whether a legacy bearer token is set beside it."""
    a = s.section(
        "authorization",
        kind="authorization",
        known=frozenset({"type", "credentials", "credentials_file"}),
        unsupported=frozenset({"credentials_ref"}),
    )
    if bearer:
        s.report("authorization is not compatible with bearer_token & bearer_token_file")
    credentials, credentials_file = a.str_("credentials"), a.str_("credentials_file")
    if credentials and credentials_file:
        a.report("at most one of authorization credentials & credentials_file must be configured")
    auth_type = a.str_("type").strip() or "Bearer"
    if auth_type.lower() == "basic":
        a.report('authorization type cannot be set to "basic", use "basic_auth" instead', "type")
    return Authorization(
        type=auth_type,
        credentials=credentials,
        credentials_file=s.src.join_dir(credentials_file),
    )


def _parse_http_headers(s: Section) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``http_headers``: inline ``values`` only; reserved headers are refused."""
    headers: list[tuple[str, tuple[str, ...]]] = []
    for name, raw_header in s.mapping("http_headers").items():
        hpath = join(s.at("http_headers"), name)
        if name.lower() in _RESERVED_HTTP_HEADERS:
            s.src.report(f'setting header "{_canonical_header(name)}" is not allowed', hpath)
            continue
        h = Section(
            raw_header,
            hpath,
            src=s.src,
            kind="header",
            known=frozenset({"values"}),
            unsupported=frozenset({"secrets", "files"}),
        )
        headers.append((name, tuple(h.str_list("values"))))
    return tuple(headers)


def _parse_basic_auth(s: Section) -> BasicAuth:
    """``basic_auth``: one of each username/password pair."""
    b = s.section(
        "basic_auth",
        kind="basic_auth",
        known=frozenset({"username", "username_file", "password", "password_file"}),
        unsupported=frozenset({"username_ref", "password_ref"}),
    )
    username, username_file = b.str_("username"), b.str_("username_file")
    password, password_file = b.str_("password"), b.str_("password_file")
    if username and username_file:
        b.report("at most one of basic_auth username & username_file must be configured")
    if password and password_file:
        b.report("at most one of basic_auth password & password_file must be configured")
    return BasicAuth(
        username=username,
        username_file=s.src.join_dir(username_file),
        password=password,
        password_file=s.src.join_dir(password_file),
    )


def _parse_tls(s: Section) -> TLSConfig:
    """``tls_config`` (prometheus/common ``TLSConfig.Validate``)."""
    t = s.section(
        "tls_config",
        kind="tls_config",
        known=names(
            """
            ca ca_file cert cert_file key key_file server_name
            insecure_skip_verify min_version max_version
            """
        ),
        unsupported=frozenset({"ca_ref", "cert_ref", "key_ref"}),
    )
    values = {k: t.str_(k) for k in ("ca", "ca_file", "cert", "cert_file", "key", "key_file")}
    for inline in ("ca", "cert", "key"):
        if values[inline] and values[f"{inline}_file"]:
            t.report(f"at most one of {inline} and {inline}_file must be configured")
    has_cert = bool(values["cert"] or values["cert_file"])
    has_key = bool(values["key"] or values["key_file"])
    if has_cert and not has_key:
        t.report(
            "exactly one of key or key_file must be configured when a client certificate is "
            "configured"
        )
    if has_key and not has_cert:
        t.report(
            "exactly one of cert or cert_file must be configured when a client key is configured"
        )
    versions = {}
    for key in ("min_version", "max_version"):
        version = t.str_(key)
        if version and version not in _TLS_VERSIONS:
            t.fail(f"unknown TLS version: {version}", key)
            version = ""
        versions[key] = version
    join_dir = s.src.join_dir
    return TLSConfig(
        ca=values["ca"],
        ca_file=join_dir(values["ca_file"]),
        cert=values["cert"],
        cert_file=join_dir(values["cert_file"]),
        key=values["key"],
        key_file=join_dir(values["key_file"]),
        server_name=t.str_("server_name"),
        insecure_skip_verify=t.bool_("insecure_skip_verify", False),
        min_version=versions["min_version"],
        max_version=versions["max_version"],
    )


# ------------------------------------------------------------------------------ URLs, headers


def check_http_url(s: Section, key: str, url: str) -> bool:
    """Collector extension: a URL we will connect to must be absolute http(s); reports if not."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        s.fail(f'invalid URL "{url}": {exc}', key)
        return False
    if parts.scheme not in ("http", "https") or not parts.netloc:
        s.fail(f'invalid URL "{url}": must be an absolute http or https URL', key)
        return False
    return True


def _canonical_header(name: str) -> str:
    """Go's ``http.CanonicalHeaderKey``: ``x-foo-bar`` -> ``X-Foo-Bar``."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def redact_url(url: str) -> str:
    """The URL with any password replaced, as Prometheus's ``config.URL.Redacted``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:xxxxx@{host}" + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()
