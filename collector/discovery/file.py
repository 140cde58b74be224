"""file_sd: target groups from JSON or YAML files matched by globs, re-read when they change.

Each matched file holds a list of ``{targets, labels}`` (`parse_target_groups`). Group ``i`` of
file ``f`` has ``source = f"{f}:{i}"`` and the label ``__meta_filepath = f``. The format follows
the extension: ``.json`` is JSON, ``.yml`` / ``.yaml`` is YAML (any case).

Change detection. Prometheus watches the directories with inotify (fsnotify); the standard
library has no inotify, so this provider *polls*: every ``poll_interval`` (5 s) it expands the
globs and compares each file's ``(mtime_ns, size, inode)`` with the last pass, and re-reads the
files whose signature changed, appeared or disappeared. Every ``refresh_interval`` (default 5 m)
it re-reads every file regardless, as Prometheus does, which also catches the rare rewrite that
keeps mtime, size and inode. A rename-into-place (how ConfigMaps and careful writers update)
changes the inode, so it is seen on the next poll.

Failures. A file that cannot be read or parsed keeps the groups it had before and counts
``prometheus_sd_file_read_errors_total``; it is retried when its signature changes and on every
full refresh. A file that no longer matches (deleted, renamed away) sends an empty group for each
of its sources; a file that shrinks from N to M groups sends empty groups for ``M..N-1``.

Reading runs through ``run_blocking`` (``asyncio.to_thread`` by default) so a slow mount never
stalls the event loop; tests pass an inline runner to stay on virtual time.

Prometheus counterpart: ``discovery/file/file.go``.
"""

from __future__ import annotations

import asyncio
import functools
import glob
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NoReturn, Protocol, TypeVar

import orjson
import yaml

from collector.config import FileSDConfig
from collector.config.yaml_read import safe_load
from collector.discovery.discoverer import SendGroups
from collector.discovery.metrics import FileSDMetrics, RefreshMetrics
from collector.discovery.refresh import Sleep
from collector.discovery.static import parse_target_groups
from collector.errors import DiscoveryError
from collector.model.targetgroup import TargetGroup

__all__ = ["FILEPATH_LABEL", "POLL_INTERVAL", "BlockingRunner", "FileDiscoverer", "read_file"]

log = logging.getLogger(__name__)

FILEPATH_LABEL = "__meta_filepath"
POLL_INTERVAL = 5.0
"""Seconds between two change checks (stat of every matched file)."""

_T = TypeVar("_T")

Signature = tuple[int, int, int]
"""``(st_mtime_ns, st_size, st_ino)``: a change in any of them means "re-read the file"."""


class BlockingRunner(Protocol):
    """Runs a blocking callable off the event loop (``asyncio.to_thread`` by default)."""

    def __call__(self, func: Callable[[], _T], /) -> Awaitable[_T]:
        """Run ``func`` and return its result."""
        ...


async def _to_thread(func: Callable[[], _T], /) -> _T:
    return await asyncio.to_thread(func)


