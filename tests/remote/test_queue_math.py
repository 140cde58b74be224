"""Pure queue pieces: backoff, the retry policy by table, Retry-After parsing, resharding math."""

from __future__ import annotations

import email.utils
import ssl

import pytest

from collector.config import TLSConfig
from collector.errors import NonRecoverableWriteError, RecoverableWriteError
from collector.remote.client import build_ssl_context, parse_retry_after
from collector.remote.queue import EWMARate, desired_shards
from collector.remote.retry import next_backoff, retry_wait


def test_backoff_doubles_and_caps() -> None:
    """30 ms doubles each retry and stops at max_backoff (spec §6.2)."""
    sleeps = [0.03]
    for _ in range(9):
        sleeps.append(next_backoff(sleeps[-1], min_backoff=0.03, max_backoff=5.0))
    assert sleeps == [0.03, 0.06, 0.12, 0.24, 0.48, 0.96, 1.92, 3.84, 5.0, 5.0]


_500 = RecoverableWriteError("server returned HTTP status 500")
_429_RETRY_5 = RecoverableWriteError("server returned HTTP status 429", retry_after=5.0)
_503_RETRY_1 = RecoverableWriteError("server returned HTTP status 503", retry_after=1.0)
_REFUSED = RecoverableWriteError("cannot connect to 127.0.0.1:9: Connection refused")


@pytest.mark.parametrize(
    ("error", "backoff", "rand", "expected"),
    [
        # transport errors and 5xx: the backoff, scaled by jitter in [0.8, 1.2]
        (_REFUSED, 0.03, 0.5, 0.03),
        (_500, 1.0, 0.0, 0.8),
        (_500, 1.0, 0.999999, 1.2),
        (_500, 8.0, 0.5, 5.0),  # capped at max_backoff before jitter
        # Retry-After is a floor, never shortened by jitter
        (_429_RETRY_5, 0.03, 0.0, 5.0),
        (_503_RETRY_1, 4.0, 0.5, 4.0),  # backoff already longer than Retry-After
        (_503_RETRY_1, 4.0, 0.0, 3.2),
        # anything else the receiver refused: not retried
        (NonRecoverableWriteError("HTTP status 400", status=400), 0.03, 0.5, None),
        (NonRecoverableWriteError("HTTP status 413", status=413), 0.03, 0.5, None),
        # a bug outside the error tree is retried, never silently dropped
        (KeyError("oops"), 0.03, 0.5, 0.03),
    ],
)
def test_retry_policy_table(
    error: BaseException, backoff: float, rand: float, expected: float | None
) -> None:
    """One row per outcome: wait in seconds, or None for "drop and count"."""
    got = retry_wait(error, backoff=backoff, max_backoff=5.0, jitter=0.2, rand=lambda: rand)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2", 2.0),
        (" 120 ", 120.0),
        ("0", 0.0),
        (None, 0.0),
        ("", 0.0),
        ("soon", 0.0),
        ("-3", 0.0),
        (email.utils.formatdate(1_000_030, usegmt=True), 30.0),
        (email.utils.formatdate(999_000, usegmt=True), 0.0),
    ],
)
def test_retry_after_parsing(value: str | None, expected: float) -> None:
    """Retry-After accepts delta-seconds and HTTP-dates; past dates and garbage give 0."""
    assert parse_retry_after(value, now=1_000_000.0) == expected


def test_ewma_initialises_then_smooths() -> None:
    """The first non-zero tick sets the instant rate; later ticks move 20 % towards it."""
    rate = EWMARate(alpha=0.2, interval=10.0)
    rate.tick()
    assert rate.rate == 0.0
    rate.incr(100)
    rate.tick()
    assert rate.rate == 10.0
    rate.incr(200)
    rate.tick()
    assert rate.rate == pytest.approx(12.0)


def _desired(**kw: float) -> tuple[int, float]:
    args: dict[str, float] = {
        "current": 4,
        "min_shards": 1,
        "max_shards": 50,
        "rate_in": 1000.0,
        "rate_out": 1000.0,
        "rate_dropped": 0.0,
        "rate_out_duration": 4.0,
        "highest_received_s": 100.0,
        "highest_sent_s": 100.0,
    }
    args.update(kw)
    current = int(args.pop("current"))
    min_shards = int(args.pop("min_shards"))
    max_shards = int(args.pop("max_shards"))
    return desired_shards(current=current, min_shards=min_shards, max_shards=max_shards, **args)


def test_desired_shards_formula() -> None:
    """Keep within ±30 %, scale up on load or backlog, clamp, never scale down while behind."""
    assert _desired() == (4, 4.0)
    assert _desired(rate_out=0.0) == (4, 4.0)
    assert _desired(rate_out_duration=10.0) == (10, 10.0)
    assert _desired(rate_out_duration=1.0)[0] == 1
    assert _desired(rate_out_duration=1.0, highest_sent_s=80.0)[0] == 4  # 20 s behind
    assert _desired(rate_out_duration=100.0)[0] == 50
    # backlog: 100 s behind at 1000/s adds 0.05 * 100000 items' worth of time
    assert _desired(rate_out_duration=1.0, highest_sent_s=0.0) == (6, 6.0)
    # half the data dropped: kept ratio 0.5 halves the work
    assert _desired(rate_dropped=1000.0, rate_out_duration=16.0) == (8, 8.0)


def test_ssl_context_from_tls_config() -> None:
    """insecure_skip_verify disables verification; versions map to ssl.TLSVersion."""
    ctx = build_ssl_context(TLSConfig(insecure_skip_verify=True, min_version="TLS12"))
    assert ctx.verify_mode == ssl.CERT_NONE
    assert not ctx.check_hostname
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert build_ssl_context(TLSConfig()).verify_mode == ssl.CERT_REQUIRED
