"""HTTP client settings shared by every stage that talks HTTP: TLS contexts and secrets.

Scrape, remote write and the HTTP and Kubernetes discovery providers each open their own
sessions, but a ``tls_config`` or a ``*_file`` credential means the same thing everywhere, so
it is turned into an ``ssl.SSLContext`` or a string in one place.

Prometheus counterpart: ``prometheus/common/config/http_config.go``.
"""

from __future__ import annotations

import os
import ssl
import tempfile

from collector.config import TLSConfig

__all__ = ["TLS_VERSIONS", "build_ssl_context", "read_secret"]

TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
"""``min_version`` / ``max_version`` names, as Prometheus spells them."""


def build_ssl_context(tls: TLSConfig) -> ssl.SSLContext:
    """An ``SSLContext`` from ``tls_config``: CA, client cert/key, verification, versions.

    Raises ``OSError`` or ``ssl.SSLError`` for unreadable or invalid files; callers turn them
    into their own error (a failed scrape, a failed SD refresh, a refused remote-write queue).
    """
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if tls.ca_file:
        ctx.load_verify_locations(cafile=tls.ca_file)
    if tls.ca:
        ctx.load_verify_locations(cadata=tls.ca)
    if tls.cert_file or tls.cert:
        _load_cert_chain(ctx, tls)
    if tls.insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if tls.min_version:
        ctx.minimum_version = TLS_VERSIONS[tls.min_version]
    if tls.max_version:
        ctx.maximum_version = TLS_VERSIONS[tls.max_version]
    return ctx


def _load_cert_chain(ctx: ssl.SSLContext, tls: TLSConfig) -> None:
    """``load_cert_chain`` only reads files, so inline PEM goes through a private temp dir."""
    if tls.cert_file and tls.key_file:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
        return
    with tempfile.TemporaryDirectory() as tmp:
        cert_path = tls.cert_file or os.path.join(tmp, "cert.pem")
        key_path = tls.key_file or os.path.join(tmp, "key.pem")
        if not tls.cert_file:
            with open(cert_path, "w", encoding="utf-8") as f:
                f.write(tls.cert)
        if not tls.key_file:
            with open(key_path, "w", encoding="utf-8") as f:
                f.write(tls.key)
        ctx.load_cert_chain(cert_path, key_path)


def read_secret(inline: str, path: str) -> str:
    """A credential: the file's content (stripped, re-read on every call: files rotate) or
    the inline value."""
    if path:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    return inline
