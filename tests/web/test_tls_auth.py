"""``--web.config.file`` on the running agent: TLS, client certificates, basic auth, headers,
rate limit and reload-on-change, on every route the agent serves (enumerated from its router,
so a route added later is covered without touching this file)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import ssl
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import bcrypt
import pytest

from collector.agent import Agent, new_registry
from collector.config import AgentOptions
from collector.remote.codec import compress, encode_labels, encode_request
from collector.web import security
from tests.integration.servers import free_port

# ------------------------------------------------------------------------------ certificates


@dataclass(frozen=True)
class Certs:
    """A test CA, server and client certificates it signed, and strangers it did not sign."""

    ca: Path
    server_cert: Path
    server_key: Path
    rotated_cert: Path
    """Same CA and key type as ``server_cert``, another serial: what a rotation installs."""
    rotated_key: Path
    client_cert: Path
    """SAN ``DNS:client.example``."""
    client_key: Path
    stranger_cert: Path
    """A client certificate signed by another CA."""
    stranger_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _leaf(cwd: Path, name: str, ca: str, serial: int, ext: str) -> None:
    (cwd / f"{name}.ext").write_text(ext)
    _openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}",
        cwd=cwd,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
        "-set_serial", str(serial), "-days", "2", "-out", f"{name}.crt", "-extfile", f"{name}.ext",
        cwd=cwd,
    )  # fmt: skip


def make_certs(directory: Path) -> Certs:
    """Generate the `Certs` in ``directory`` with the ``openssl`` command (EC keys: fast)."""
    directory.mkdir(parents=True, exist_ok=True)
    for ca in ("ca", "other-ca"):
        _openssl(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", f"{ca}.key", "-out", f"{ca}.crt", "-days", "2",
            "-subj", f"/CN=collector test {ca}",
            cwd=directory,
        )  # fmt: skip
    server_ext = "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
    client_ext = "subjectAltName=DNS:client.example\nextendedKeyUsage=clientAuth\n"
    _leaf(directory, "server", "ca", 10, server_ext)
    _leaf(directory, "rotated", "ca", 11, server_ext)
    _leaf(directory, "client", "ca", 12, client_ext)
    _leaf(directory, "stranger", "other-ca", 13, client_ext)
    d = directory
    return Certs(
        ca=d / "ca.crt",
        server_cert=d / "server.crt",
        server_key=d / "server.key",
        rotated_cert=d / "rotated.crt",
        rotated_key=d / "rotated.key",
        client_cert=d / "client.crt",
        client_key=d / "client.key",
        stranger_cert=d / "stranger.crt",
        stranger_key=d / "stranger.key",
    )


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def client_context(
    certs: Certs, *, cert: Path | None = None, key: Path | None = None
) -> ssl.SSLContext:
    """A client context trusting the test CA, presenting ``cert`` when given."""
    context = ssl.create_default_context(cafile=str(certs.ca))
    if cert is not None and key is not None:
        context.load_cert_chain(str(cert), str(key))
    return context


def bcrypt_hash(password: str) -> str:
    """A cheap (cost 4) bcrypt hash: the format and the check are the same at any cost."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


# ------------------------------------------------------------------------------ the agent


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, web_config: str) -> AsyncIterator[Agent]:
    """The real agent (receiver and lifecycle on) behind ``web_config``; files are re-checked
    on every connection and request (``check_interval`` 0) so tests need no clock."""
    (tmp_path / "collector.yml").write_text("global: {scrape_interval: 1m}\n")
    (tmp_path / "web.yml").write_text(web_config)
    options = AgentOptions(
        config_file=str(tmp_path / "collector.yml"),
        listen_address=f"127.0.0.1:{free_port()}",
        storage_path=str(tmp_path / "queue"),
        enable_remote_write_receiver=True,
        enable_lifecycle=True,
        web_config_file=str(tmp_path / "web.yml"),
    )
    agent = Agent(options, registry=new_registry(), reload_interval=0.2, discovery_updatert=0.2)
    agent.web_security.check_interval = 0
    agent.on_quit = lambda: None
    ready = asyncio.Event()
    task = asyncio.create_task(agent.run(ready=ready))
    try:
        await asyncio.wait_for(ready.wait(), timeout=10)
        yield agent
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def routes(agent: Agent) -> list[tuple[str, str]]:
    """(method, path) of every route the agent serves, from an identical agent's router
    (building the app again on the running agent would register its metrics twice)."""
    twin = Agent(agent.options, registry=new_registry())
    found = []
    for route in twin.make_web_app().router.routes():
        if route.method in ("HEAD", "*"):
            continue
        path = route.resource.canonical if route.resource is not None else "/"
        found.append((route.method, path.replace("{", "").replace("}", "")))
    found.append(("GET", "/no/such/page"))
    return found


