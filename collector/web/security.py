"""The live web config in front of every endpoint: TLS for new connections, then per request
rate limit, client-certificate SANs, basic auth and the configured response headers.

Where it sits: `collector.agent` builds one `WebSecurity` from ``--web.config.file``
(`collector.web.webconfig`), passes `WebSecurity.ssl_context` to its ``TCPSite`` and
`WebSecurity.middleware` to `collector.web.app.make_app`, so the UI, the API, ``/metrics`` and
the remote-write receiver are all behind it.

Reload: like the exporter toolkit, no signal is needed. On each new TLS connection and each
request (at most once per ``check_interval``) the web config file and the certificate, key and
CA files it names are ``stat``-ed; when one changed, the config is loaded again and applies to
the next connection and request. A new file that does not load keeps the old config and logs
why, once per change. Whether TLS is on at all is fixed at startup (the listening socket was
made with or without it); a change that turns it on or off is refused the same way.

Basic auth costs one bcrypt check per new (user, password); successful checks are cached under
a keyed hash of the presented password, as the toolkit does, so a scraper that authenticates
every second does not pay bcrypt's ~60 ms each time. bcrypt runs in a thread, one at a time, so
a stream of wrong passwords cannot stall the event loop (only each other).

Prometheus counterpart: exporter-toolkit ``web/handler.go`` and ``web/tls_config.go``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import ipaddress
import logging
import os
import secrets
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from collector.errors import ConfigError
from collector.web.webconfig import WebConfig, load_web_config

__all__ = ["Handler", "WebSecurity"]

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_DUMMY_HASH = b"$2b$10$6v.ZkQeuOAIcCgZ77m/QlujMQ84OnieMxqJcKjJLN5Q78GzMkgc9y"
"""A bcrypt hash of a random string nobody knows: an unknown user costs as much as a known one,
so response times do not tell which user names exist (the toolkit does the same)."""

_CACHE_SIZE = 1024
"""Successful (user, hash, password) checks remembered; the oldest goes first when full."""

_BCRYPT_MAX = 72
"""bcrypt reads at most 72 bytes of a password. Go (and bcrypt < 5 here) ignore the rest;
bcrypt 5 raises instead, so longer passwords are cut the same way for Go-compatible answers."""

Fingerprint = tuple[tuple[str, int, int, int, int] | tuple[str], ...]


class WebSecurity:
    """The web config currently in force and what enforces it."""

    def __init__(self, config: WebConfig | None = None, *, check_interval: float = 1.0) -> None:
        """Serve with ``config`` (default: plain HTTP, no auth); ``check_interval`` bounds how
        often the files are ``stat``-ed for changes (0: on every connection and request)."""
        self.config = config if config is not None else WebConfig()
        self.check_interval = check_interval
        self._fingerprint = _fingerprint(self.config.watched_files)
        self._refused: Fingerprint | None = None
        self._checked_at = time.monotonic()
        self._cache: dict[tuple[str, str, bytes], None] = {}
        self._cache_key = secrets.token_bytes(32)
        self._bcrypt_lock = asyncio.Lock()
        self._tokens = 0.0
        self._tokens_at = time.monotonic()
        self.ssl_context: ssl.SSLContext | None = (
            _LiveContext(self) if self.config.ssl_context is not None else None
        )
        """What the listening site is given: a context whose connections each use the current
        config's context. None when TLS is off."""
        if self.config.rate_limit is not None:
            self._tokens = float(self.config.rate_limit.burst)

    @classmethod
    def from_file(cls, path: str, *, check_interval: float = 1.0) -> WebSecurity:
        """Load ``path`` (`load_web_config`; raises `ConfigError`); "" means no web config."""
        if not path:
            return cls(check_interval=check_interval)
        return cls(load_web_config(path), check_interval=check_interval)

    def describe(self) -> str:
        """One line for the startup log (the toolkit logs ``TLS is enabled.``)."""
        tls = "TLS is enabled" if self.ssl_context is not None else "TLS is disabled"
        auth = "basic auth is on" if self.config.users else "no basic auth"
        source = f" (web config {self.config.path})" if self.config.path else ""
        return f"{tls}, {auth}{source}."

    # ------------------------------------------------------------------ reload

    def refresh(self) -> None:
        """Load the web config again if one of its files changed since the last look.

        Runs on the event loop: a few ``stat`` calls at most once per ``check_interval``; the
        reload itself (a small YAML file and the key pair) only when something changed.
        """
        if not self.config.path:
            return
        now = time.monotonic()
        if now - self._checked_at < self.check_interval:
            return
        self._checked_at = now
        current = _fingerprint(self.config.watched_files)
        if current == self._fingerprint or current == self._refused:
            return
        try:
            config = load_web_config(self.config.path)
            if (config.ssl_context is None) != (self.config.ssl_context is None):
                raise ConfigError(
                    "turning TLS on or off needs a restart: the listening socket was opened "
                    f"{'with' if self.config.ssl_context is not None else 'without'} TLS",
                    file=self.config.path,
                )
        except ConfigError as exc:
            self._refused = current
            log.error(
                "the web config changed but cannot be used; the previous one stays in force: %s",
                exc,
            )
            return
        self.config = config
        self._fingerprint = _fingerprint(config.watched_files)
        self._refused = None
        self._cache.clear()
        if config.rate_limit is not None:
            self._tokens = min(self._tokens, float(config.rate_limit.burst))
        log.info("web config reloaded from %s", config.path)

    def current_context(self) -> ssl.SSLContext:
        """The TLS context a new connection uses (after looking for a changed config)."""
        self.refresh()
        assert self.config.ssl_context is not None  # TLS on/off is fixed at startup
        return self.config.ssl_context

    # ------------------------------------------------------------------ requests

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Every request: rate limit, client SANs, basic auth; headers on every answer."""
        self.refresh()
        config = self.config
        try:
            refusal = self._refuse(request, config)
            if refusal is None and config.users and not await self._authenticated(request):
                refusal = web.Response(
                    status=401, text="Unauthorized\n", headers={"WWW-Authenticate": "Basic"}
                )
            response = refusal if refusal is not None else await handler(request)
        except web.HTTPException as exc:
            exc.headers.update(config.headers)
            raise
        if not response.prepared:
            response.headers.update(config.headers)
        return response

    def _refuse(self, request: web.Request, config: WebConfig) -> web.Response | None:
        """429 past the rate limit; 403 for a client certificate without an allowed SAN."""
        if config.rate_limit is not None and not self._take_token(config):
            return web.Response(status=429, text="Too Many Requests\n")
        if config.tls is not None and config.tls.client_allowed_sans:
            transport = request.transport
            peer = transport.get_extra_info("peercert") if transport is not None else None
            found = _sans(peer)
            allowed = {_normal_san(san) for san in config.tls.client_allowed_sans}
            if not found & allowed:
                log.warning(
                    "refused a client certificate from %s: could not find allowed SANs in "
                    "client cert, found: %s",
                    request.remote,
                    sorted(found),
                )
                return web.Response(status=403, text="Forbidden\n")
        return None

    def _take_token(self, config: WebConfig) -> bool:
        """Token bucket (the toolkit's ``rate.NewLimiter(rate.Every(interval), burst)``)."""
        assert config.rate_limit is not None
        now = time.monotonic()
        self._tokens = min(
            float(config.rate_limit.burst),
            self._tokens + (now - self._tokens_at) / config.rate_limit.interval,
        )
        self._tokens_at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    async def _authenticated(self, request: web.Request) -> bool:
        """Whether the request's Basic credentials match ``basic_auth_users``."""
        credentials = _basic_credentials(request.headers.get("Authorization", ""))
        if credentials is None:
            return False
        user, password = credentials
        hashed = dict(self.config.users).get(user)
        key = (
            user,
            hashed or "",
            hmac.digest(self._cache_key, password, hashlib.sha256),
        )
        if hashed is not None and key in self._cache:
            return True
        async with self._bcrypt_lock:
            ok = await asyncio.to_thread(
                _checkpw, password, hashed.encode() if hashed else _DUMMY_HASH
            )
        if not ok or hashed is None:
            return False
        if len(self._cache) >= _CACHE_SIZE:
            del self._cache[next(iter(self._cache))]
        self._cache[key] = None
        return True


class _LiveContext(ssl.SSLContext):
    """The context the listening socket holds: each new connection is wrapped by the context of
    the web config in force *now*, so rotated certificates, CAs, versions and ciphers apply to
    new connections without a restart (Go's ``GetConfigForClient``). Both asyncio's and
    uvloop's TLS transports create each connection with ``wrap_bio``."""

    _security: WebSecurity

    def __new__(cls, security: WebSecurity) -> _LiveContext:
        self = super().__new__(cls, ssl.PROTOCOL_TLS_SERVER)
        self._security = security
        return self

    def __init__(self, security: WebSecurity) -> None:
        pass  # everything is in __new__; SSLContext has no __init__ arguments to pass on

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        """Wrap with the current config's context."""
        return self._security.current_context().wrap_bio(*args, **kwargs)


def _fingerprint(paths: tuple[str, ...]) -> Fingerprint:
    """What says "changed" for each file: inode, device, mtime and size (a Kubernetes
    ConfigMap or Secret update swaps a symlink, which changes the inode)."""
    out: list[tuple[str, int, int, int, int] | tuple[str]] = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            out.append((path,))
            continue
        out.append((path, st.st_ino, st.st_dev, st.st_mtime_ns, st.st_size))
    return tuple(out)


def _basic_credentials(header: str) -> tuple[str, bytes] | None:
    """(user, password bytes) of a ``Basic`` Authorization header; None if it is not one."""
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True)
        user, sep, password = decoded.partition(b":")
        return (user.decode("utf-8"), password) if sep else None
    except (binascii.Error, UnicodeDecodeError):
        return None


def _checkpw(password: bytes, hashed: bytes) -> bool:
    try:
        import bcrypt  # only with basic_auth_users: not resident otherwise

        return bcrypt.checkpw(password[:_BCRYPT_MAX], hashed)
    except ValueError:  # a hash bcrypt cannot read: the loader refuses those, so never here
        return False


def _normal_san(value: str) -> str:
    """A SAN for comparison: IP addresses in one spelling (Python prints IPv6 SANs in full)."""
    try:
        return ipaddress.ip_address(value.strip()).compressed
    except ValueError:
        return value


def _sans(peercert: object) -> set[str]:
    """DNS names, IP addresses, emails and URIs of a verified client certificate."""
    if not isinstance(peercert, dict):
        return set()
    return {
        _normal_san(str(value))
        for kind, value in peercert.get("subjectAltName", ())
        if kind in ("DNS", "IP Address", "email", "URI")
    }