def read_file(path: str) -> list[TargetGroup]:
    """Read and validate one file_sd file; raises `DiscoveryError` naming the file and item."""
    extension = os.path.splitext(path)[1].lower()
    try:
        with open(path, "rb") as handle:
            content = handle.read()
    except OSError as exc:
        raise DiscoveryError(f"{path}: {exc.strerror or exc}") from exc
    data: object
    if extension == ".json":
        try:
            data = orjson.loads(content)
        except orjson.JSONDecodeError as exc:
            raise DiscoveryError(f"{path}: invalid JSON: {exc}") from exc
        if data is None:
            raise DiscoveryError(f"{path}: expected a list of target groups, got null")
    elif extension in (".yml", ".yaml"):
        try:
            data = safe_load(content)
        except yaml.YAMLError as exc:
            raise DiscoveryError(f"{path}: invalid YAML: {exc}") from exc
    else:
        raise DiscoveryError(f"{path}: unsupported file extension {extension!r}")
    return parse_target_groups(
        data, location=path, source_prefix=path, meta_labels={FILEPATH_LABEL: path}
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class _Outcome:
    """What one pass found for one matched file."""

    path: str
    signature: Signature | None
    mtime: float = 0.0
    changed: bool = True
    groups: list[TargetGroup] | None = None
    error: str = ""


def _scan(
    patterns: Sequence[str], previous: Mapping[str, Signature | None], *, force: bool
) -> list[_Outcome]:
    """Expand the globs, stat every match, read those that changed (all of them if ``force``)."""
    # Go's filepath.Glob matches dot files too, hence include_hidden.
    paths = sorted(
        {path for pattern in patterns for path in glob.glob(pattern, include_hidden=True)}
    )
    outcomes: list[_Outcome] = []
    for path in paths:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue  # vanished between glob and stat: treated as gone
        except OSError as exc:
            outcomes.append(_Outcome(path=path, signature=None, error=str(exc)))
            continue
        signature = (st.st_mtime_ns, st.st_size, st.st_ino)
        if not force and path in previous and previous[path] == signature:
            outcomes.append(_Outcome(path=path, signature=signature, changed=False))
            continue
        try:
            groups = read_file(path)
        except DiscoveryError as exc:
            outcomes.append(_Outcome(path=path, signature=signature, error=str(exc)))
            continue
        outcomes.append(_Outcome(path=path, signature=signature, mtime=st.st_mtime, groups=groups))
    return outcomes


@dataclass(frozen=True, slots=True, kw_only=True)
class _FileState:
    signature: Signature | None
    count: int
    """How many sources (``<path>:0`` … ``<path>:count-1``) the manager holds for this file."""


class FileDiscoverer:
    """One ``file_sd_configs`` entry: polls its globs and sends the groups of changed files."""

    def __init__(
        self,
        config: FileSDConfig,
        *,
        metrics: FileSDMetrics | None = None,
        refresh_metrics: RefreshMetrics | None = None,
        poll_interval: float = POLL_INTERVAL,
        sleep: Sleep = asyncio.sleep,
        run_blocking: BlockingRunner = _to_thread,
    ) -> None:
        self._patterns = tuple(config.files)
        self._metrics = metrics
        self._refresh_metrics = refresh_metrics
        self._poll_interval = min(poll_interval, config.refresh_interval)
        # A full re-read every refresh_interval, counted in polls so no clock is needed.
        self._polls_per_refresh = max(1, round(config.refresh_interval / self._poll_interval))
        self._sleep = sleep
        self._run_blocking = run_blocking
        self._files: dict[str, _FileState] = {}

    async def run(self, send: SendGroups) -> NoReturn:
        """Poll forever; the first pass always sends (maybe ``[]``) to mark the provider synced."""
        polls = 0
        while True:
            await self._pass(send, force=polls % self._polls_per_refresh == 0, first=polls == 0)
            polls += 1
            await self._sleep(self._poll_interval)

    async def _pass(self, send: SendGroups, *, force: bool, first: bool) -> None:
        previous = {path: state.signature for path, state in self._files.items()}
        started = time.perf_counter()
        try:
            outcomes = await self._run_blocking(
                functools.partial(_scan, self._patterns, previous, force=force)
            )
        except Exception as exc:  # errors are data (STYLE rule 3)
            log.error("file discovery: scan of %s failed: %s", list(self._patterns), exc)
            if self._refresh_metrics is not None:
                self._refresh_metrics.failures.inc()
            if first:
                send([])
            return
        updates, changed, errors = self._apply(outcomes)
        if changed:
            elapsed = time.perf_counter() - started
            if self._metrics is not None:
                self._metrics.scan_duration.observe(elapsed)
            if self._refresh_metrics is not None:
                self._refresh_metrics.observe(elapsed)
                if errors:
                    self._refresh_metrics.failures.inc()
        if updates or first:
            send(updates)

    def _apply(self, outcomes: Sequence[_Outcome]) -> tuple[list[TargetGroup], bool, int]:
        """Fold one pass into the per-file state; returns (groups to send, changed?, errors)."""
        updates: list[TargetGroup] = []
        files: dict[str, _FileState] = {}
        changed = False
        errors = 0
        for outcome in outcomes:
            old = self._files.get(outcome.path)
            old_count = old.count if old is not None else 0
            if not outcome.changed and old is not None:
                files[outcome.path] = old
                continue
            changed = True
            if outcome.groups is None:
                errors += 1
                if self._metrics is not None:
                    self._metrics.read_errors.inc()
                log.error(
                    "file discovery: error reading file, keeping its targets: %s", outcome.error
                )
                # Keep the previous groups; remember the signature so an unchanged bad file is
                # not re-read (and re-counted) on every poll, only on change or full refresh.
                files[outcome.path] = _FileState(signature=outcome.signature, count=old_count)
                continue
            groups = outcome.groups
            updates.extend(groups)
            updates.extend(_deleted(outcome.path, range(len(groups), old_count)))
            files[outcome.path] = _FileState(signature=outcome.signature, count=len(groups))
            if self._metrics is not None:
                self._metrics.mtime.labels(filename=outcome.path).set(outcome.mtime)
        for path, old in self._files.items():
            if path not in files:
                changed = True
                log.debug("file discovery: %s is gone, deleting its %d groups", path, old.count)
                updates.extend(_deleted(path, range(old.count)))
                if self._metrics is not None:
                    try:
                        self._metrics.mtime.remove(path)
                    except KeyError:
                        pass
        self._files = files
        return updates, changed, errors


def _deleted(path: str, indexes: range) -> list[TargetGroup]:
    """Empty groups: "delete what source ``<path>:<i>`` said before" (spec §1.3)."""
    return [TargetGroup(source=f"{path}:{index}") for index in indexes]
