"""``--web.config.file``: the exporter toolkit's web config, parsed, validated and made ready.

Where it sits: in front of every endpoint of ``--web.listen-address`` (UI, API, ``/metrics``,
the remote-write receiver). `load_web_config` reads the YAML into a frozen `WebConfig`, checks
it the way the exporter toolkit does (strict keys, bcrypt hashes, cert/key pair, client auth,
TLS versions, cipher suites, curves, allowed headers) and reports *every* problem located at
``file:line:column: path`` through the config package's machinery (`collector.config.section`).
The TLS part is turned into a ready `ssl.SSLContext` here, because loading the key pair is the
only real check of it. `collector.web.security` serves with the result and reloads it when the
files change; ``collector check web-config`` prints the problems.

Differences from the exporter toolkit (Go's TLS stack vs. OpenSSL through Python's ``ssl``):

* ``client_auth_type`` ``RequestClientCert`` and ``RequireAnyClientCert`` are refused: Python
  cannot ask for a client certificate without verifying it.
* ``curve_preferences``: only the first curve is applied (``SSLContext.set_ecdh_curve`` takes
  one); the others are checked for spelling.
* ``http_server_config.http2`` is accepted and has no effect: aiohttp speaks HTTP/1.1 only.
* ``client_allowed_sans`` is checked after the handshake (a 403), not inside it.

Reference: ``shared/reference/prometheus-3x.md`` §7; exporter-toolkit ``web/tls_config.go``.
"""

from __future__ import annotations

import os
import re
import ssl
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

from collector.config.section import Problems, Section, Source, names
from collector.config.yaml_tree import compose, idx, join
from collector.errors import ConfigFileError

__all__ = [
    "CIPHER_SUITES",
    "CLIENT_AUTH_TYPES",
    "RateLimit",
    "TLSServerConfig",
    "WebConfig",
    "load_web_config",
    "parse_web_config",
]

_TLS_VERSIONS: Mapping[str, ssl.TLSVersion] = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}

CLIENT_AUTH_TYPES: Mapping[str, ssl.VerifyMode | None] = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
    # Go can ask for a certificate and not verify it; OpenSSL through Python's ssl cannot.
    "RequestClientCert": None,
    "RequireAnyClientCert": None,
    "RequireClientCert": None,
}
"""``client_auth_type`` -> Python verify mode; None: known to Go, refused here."""

CIPHER_SUITES: Mapping[str, str] = {
    # TLS 1.3 suites: accepted names, no effect (cipher_suites apply to TLS <= 1.2, as in Go).
    "TLS_AES_128_GCM_SHA256": "",
    "TLS_AES_256_GCM_SHA384": "",
    "TLS_CHACHA20_POLY1305_SHA256": "",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
}
"""Go's ``tls.CipherSuites()`` names (the only ones the toolkit accepts) -> OpenSSL names."""

_CURVES: Mapping[str, str] = {
    "CurveP256": "prime256v1",
    "CurveP384": "secp384r1",
    "CurveP521": "secp521r1",
    "X25519": "X25519",
}

_HEADERS: Mapping[str, tuple[str, ...]] = {
    "Content-Security-Policy": (),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-Content-Type-Options": ("nosniff",),
    "X-XSS-Protection": (),
    "Strict-Transport-Security": (),
}
"""The only headers ``http_server_config.headers`` may set, with their allowed values (() = any)."""

# Go's bcrypt.Cost accepts $2a$/$2b$/$2y$ (what htpasswd and Python's bcrypt write), cost 4..31.
_BCRYPT_HASH = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")

_TOP_KEYS = names("tls_server_config http_server_config basic_auth_users rate_limit")
_TLS_KEYS = names(
    """
    cert cert_file key key_file client_ca client_ca_file client_auth_type client_allowed_sans
    min_version max_version cipher_suites curve_preferences prefer_server_cipher_suites
    """
)


