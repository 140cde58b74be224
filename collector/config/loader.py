"""The whole load: read the file, compose and expand it, read every area, raise all problems.

`load_config` reads a file and `load_config_text` does the rest: `compose` and `expand_env`
(`collector.config.yaml_tree`), the top-level keys and agent-mode refusals, then ``global``
and the jobs (`collector.config.scrape`), the ``scrape_config_files`` matches (each with its own
directory and locations), and ``remote_write`` (`collector.config.remote_write`). Problems are
collected across all of that (`collector.config.section.Problems`) and raised at the end as one
`ConfigError` whose ``problems`` list every one in file order, so ``collector check config``
can show them all. The result is a `Config` (`collector.config.schema`).

Prometheus counterpart: ``config.LoadFile`` / ``config.Load`` and ``Config.UnmarshalYAML`` in
``config/config.go``.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Mapping

from collector.config.remote_write import parse_remote_writes
from collector.config.schema import Config, GlobalConfig, ScrapeConfig
from collector.config.scrape import parse_global, parse_scrape_config
from collector.config.section import Problems, Section, Source, names
from collector.config.yaml_tree import Tree, compose, expand_env, idx, is_empty, join
from collector.errors import ConfigError, ConfigFileError

__all__ = ["load_config", "load_config_text"]

# Glob shape Prometheus accepts: at most one ``*``, and not in a directory part.
_PAT_SCRAPE_CONFIG_FILE = re.compile(r"[^*]*(\*[^/]*)?")
_MAIN = "main config file"
_TOP_KEYS = names(
    "global scrape_config_files scrape_configs remote_write alerting rule_files remote_read"
)


def load_config(path: str, *, env: Mapping[str, str] | None = None) -> Config:
    """Read, expand, validate and default the config file at ``path``.

    Relative paths inside are resolved against the file's directory (made absolute). ``env``
    defaults to ``os.environ``. Raises `ConfigFileError` (a `ConfigError` with ``file`` set) when
    the file cannot be read, and `ConfigError` listing every problem when it is refused.
    """
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ConfigFileError(f"cannot read config file: {exc.strerror or exc}", file=path) from exc
    except UnicodeDecodeError as exc:
        raise ConfigFileError(f"config file is not valid UTF-8: {exc}", file=path) from exc
    base_dir = os.path.dirname(os.path.abspath(path))
    return load_config_text(text, base_dir=base_dir, env=env, file=path)


def load_config_text(
    text: str, *, base_dir: str, env: Mapping[str, str] | None = None, file: str = ""
) -> Config:
    """Load a config from YAML ``text``; relative paths are joined to ``base_dir``.

    ``file`` only labels errors and fills `Config.path`. An empty document gives all defaults.
    Raises one `ConfigError` for all problems found: its own attributes are the first problem's
    (in file order), ``problems`` holds each with its YAML path, line and column.

    Remote-write identity: each ``remote_write`` block, as written but after environment
    expansion, is serialised with ``yaml.safe_dump(block, sort_keys=True,
    default_flow_style=False, allow_unicode=True)`` and hashed with MD5; the hex digest is
    `RemoteWriteConfig.config_hash` and its first 6 characters the default ``name``. Prometheus
    hashes its own YAML rendering of the *defaulted* block, which we cannot reproduce byte for
    byte, so ``remote_name`` values differ from Prometheus's; within collector they are stable
    across restarts and reloads, and change exactly when the block's text changes (spelling out a
    default counts as a change).
    """
    env_map: Mapping[str, str] = os.environ if env is None else env
    problems = Problems()
    try:
        config = _load_main(text, base_dir=base_dir, env=env_map, file=file, problems=problems)
    except ConfigError as exc:  # a check that could not go on: keep what was found before it
        problems.add(exc)
        config = None
    problems.raise_if_any()
    assert config is not None  # no problems means the load ran to the end
    return config


def _read(src: Source, text: str) -> tuple[Tree, bool]:
    """Compose and expand ``text`` for ``src``; ``ok`` is False when it is not YAML (reported)."""
    composed = compose(text, file=src.file)
    src.locations = composed.locations
    for problem in composed.problems:
        src.problems.add(problem)
    if not composed.complete:
        return None, False
    return expand_env(composed.tree, src.env), True


def _load_main(
    text: str, *, base_dir: str, env: Mapping[str, str], file: str, problems: Problems
) -> Config | None:
    """Load the main file and the ``scrape_config_files`` it names; None if it is not YAML."""
    src = Source(file=file, base_dir=base_dir, env=env, problems=problems)
    tree, ok = _read(src, text)
    if not ok:
        return None
    top = Section(
        tree,
        "",
        src=src,
        kind="config",
        known=_TOP_KEYS,
        unsupported=frozenset({"runtime", "storage", "tracing", "otlp"}),
    )
    for key in ("alerting", "rule_files", "remote_read"):
        if key in top.raw and not _agent_mode_empty(top.raw[key]):
            top.report(f"field {key} is not allowed in agent mode", key)
    global_config = parse_global(top)

    patterns: list[str] = []
    for i, pattern in enumerate(top.str_list("scrape_config_files")):
        if _PAT_SCRAPE_CONFIG_FILE.fullmatch(pattern) is None:
            src.report(
                f'invalid scrape config file path "{pattern}"', idx("scrape_config_files", i)
            )
        else:
            patterns.append(src.join_dir(pattern))

    first_seen: dict[str, str] = {}
    scrape_configs = _scrape_configs(top, global_config, first_seen, _MAIN)
    for pattern in patterns:
        for filename in sorted(glob.glob(pattern)):
            scrape_configs.extend(
                _load_scrape_config_file(src, filename, global_config, first_seen)
            )

    remote_write = parse_remote_writes(top)
    return Config(
        global_config=global_config,
        scrape_configs=tuple(scrape_configs),
        remote_write=remote_write,
        source=text,
        path=file,
        scrape_config_files=tuple(patterns),
    )


def _scrape_configs(
    top: Section, global_config: GlobalConfig, first_seen: dict[str, str], where: str
) -> list[ScrapeConfig]:
    """The ``scrape_configs`` of one file; a job name already used elsewhere is refused.

    ``first_seen`` maps job names to where they were first found (``where`` for this file).
    """
    out: list[ScrapeConfig] = []
    for i, raw in enumerate(top.list_("scrape_configs")):
        path = idx("scrape_configs", i)
        sc = parse_scrape_config(top.src, raw, path, global_config)
        if sc is None:
            continue
        if sc.job_name in first_seen:
            first = first_seen[sc.job_name]
            # Prometheus names the first file only for jobs of included files.
            suffix = "" if where == _MAIN else f", first found in {first}"
            top.src.report(
                f'found multiple scrape configs with job name "{sc.job_name}"{suffix}',
                join(path, "job_name"),
            )
        elif sc.job_name:
            first_seen[sc.job_name] = where
        out.append(sc)
    return out


def _load_scrape_config_file(
    main: Source, filename: str, global_config: GlobalConfig, first_seen: dict[str, str]
) -> list[ScrapeConfig]:
    """Jobs of one ``scrape_config_files`` match; its relative paths use its own dir."""
    abs_name = os.path.abspath(filename)
    src = Source(
        file=abs_name, base_dir=os.path.dirname(abs_name), env=main.env, problems=main.problems
    )
    try:
        with open(filename, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        src.report(f"cannot read scrape config file: {exc}")
        return []
    tree, ok = _read(src, text)
    if not ok:
        return []
    top = Section(
        tree, "", src=src, kind="scrape_configs file", known=frozenset({"scrape_configs"})
    )
    return _scrape_configs(top, global_config, first_seen, f'"{abs_name}"')


def _agent_mode_empty(value: Tree) -> bool:
    """Whether a server-only section holds nothing (Prometheus accepts empty ones)."""
    if is_empty(value):
        return True
    if isinstance(value, dict):
        return all(is_empty(v) for v in value.values())
    return False
