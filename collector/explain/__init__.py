"""Explaining relabeling: every step, for a target or a series, from the API and the terminal.

Place in the pipeline: beside it. Nothing here runs while the agent scrapes; it answers "why is
my target (or series) missing?" with the same compiled rules the pipeline runs:

* `collector.explain.core` looks the rules up in a loaded `Config` and runs them through the
  pure step evaluator `collector.model.relabel_steps`. The agent serves it as
  ``/api/v1/targets/relabel_steps`` and ``/api/v1/series_relabel_steps``.
* `collector.explain.render` prints those steps as terminal tables (``collector explain``).
* `collector.explain.golden` runs golden relabel tests (``collector test relabel``).
* `collector.explain.command` is the command line of both, imported lazily by `collector.cli`.

The package sits above the pipeline stages (it reuses the scrape pool's target population,
`collector.scrape.target`, so an explanation ends where the pool would) and below the agent,
which imports `core`.
"""