@dataclass(frozen=True, slots=True, kw_only=True)
class TLSServerConfig:
    """``tls_server_config`` with file paths resolved against the web config's directory."""

    cert_file: str = ""
    key_file: str = ""
    client_ca_file: str = ""
    client_auth_type: str = "NoClientCert"
    client_allowed_sans: tuple[str, ...] = ()
    min_version: str = "TLS12"
    max_version: str = "TLS13"
    cipher_suites: tuple[str, ...] = ()
    curve_preferences: tuple[str, ...] = ()
    prefer_server_cipher_suites: bool = True
    inline_cert: str = field(default="", repr=False)
    inline_key: str = field(default="", repr=False)
    """The inline private key: a secret, kept out of ``repr`` (and so out of logs)."""
    inline_client_ca: str = field(default="", repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimit:
    """``rate_limit``: one token every ``interval`` seconds, at most ``burst`` saved up."""

    interval: float
    burst: int


@dataclass(frozen=True, slots=True, kw_only=True)
class WebConfig:
    """A validated web config. The default (no file) is plain HTTP with no authentication."""

    path: str = ""
    tls: TLSServerConfig | None = None
    """None: TLS is off (fixed at startup, like the toolkit's ``IsEnabled``)."""
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False, compare=False)
    """The server context built from ``tls``: certificate loaded, client auth set."""
    http2: bool = True
    headers: tuple[tuple[str, str], ...] = ()
    users: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    """``basic_auth_users``: (user, bcrypt hash); empty = no authentication."""
    rate_limit: RateLimit | None = None
    watched_files: tuple[str, ...] = ()
    """The files whose change means "load again": this file and the TLS files it names."""


def load_web_config(path: str) -> WebConfig:
    """Read and validate the web config at ``path``.

    Raises `ConfigFileError` when the file cannot be read and `ConfigError` with every problem
    (``file:line:column: path: message``) when it is refused.
    """
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ConfigFileError(
            f"cannot read web config file: {exc.strerror or exc}", file=path
        ) from exc
    except UnicodeDecodeError as exc:
        raise ConfigFileError(f"web config file is not valid UTF-8: {exc}", file=path) from exc
    return parse_web_config(text, file=path, base_dir=os.path.dirname(os.path.abspath(path)))


def parse_web_config(text: str, *, file: str, base_dir: str) -> WebConfig:
    """Validate web config YAML ``text``; relative paths are joined to ``base_dir``."""
    problems = Problems()
    src = Source(file=file, base_dir=base_dir, env={}, problems=problems)
    composed = compose(text, file=file)
    src.locations = composed.locations
    for problem in composed.problems:
        problems.add(problem)
    if not composed.complete:
        problems.raise_if_any()
    top = Section(composed.tree, "", src=src, kind="web.Config", known=_TOP_KEYS)
    tls_section = top.section("tls_server_config", kind="web.TLSConfig", known=_TLS_KEYS)
    tls = _parse_tls(tls_section)
    context = _ssl_context(tls_section, tls) if tls is not None else None
    http = top.section("http_server_config", kind="web.HTTPConfig", known=names("http2 headers"))
    http2 = http.bool_("http2", True)
    headers = _parse_headers(http)
    users = _parse_users(top)
    rate = top.section("rate_limit", kind="web.RateLimiterConfig", known=names("interval burst"))
    interval = rate.duration("interval") or 0.0
    burst = rate.int_("burst", 0)
    if interval > 0 and burst <= 0:
        rate.report("burst must be positive when interval is set", "burst")
    problems.raise_if_any()
    watched = [os.path.abspath(file)] if file else []
    if tls is not None:
        watched.extend(p for p in (tls.cert_file, tls.key_file, tls.client_ca_file) if p)
    return WebConfig(
        path=file,
        tls=tls,
        ssl_context=context,
        http2=http2,
        headers=headers,
        users=users,
        rate_limit=RateLimit(interval=interval, burst=burst) if interval > 0 else None,
        watched_files=tuple(watched),
    )


# ------------------------------------------------------------------------------ sections