def tls_web_config(certs: Certs, users: dict[str, str], extra: str = "") -> str:
    listed = "".join(f"  {user}: '{hashed}'\n" for user, hashed in users.items())
    return (
        "tls_server_config:\n"
        f"  cert_file: {certs.server_cert}\n"
        f"  key_file: {certs.server_key}\n"
        f"  client_ca_file: {certs.ca}\n"
        "  client_auth_type: RequireAndVerifyClientCert\n"
        f"basic_auth_users:\n{listed}" + extra
    )


async def _request(
    session: aiohttp.ClientSession, method: str, url: str, **kwargs: object
) -> tuple[int, dict[str, str], str]:
    async with session.request(method, url, **kwargs) as r:  # type: ignore[arg-type]
        return r.status, dict(r.headers), await r.text()


# ------------------------------------------------------------------------------ tests


async def test_every_route_needs_tls_client_cert_and_basic_auth(
    tmp_path: Path, certs: Certs
) -> None:
    """Over TLS with a good client certificate, every route (the receiver and a 404 included)
    answers 401 with WWW-Authenticate without credentials or with wrong ones, and not 401 with
    the right ones; the configured headers are on every answer."""
    config = tls_web_config(
        certs,
        {"alice": bcrypt_hash("wonderland")},
        "http_server_config:\n  headers:\n    X-Frame-Options: deny\n",
    )
    async with serving(tmp_path, config) as agent:
        base = f"https://127.0.0.1:{agent.options.listen_address.rpartition(':')[2]}"
        context = client_context(certs, cert=certs.client_cert, key=certs.client_key)
        body = compress(encode_request([encode_labels((("__name__", "up"),))], [1.0], [1]))
        all_routes = routes(agent)
        assert ("POST", "/api/v1/write") in all_routes
        assert ("GET", "/metrics") in all_routes
        connector = aiohttp.TCPConnector(ssl=context)
        async with aiohttp.ClientSession(connector=connector) as session:
            for method, path in all_routes:
                kwargs = {"data": body} if path == "/api/v1/write" else {}
                for headers in ({}, basic("alice", "wrong"), basic("mallory", "wonderland")):
                    status, got, text = await _request(
                        session, method, base + path, headers=headers, **kwargs
                    )
                    assert (status, text) == (401, "Unauthorized\n"), (method, path, headers)
                    assert got["WWW-Authenticate"] == "Basic"
                    assert got["X-Frame-Options"] == "deny"
                status, got, _ = await _request(
                    session, method, base + path, headers=basic("alice", "wonderland"), **kwargs
                )
                assert status != 401, (method, path)
                assert got["X-Frame-Options"] == "deny", (method, path)


@pytest.mark.parametrize("max_version", ["TLS12", "TLS13"])
async def test_missing_or_foreign_client_cert_fails_the_handshake(
    tmp_path: Path, certs: Certs, max_version: str
) -> None:
    """RequireAndVerifyClientCert: no certificate, or one from another CA, gets no HTTP answer
    at all (TLS 1.2: the handshake fails; TLS 1.3: the server's alert ends the connection
    before any request is read); the CA's client certificate gets one."""
    config = tls_web_config(certs, {}, f"  max_version: {max_version}\n").replace(
        "basic_auth_users:\n", ""
    )
    async with serving(tmp_path, config) as agent:
        port = int(agent.options.listen_address.rpartition(":")[2])
        good = client_context(certs, cert=certs.client_cert, key=certs.client_key)
        assert (await _raw_get(port, good)).startswith(b"HTTP/1.1 200")
        for context in (
            client_context(certs),
            client_context(certs, cert=certs.stranger_cert, key=certs.stranger_key),
        ):
            try:
                answer = await _raw_get(port, context)
            except (ssl.SSLError, ConnectionError):
                continue
            assert answer == b"", answer  # EOF without an HTTP answer is a refusal too


