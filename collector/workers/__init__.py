"""Scrape workers: the scrape loops of one agent spread over N processes (``--scrape.workers``).

Place in the pipeline: between the CLI and the agent. One asyncio process uses one core; with
``--scrape.workers=N`` (N > 1) the agent's main process keeps discovery, the web UI/API,
reloads and signals, and N worker processes each run a scrape manager and their own remote
writers for their share of the targets::

    main:   DiscoveryManager ──full target sets──▶ every worker (pipe, latest wins)
            web /api/v1/targets, /metrics  ◀──snapshots (1 s)── every worker
    worker: ScrapeManager (ring share) ──▶ RemoteWriter × destinations
            (<storage.path>/workers/<i>/<remote_name>/wal)

Targets are assigned by rendezvous hashing (`collector.model.rendezvous`, the hash cluster
sharding uses) over the members ``worker-0 .. worker-N-1``: every worker relabels every target
and keeps those it owns, so a target change moves one target and a change of N moves about
1/N of them. ``--scrape.workers=1`` (and ``auto`` resolving to 1) is the in-process agent,
unchanged, with no extra process.

Differences from the in-process agent, on purpose or not yet done:

* ``target_limit`` counts each worker's share of a pool, as cluster sharding counts each
  member's (a pool over the limit by less than N-fold may not be flagged);
* a reload is validated and answered by the main process (the file loads, discovery applies);
  a worker that then fails to apply it logs the error and ``prometheus_config_last_reload_
  successful`` (the lowest over the processes) turns 0;
* ``auto`` is decided at start; it does not add workers while running;
* not with ``--cluster.*`` or the remote-write receiver (refused when asked explicitly).

Modules: ``plan`` (the flag, ``auto``, the ring), ``protocol`` (framed messages on the pipe),
``queues`` (write-ahead queues left by another worker count, drained), ``metrics`` (one
``/metrics`` from every process), ``worker`` (the worker process), ``supervisor`` (the main
process: start, restart, broadcast, merge).
"""