def _parse_tls(t: Section) -> TLSServerConfig | None:
    """``tls_server_config``; None when TLS is off (no cert, key, client CA or auth type)."""
    values = {
        k: t.str_(k)
        for k in ("cert", "cert_file", "key", "key_file", "client_ca", "client_ca_file")
    }
    auth_type = t.str_("client_auth_type")
    if not any(values.values()) and not auth_type:
        return None
    for name in ("cert", "key", "client_ca"):
        if values[name] and values[f"{name}_file"]:
            t.report(f"at most one of {name} and {name}_file must be configured")
    if not values["cert"] and not values["cert_file"]:
        t.report("missing one of cert or cert_file")
    if not values["key"] and not values["key_file"]:
        t.report("missing one of key or key_file")
    if auth_type and auth_type not in CLIENT_AUTH_TYPES:
        t.fail(f"invalid ClientAuth: {auth_type}", "client_auth_type")
    elif auth_type and CLIENT_AUTH_TYPES[auth_type] is None:
        t.fail(
            f"client_auth_type {auth_type} is not supported by collector (Python's TLS cannot "
            "ask for a client certificate without verifying it); use VerifyClientCertIfGiven "
            "or RequireAndVerifyClientCert",
            "client_auth_type",
        )
    if (values["client_ca"] or values["client_ca_file"]) and auth_type in ("", "NoClientCert"):
        t.report("client CA's have been configured without a Client Auth Policy")
    versions = {}
    for key, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
        version = t.str_(key) or default
        if version not in _TLS_VERSIONS:
            t.fail(f"unknown TLS version: {version}", key)
            version = default
        versions[key] = version
    if _TLS_VERSIONS[versions["min_version"]] > _TLS_VERSIONS[versions["max_version"]]:
        t.report(
            f"min_version {versions['min_version']} is above max_version "
            f"{versions['max_version']}: no connection could be made"
        )
    ciphers = t.str_list("cipher_suites")
    for i, cipher in enumerate(ciphers):
        if cipher not in CIPHER_SUITES:
            t.src.report(f"unknown cipher: {cipher}", idx(t.at("cipher_suites"), i))
    curves = t.str_list("curve_preferences")
    for i, curve in enumerate(curves):
        if curve not in _CURVES:
            t.src.report(f"unknown curve: {curve}", idx(t.at("curve_preferences"), i))
    join_dir = t.src.join_dir
    return TLSServerConfig(
        inline_cert=values["cert"],
        cert_file=join_dir(values["cert_file"]),
        inline_key=values["key"],
        key_file=join_dir(values["key_file"]),
        inline_client_ca=values["client_ca"],
        client_ca_file=join_dir(values["client_ca_file"]),
        client_auth_type=auth_type or "NoClientCert",
        client_allowed_sans=tuple(t.str_list("client_allowed_sans")),
        min_version=versions["min_version"],
        max_version=versions["max_version"],
        cipher_suites=tuple(ciphers),
        curve_preferences=tuple(curves),
        prefer_server_cipher_suites=t.bool_("prefer_server_cipher_suites", True),
    )


def _parse_headers(http: Section) -> tuple[tuple[str, str], ...]:
    """``http_server_config.headers``: only the toolkit's five, with their allowed values."""
    out: list[tuple[str, str]] = []
    for name, value in http.str_map("headers"):
        path = join(http.at("headers"), name)
        if name not in _HEADERS:
            http.src.report(f'HTTP header "{name}" can not be configured', path)
            continue
        allowed = _HEADERS[name]
        if allowed and value.lower() not in allowed:
            http.src.report(
                f"invalid value for {name}. Expected one of: [{' '.join(allowed)}], "
                f'but got: "{value}"',
                path,
            )
            continue
        out.append((name, value))
    return tuple(out)


def _parse_users(top: Section) -> tuple[tuple[str, str], ...]:
    """``basic_auth_users``: every hash must be a bcrypt hash (the hash itself is never echoed:
    it is as good as the password to an offline guesser)."""
    users: list[tuple[str, str]] = []
    path = top.at("basic_auth_users")
    for user, hashed in top.str_map("basic_auth_users"):
        where = join(path, user)
        if ":" in user:
            top.src.report("a user name cannot contain ':' (Basic auth splits there)", where)
        elif not _BCRYPT_HASH.fullmatch(hashed):
            top.src.report(
                f"the password of user {user!r} is not a bcrypt hash ($2a$/$2b$/$2y$, cost "
                "4-31, 60 characters); make one with htpasswd -nBC 10 USER",
                where,
            )
        else:
            users.append((user, hashed))
    return tuple(users)


# ------------------------------------------------------------------------------ TLS context


