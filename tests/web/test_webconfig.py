"""``--web.config.file`` parsing: the exporter toolkit's format, every problem located, and
``collector check web-config`` exit codes (0 valid, 1 refused, 2 unreadable)."""

from __future__ import annotations

import io
import ssl
from pathlib import Path

import pytest

from collector import cli
from collector.cli import check_web_config, main
from collector.errors import ConfigError, ConfigFileError
from collector.web.webconfig import CIPHER_SUITES, WebConfig, load_web_config, parse_web_config
from tests.web.test_tls_auth import Certs, bcrypt_hash, make_certs


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def _parse(text: str, base_dir: Path | str = "/") -> WebConfig:
    return parse_web_config(text, file="web.yml", base_dir=str(base_dir))


def _problems(text: str, base_dir: Path | str = "/") -> list[str]:
    with pytest.raises(ConfigError) as info:
        _parse(text, base_dir)
    return [p.render() for p in info.value.problems]


def test_empty_file_is_plain_http_without_auth() -> None:
    config = _parse("")
    assert config.tls is None
    assert config.ssl_context is None
    assert config.users == ()
    assert config.rate_limit is None


def test_a_full_file_loads(certs: Certs) -> None:
    """Every key of the format, relative paths resolved against the file's directory."""
    hashed = bcrypt_hash("pw")
    config = _parse(
        f"""
tls_server_config:
  cert_file: {certs.server_cert.name}
  key_file: {certs.server_key.name}
  client_ca_file: ca.crt
  client_auth_type: RequireAndVerifyClientCert
  client_allowed_sans: [client.example]
  min_version: TLS12
  max_version: TLS13
  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_AES_128_GCM_SHA256]
  curve_preferences: [CurveP256, X25519]
  prefer_server_cipher_suites: false
http_server_config:
  http2: false
  headers:
    X-Frame-Options: deny
    Strict-Transport-Security: max-age=31536000
basic_auth_users:
  alice: {hashed}
rate_limit: {{interval: 1s, burst: 10}}
""",
        certs.ca.parent,
    )
    assert config.tls is not None
    assert config.tls.cert_file == str(certs.server_cert)
    assert config.tls.client_ca_file == str(certs.ca)
    assert config.tls.client_allowed_sans == ("client.example",)
    assert config.ssl_context is not None
    assert config.ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert config.ssl_context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert not config.ssl_context.options & ssl.OP_CIPHER_SERVER_PREFERENCE
    assert config.headers == (
        ("X-Frame-Options", "deny"),
        ("Strict-Transport-Security", "max-age=31536000"),
    )
    assert config.users == (("alice", hashed),)
    assert config.rate_limit is not None
    assert (config.rate_limit.interval, config.rate_limit.burst) == (1.0, 10)
    assert str(certs.server_key) in config.watched_files


def test_inline_pem_is_accepted_and_kept_out_of_repr(certs: Certs) -> None:
    """``cert``/``key``/``client_ca`` inline; the key never shows in ``repr`` (logs)."""
    key = certs.server_key.read_text()
    indent = "\n".join("    " + line for line in key.splitlines())
    cert = "\n".join("    " + line for line in certs.server_cert.read_text().splitlines())
    config = _parse(f"tls_server_config:\n  cert: |\n{cert}\n  key: |\n{indent}\n")
    assert config.ssl_context is not None
    assert "PRIVATE" not in repr(config)
    assert key.splitlines()[1] not in repr(config)


def test_every_problem_is_reported_with_its_location(tmp_path: Path, certs: Certs) -> None:
    """One line per problem, each ``file:line:column: path: message`` (toolkit messages)."""
    problems = _problems(
        f"""tls_server_config:
  cert_file: {certs.server_cert}
  key_file: {tmp_path / "missing.key"}
  client_auth_type: Sometimes
  min_version: TLS14
  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]
  curve_preferences: [CurveP999]
http_server_config:
  headers:
    Server: collector
    X-Content-Type-Options: sniff
basic_auth_users:
  alice: password-in-clear
rate_limit: {{interval: 1x}}
bogus: 1
"""
    )
    missing = tmp_path / "missing.key"
    assert problems == [
        f"web.yml:3:3: tls_server_config.key_file: failed to read key_file ({missing}): "
        "No such file or directory",
        "web.yml:4:3: tls_server_config.client_auth_type: invalid ClientAuth: Sometimes",
        "web.yml:5:3: tls_server_config.min_version: unknown TLS version: TLS14",
        "web.yml:6:19: tls_server_config.cipher_suites[0]: unknown cipher: "
        "TLS_RSA_WITH_RC4_128_SHA",
        "web.yml:7:23: tls_server_config.curve_preferences[0]: unknown curve: CurveP999",
        'web.yml:10:5: http_server_config.headers.Server: HTTP header "Server" can not be '
        "configured",
        "web.yml:11:5: http_server_config.headers.X-Content-Type-Options: invalid value for "
        'X-Content-Type-Options. Expected one of: [nosniff], but got: "sniff"',
        "web.yml:13:3: basic_auth_users.alice: the password of user 'alice' is not a bcrypt "
        "hash ($2a$/$2b$/$2y$, cost 4-31, 60 characters); make one with htpasswd -nBC 10 USER",
        'web.yml:14:14: rate_limit.interval: not a valid duration string: "1x"',
        "web.yml:15:1: bogus: field bogus not found in type web.Config",
    ]
    assert "password-in-clear" not in "\n".join(problems)  # a hash is never echoed


