"""Kubernetes, the floor: where the API server is, who we are to it, and its proxy.

Place in the pipeline: below both users of the API server. Discovery
(`collector.discovery.kubernetes`) lists and watches through a `connection.Connection`; scrape
fetches targets through the API server with `proxy.ApiServerProxy` (``scrape_via_apiserver_proxy``).
Neither knows the other; both stand on this package, which knows neither.

Modules: ``connection`` (`ConnectionSpec`: which server and credentials a config means;
`Connection`: base URL, TLS, headers and the aiohttp session), ``auth`` (kubeconfig and
in-cluster loading: the only module of the project that imports kubernetes_asyncio, and only
when a connection actually loads one of those, so an agent without Kubernetes never pays for
it), ``proxy`` (one target -> the API server proxy URL and credentials).

Prometheus counterpart: ``discovery/kubernetes/kubernetes.go`` (``New``: the client), client-go's
``rest``/``clientcmd``; the proxy has none (Prometheus users write relabel rules for it).
"""