def _ssl_context(t: Section, tls: TLSServerConfig) -> ssl.SSLContext | None:
    """The server context for ``tls``; reports (at ``t``'s keys) what OpenSSL refuses."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ok = _load_key_pair(t, tls, context)
    mode = CLIENT_AUTH_TYPES.get(tls.client_auth_type)
    if mode is not None:
        context.verify_mode = mode
    if mode in (ssl.CERT_OPTIONAL, ssl.CERT_REQUIRED):
        ok = _load_client_ca(t, tls, context) and ok
    with warnings.catch_warnings():
        # Python deprecates TLS 1.0/1.1; a file that asks for them gets them (if OpenSSL's
        # security level allows), as with the toolkit.
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = _TLS_VERSIONS[tls.min_version]
        context.maximum_version = _TLS_VERSIONS[tls.max_version]
    suites = [CIPHER_SUITES[c] for c in tls.cipher_suites if CIPHER_SUITES.get(c)]
    if suites:
        try:
            context.set_ciphers(":".join(suites))
        except ssl.SSLError as exc:
            t.fail(f"no usable cipher suite in cipher_suites: {exc}", "cipher_suites")
            ok = False
    curves = [_CURVES[c] for c in tls.curve_preferences if c in _CURVES]
    if curves:
        try:
            context.set_ecdh_curve(curves[0])
        except (ValueError, ssl.SSLError) as exc:
            t.fail(f"curve {tls.curve_preferences[0]} is not available: {exc}", "curve_preferences")
            ok = False
    if tls.prefer_server_cipher_suites:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    context.set_alpn_protocols(["http/1.1"])  # aiohttp serves HTTP/1.1 only
    return context if ok else None


def _read(t: Section, key: str, path: str) -> bytes | None:
    """The content of ``path`` (named by ``key``); None, reported as the toolkit does, if it
    cannot be read."""
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        t.fail(f"failed to read {key} ({path}): {exc.strerror or exc}", key)
        return None


def _pem_has(t: Section, key: str, pem: bytes, marker: bytes, what: str) -> bool:
    """Whether ``pem`` holds a ``marker`` block; OpenSSL's own error ("PEM lib") does not say
    which of the two files is wrong. Never echoes the content: it may be a key."""
    if marker in pem:
        return True
    t.fail(f"failed to load X509KeyPair: {key} holds no PEM {what}", key)
    return False


def _load_key_pair(t: Section, tls: TLSServerConfig, context: ssl.SSLContext) -> bool:
    """Load the certificate and key (files or inline PEM) into ``context``."""
    if not (tls.inline_cert or tls.cert_file) or not (tls.inline_key or tls.key_file):
        return False  # already reported as missing
    cert = _read(t, "cert_file", tls.cert_file) if tls.cert_file else tls.inline_cert.encode()
    key = _read(t, "key_file", tls.key_file) if tls.key_file else tls.inline_key.encode()
    if cert is None or key is None:
        return False
    cert_ok = _pem_has(
        t, "cert_file" if tls.cert_file else "cert", cert, b"CERTIFICATE-----", "certificate"
    )
    key_ok = _pem_has(
        t, "key_file" if tls.key_file else "key", key, b"PRIVATE KEY-----", "private key"
    )
    if not (cert_ok and key_ok):
        return False
    where = "cert_file" if tls.cert_file else "cert"
    # ssl loads certificates from files only: inline PEM goes through a private temporary
    # directory (0700) that is removed at once.
    with tempfile.TemporaryDirectory(prefix="collector-web-") as tmp:
        cert_path = tls.cert_file or _write_private(tmp, "cert.pem", tls.inline_cert)
        key_path = tls.key_file or _write_private(tmp, "key.pem", tls.inline_key)
        try:
            # The password callback keeps OpenSSL from prompting on the terminal for an
            # encrypted key (which would hang the agent); such a key fails to load instead.
            context.load_cert_chain(cert_path, key_path, password=_no_password)
        except (ssl.SSLError, OSError, ValueError) as exc:
            t.fail(f"failed to load X509KeyPair: {_ssl_reason(exc)}", where)
            return False
    return True


def _load_client_ca(t: Section, tls: TLSServerConfig, context: ssl.SSLContext) -> bool:
    """Trust ``client_ca[_file]`` for client certificates, else the system roots (like Go)."""
    try:
        if tls.client_ca_file:
            if _read(t, "client_ca_file", tls.client_ca_file) is None:
                return False
            context.load_verify_locations(cafile=tls.client_ca_file)
        elif tls.inline_client_ca:
            context.load_verify_locations(cadata=tls.inline_client_ca)
        else:
            context.load_default_certs(ssl.Purpose.CLIENT_AUTH)
    except (ssl.SSLError, OSError, ValueError) as exc:
        key = "client_ca_file" if tls.client_ca_file else "client_ca"
        t.fail(f"failed to load client CA: {_ssl_reason(exc)}", key)
        return False
    return True


def _write_private(directory: str, name: str, text: str) -> str:
    path = os.path.join(directory, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    return path


def _no_password() -> bytes:
    return b""


def _ssl_reason(exc: Exception) -> str:
    """OpenSSL's reason without the ``(_ssl.c:NNNN)`` noise."""
    return re.sub(r"\s*\(_ssl\.c:\d+\)", "", str(exc))