async def _raw_get(port: int, context: ssl.SSLContext) -> bytes:
    """``GET /-/healthy`` over a fresh TLS connection; everything the server sent back."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname="localhost"
    )
    try:
        writer.write(b"GET /-/healthy HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        return await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            await writer.wait_closed()


async def test_plain_http_is_refused_on_a_tls_port(tmp_path: Path, certs: Certs) -> None:
    """TLS on: a plain-HTTP request gets no HTTP answer."""
    config = tls_web_config(certs, {}).replace("basic_auth_users:\n", "")
    async with serving(tmp_path, config) as agent:
        host, _, port = agent.options.listen_address.rpartition(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        with contextlib.suppress(ConnectionError):
            assert not (await reader.read()).startswith(b"HTTP/1.1 200")
        writer.close()


async def test_client_allowed_sans(tmp_path: Path, certs: Certs) -> None:
    """client_allowed_sans: a verified certificate without a listed SAN gets 403; after the
    file lists its SAN (no restart), 200."""
    config = tls_web_config(certs, {}, "  client_allowed_sans: [other.example]\n")
    config = config.replace("basic_auth_users:\n", "")
    async with serving(tmp_path, config) as agent:
        base = f"https://127.0.0.1:{agent.options.listen_address.rpartition(':')[2]}"
        context = client_context(certs, cert=certs.client_cert, key=certs.client_key)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
            assert (await _request(session, "GET", base + "/-/healthy"))[0] == 403
            web_yml = Path(agent.options.web_config_file)
            _rewrite(web_yml, config.replace("other.example", "client.example"))
            assert (await _request(session, "GET", base + "/-/healthy"))[0] == 200


def _rewrite(path: Path, text: str) -> None:
    """Replace ``path`` the way a Kubernetes volume update does: a new file renamed over it."""
    fresh = path.with_suffix(".new")
    fresh.write_text(text)
    os.replace(fresh, path)


async def test_users_and_certificates_reload_when_the_files_change(
    tmp_path: Path, certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    """A new password and a rotated certificate apply to the next request and connection; a
    broken file keeps the previous config in force and says why in the log."""
    cert_file, key_file = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert_file.write_bytes(certs.server_cert.read_bytes())
    key_file.write_bytes(certs.server_key.read_bytes())
    tls = f"tls_server_config: {{cert_file: {cert_file}, key_file: {key_file}}}\n"
    config = tls + f"basic_auth_users: {{alice: '{bcrypt_hash('one')}'}}\n"
    async with serving(tmp_path, config) as agent:
        port = int(agent.options.listen_address.rpartition(":")[2])
        url = f"https://127.0.0.1:{port}/-/healthy"
        web_yml = Path(agent.options.web_config_file)

        async def status(password: str) -> int:
            connector = aiohttp.TCPConnector(ssl=client_context(certs), force_close=True)
            async with aiohttp.ClientSession(connector=connector) as session:
                return (await _request(session, "GET", url, headers=basic("alice", password)))[0]

        assert (await status("one"), await status("two")) == (200, 401)
        _rewrite(web_yml, tls + f"basic_auth_users: {{alice: '{bcrypt_hash('two')}'}}\n")
        assert (await status("one"), await status("two")) == (401, 200)

        assert await _served_serial(port, certs) == 10
        key_file.write_bytes(certs.rotated_key.read_bytes())
        cert_file.write_bytes(certs.rotated_cert.read_bytes())
        assert await _served_serial(port, certs) == 11

        caplog.set_level(logging.ERROR, logger="collector.web.security")
        _rewrite(web_yml, tls + "basic_auth_users: {alice: not-a-hash}\n")
        assert (await status("two")) == 200  # the previous config stays in force
        assert "the web config changed but cannot be used" in caplog.text
        assert "basic_auth_users.alice" in caplog.text
        assert await status("two") == 200
        assert caplog.text.count("cannot be used") == 1  # logged once per change, not per request


async def _served_serial(port: int, certs: Certs) -> int:
    """The serial number of the certificate a new connection is served."""
    _, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=client_context(certs), server_hostname="localhost"
    )
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    with contextlib.suppress(ssl.SSLError, ConnectionError):
        await writer.wait_closed()
    done = await asyncio.to_thread(
        subprocess.run,
        ["openssl", "x509", "-inform", "DER", "-noout", "-serial"],
        input=der,
        capture_output=True,
        check=True,
        timeout=30,
    )
    return int(done.stdout.decode().strip().split("=")[1], 16)


async def test_turning_tls_off_needs_a_restart(
    tmp_path: Path, certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    """A change that turns TLS off is refused (the socket speaks TLS) and logged."""
    config = (
        f"tls_server_config: {{cert_file: {certs.server_cert}, key_file: {certs.server_key}}}\n"
    )
    async with serving(tmp_path, config) as agent:
        url = f"https://127.0.0.1:{agent.options.listen_address.rpartition(':')[2]}/-/healthy"
        _rewrite(Path(agent.options.web_config_file), "basic_auth_users: {}\n")
        connector = aiohttp.TCPConnector(ssl=client_context(certs))
        async with aiohttp.ClientSession(connector=connector) as session:
            assert (await _request(session, "GET", url))[0] == 200
        assert "turning TLS on or off needs a restart" in caplog.text


async def test_successful_checks_are_cached_and_failures_are_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One bcrypt check for a user scraping again and again with the right password; every
    wrong password and every unknown user pays one (unknown users against a dummy hash)."""
    calls: list[bytes] = []
    real = security._checkpw

    def counting(password: bytes, hashed: bytes) -> bool:
        calls.append(hashed)
        return real(password, hashed)

    monkeypatch.setattr(security, "_checkpw", counting)
    async with serving(tmp_path, f"basic_auth_users: {{alice: '{bcrypt_hash('pw')}'}}\n") as agent:
        url = f"http://{agent.options.listen_address}/-/healthy"
        async with aiohttp.ClientSession() as session:
            for _ in range(5):
                assert (await _request(session, "GET", url, headers=basic("alice", "pw")))[0] == 200
            assert len(calls) == 1
            for _ in range(3):
                assert (await _request(session, "GET", url, headers=basic("alice", "no")))[0] == 401
            assert len(calls) == 4
            assert (await _request(session, "GET", url, headers=basic("bob", "pw")))[0] == 401
            assert calls[-1] == security._DUMMY_HASH
            assert (await _request(session, "GET", url, headers=basic("alice", "pw")))[0] == 200
            assert len(calls) == 5