@pytest.mark.parametrize(
    ("tls", "message"),
    [
        ("{client_auth_type: RequireAndVerifyClientCert, key_file: k}", "missing one of cert"),
        ("{cert_file: c}", "missing one of key or key_file"),
        ("{cert: x, cert_file: c, key_file: k}", "at most one of cert and cert_file"),
        (
            "{cert_file: CERT, key_file: KEY, client_ca_file: CA}",
            "client CA's have been configured without a Client Auth Policy",
        ),
        (
            "{cert_file: CERT, key_file: KEY, client_auth_type: RequireAnyClientCert}",
            "client_auth_type RequireAnyClientCert is not supported by collector",
        ),
        (
            "{cert_file: CERT, key_file: KEY, min_version: TLS13, max_version: TLS12}",
            "min_version TLS13 is above max_version TLS12",
        ),
        ("{cert_file: CERT, key_file: CERT}", "key_file holds no PEM private key"),
        ("{cert_file: KEY, key_file: KEY}", "cert_file holds no PEM certificate"),
        ("{cert_file: CERT, key_file: OTHERKEY}", "failed to load X509KeyPair: [X509"),
        (
            "{cert_file: CERT, key_file: KEY, client_auth_type: VerifyClientCertIfGiven, "
            "client_ca_file: KEY}",
            "failed to load client CA",
        ),
    ],
)
def test_tls_rules(certs: Certs, tls: str, message: str) -> None:
    text = (
        tls.replace("OTHERKEY", str(certs.rotated_key))
        .replace("CERT", str(certs.server_cert))
        .replace("KEY", str(certs.server_key))
        .replace("CA", str(certs.ca))
    )
    problems = _problems(f"tls_server_config: {text}\n")
    assert any(message in p for p in problems), problems


def test_yaml_errors_are_located() -> None:
    assert _problems("basic_auth_users: {a: b\n") == [
        "web.yml:2:1: yaml: line 1: did not find expected ',' or '}'"  # as Go's yaml.v2 words it
    ]


def test_cipher_names_are_go_names_known_to_openssl() -> None:
    """Every TLS <= 1.2 suite of Go's secure list maps to a cipher this OpenSSL knows."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    for go_name, openssl_name in CIPHER_SUITES.items():
        if openssl_name:
            context.set_ciphers(openssl_name)  # raises SSLError for an unknown name
        else:
            assert go_name.startswith(("TLS_AES_", "TLS_CHACHA20_"))


def test_load_web_config_unreadable(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match="cannot read web config file"):
        load_web_config(str(tmp_path / "absent.yml"))


def test_check_web_config_exit_codes(tmp_path: Path) -> None:
    """0 valid, 1 refused (every problem, on stderr), 2 unreadable; the worst code wins."""
    good = tmp_path / "good.yml"
    good.write_text(f"basic_auth_users: {{alice: '{bcrypt_hash('pw')}'}}\n")
    bad = tmp_path / "bad.yml"
    bad.write_text("basic_auth_users: {alice: x, bob: y}\nfoo: 1\n")
    out, err = io.StringIO(), io.StringIO()
    assert check_web_config([str(good)], out=out, err=err) == 0
    assert f"SUCCESS: {good} is a valid web config file" in out.getvalue()
    assert err.getvalue() == ""

    out, err = io.StringIO(), io.StringIO()
    assert check_web_config([str(bad), str(good)], out=out, err=err) == 1
    lines = err.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith(f"  FAILED: {bad}:1:20: basic_auth_users.alice: ")
    assert lines[2] == f"  FAILED: {bad}:2:1: foo: field foo not found in type web.Config"

    out, err = io.StringIO(), io.StringIO()
    assert check_web_config([str(bad), str(tmp_path / "none.yml")], out=out, err=err) == 2
    assert "cannot read web config file: No such file or directory" in err.getvalue()


def test_check_web_config_subcommand(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("rate_limit: {burst: -1}\n")
    assert main(["check", "web-config", str(bad)]) == 1
    assert "rate_limit.burst: cannot unmarshal !!int `-1` into uint" in capsys.readouterr().err


def test_the_agent_refuses_to_start_with_a_bad_web_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``collector --web.config.file=BAD`` exits 1 naming the problem, before listening."""
    config = tmp_path / "c.yml"
    config.write_text("global: {}\n")
    bad = tmp_path / "web.yml"
    bad.write_text("tls_server_config: {cert_file: nope.crt}\n")
    monkeypatch.setattr(cli, "configure_logging", lambda **_: None)  # keep pytest's handlers
    assert main([f"--config.file={config}", f"--web.config.file={bad}"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error loading web config: ")
    assert "tls_server_config: missing one of key or key_file" in err
