"""Cluster membership for sharded scraping: who the members are, so each scrapes its share.

Place in the pipeline: beside discovery, above scrape. The agent runs one `Membership`
(``membership``) when a ``--cluster.*`` peer source is given. It turns the member list of its
source into a `collector.model.rendezvous.Ring` and hands every change to the scrape manager,
which keeps only this member's share of the targets (rendezvous hashing after target
relabeling) and hands targets over without gaps or false staleness markers.

Modules: ``settings`` (flags -> `ClusterSettings`, validated), ``peers`` (the static list and
the peers file), ``kubernetes`` (ready pods of the agent's own StatefulSet through the shared
Kubernetes pod informer), ``membership`` (source -> ring -> scrape manager, self-metrics and
the ``/api/v1/cluster`` answer). Only ``kubernetes`` reaches Kubernetes, through
`collector.discovery.kubernetes` (never kubernetes_asyncio directly) and only when used.

No gossip, no leader, no home-made consensus (ARCHITECTURE "Scale"): members agree because they
read the same membership (the API server, or the same list) and compute the same hashes.
"""