async def test_passwords_longer_than_72_bytes_compare_like_go(tmp_path: Path) -> None:
    """bcrypt reads 72 bytes; Go ignores the rest, and so do we (bcrypt 5 would raise)."""
    long = "x" * 72
    async with serving(tmp_path, f"basic_auth_users: {{u: '{bcrypt_hash(long)}'}}\n") as agent:
        url = f"http://{agent.options.listen_address}/-/healthy"
        async with aiohttp.ClientSession() as session:
            ok = await _request(session, "GET", url, headers=basic("u", long + "tail"))
            assert ok[0] == 200


async def test_rate_limit(tmp_path: Path) -> None:
    """rate_limit: past the burst, 429 until a token comes back (one per hour here)."""
    async with serving(tmp_path, "rate_limit: {interval: 1h, burst: 2}\n") as agent:
        url = f"http://{agent.options.listen_address}/-/healthy"
        async with aiohttp.ClientSession() as session:
            got = [(await _request(session, "GET", url))[0] for _ in range(3)]
        assert got == [200, 200, 429]


def test_certificate_rotation_under_uvloop(tmp_path: Path, certs: Certs) -> None:
    """The CLI runs on uvloop, whose TLS transport must also wrap each connection with the
    current context (`_LiveContext.wrap_bio`)."""
    import uvloop
    from aiohttp import web

    cert_file, key_file = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert_file.write_bytes(certs.server_cert.read_bytes())
    key_file.write_bytes(certs.server_key.read_bytes())
    web_yml = tmp_path / "web.yml"
    web_yml.write_text(f"tls_server_config: {{cert_file: {cert_file}, key_file: {key_file}}}\n")

    async def scenario() -> list[int]:
        guard = security.WebSecurity.from_file(str(web_yml), check_interval=0)

        async def ok(_: web.Request) -> web.Response:
            return web.Response(text="ok")

        app = web.Application(middlewares=[guard.middleware])
        app.router.add_get("/", ok)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port, ssl_context=guard.ssl_context).start()
        try:
            serials = [await _served_serial(port, certs)]
            key_file.write_bytes(certs.rotated_key.read_bytes())
            cert_file.write_bytes(certs.rotated_cert.read_bytes())
            serials.append(await _served_serial(port, certs))
            return serials
        finally:
            await runner.cleanup()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(scenario()) == [10, 11]
