"""Scrape workers: the scrape loops of one agent spread over N processes (``--scrape.workers``).

Place in the pipeline: between the CLI and the agent. One asyncio process uses one core; with
N > 1 scrape workers the agent's main process is worker 0 (its whole in-process pipeline, plus
discovery, the web UI/API, reloads and signals) and N-1 worker processes each run a scrape
manager and their own remote writers for their share of the targets::

    main (worker 0): DiscoveryManager ─▶ its ScrapeManager (share 0) ─▶ RemoteWriter × D
                                      └▶ full target sets ─pipe─▶ every worker process
                     web /api/v1/targets, /metrics ◀─snapshots (1 s)─ every worker process
    worker i:        ScrapeManager (share i) ─▶ RemoteWriter × D
                     (<storage.path>/workers/<i>/<remote_name>/wal)

Targets are assigned by rendezvous hashing (`collector.model.rendezvous`, the hash cluster
sharding uses) over the members ``worker-0 .. worker-N-1``: every worker relabels every target
and keeps those it owns, so a target change moves one target and a change of N moves about
1/N of them. ``--scrape.workers=1`` is the in-process agent, unchanged, with no extra process;
``auto`` (the default) starts that way and adds a process only when those running are
saturated (`collector.workers.growth`).

Differences from the in-process agent, on purpose or not yet done:

* ``target_limit`` counts each worker's share of a pool, as cluster sharding counts each
  member's (a pool over the limit by less than N-fold may not be flagged);
* a reload is validated and answered by the main process (the file loads, discovery applies);
  a worker that then fails to apply it logs the error and ``prometheus_config_last_reload_
  successful`` (the lowest over the processes) turns 0;
* ``auto`` adds workers while running but never removes one (a restart starts from one);
* not with ``--cluster.*`` or the remote-write receiver (refused when asked explicitly).

Modules: ``plan`` (the flag, ``auto``, the ring), ``growth`` (when ``auto`` adds a process),
``protocol`` (framed messages on the pipe), ``queues`` (write-ahead queues left by another
worker count, drained), ``metrics`` (one ``/metrics`` from every process), ``views`` (one web
API), ``worker`` (a worker process), ``handle`` (a worker process seen from the main one),
``supervisor`` (the main process).
"""
