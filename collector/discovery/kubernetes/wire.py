"""The API server's wire, as the informer reads it: paths, list and watch shapes, errors.

Place in the pipeline: `collector.discovery.kubernetes.informer` lists and watches with these;
nothing here does I/O. Shapes are `TypedDict` because they are JSON on the wire (rule 5).

Prometheus counterpart: the generated clients of ``k8s.io/client-go`` (paths) and
``apimachinery``'s ``metav1.Status`` (errors).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal, TypedDict

import orjson

from collector.discovery.kubernetes.objects import RawObject
from collector.errors import KubernetesAPIError

__all__ = [
    "GROUPS",
    "RESOURCE_PATHS",
    "RawEvent",
    "RawList",
    "RawListMeta",
    "list_problem",
    "peek_continue",
    "status_error",
]

RESOURCE_PATHS: Mapping[str, tuple[str, bool]] = {
    "nodes": ("/api/v1", False),
    "namespaces": ("/api/v1", False),
    "pods": ("/api/v1", True),
    "services": ("/api/v1", True),
    "endpoints": ("/api/v1", True),
    "endpointslices": ("/apis/discovery.k8s.io/v1", True),
    "ingresses": ("/apis/networking.k8s.io/v1", True),
}
"""Resource -> (API prefix, namespaced) (kubernetes-api.md §B.1)."""

GROUPS = {"endpointslices": "discovery.k8s.io", "ingresses": "networking.k8s.io"}


class RawEvent(TypedDict, total=False):
    """One watch line."""

    type: Literal["ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"]
    object: RawObject


class RawListMeta(TypedDict, total=False):
    resourceVersion: str
    # "continue" is a keyword; read with .get("continue")


class RawList(TypedDict, total=False):
    kind: str
    apiVersion: str
    metadata: dict[str, Any]
    items: list[RawObject] | None


CONTINUE_RE = re.compile(rb'"continue"\s*:\s*"([^"\\]*)"')


def peek_continue(raw: bytes) -> str:
    """The list's ``continue`` token, read from the metadata before ``items`` ("" if none).

    Only a hint for prefetching: the informer still takes the token of the decoded body.
    """
    end = raw.find(b'"items"', 0, 8192)
    if end < 0:
        return ""
    found = CONTINUE_RE.search(raw, 0, end)
    return found.group(1).decode() if found else ""


def status_error(status: int, body: bytes) -> KubernetesAPIError:
    """The error a non-200 answer stands for, with the ``reason`` of its Status body.

    A body that is no Status (a proxy's HTML page) is quoted, its first 200 bytes on one line.
    """
    reason, message = "", " ".join(body[:200].decode("utf-8", "replace").split())
    try:
        data = orjson.loads(body)
        if isinstance(data, dict):  # strings only: repr of a deeply nested value overflows
            found_reason, found_message = data.get("reason", ""), data.get("message", message)
            reason = found_reason if isinstance(found_reason, str) else ""
            message = found_message if isinstance(found_message, str) else message
    except orjson.JSONDecodeError:
        pass
    return KubernetesAPIError(message, status=status, reason=reason)


def list_problem(body: object) -> str:
    """What makes a decoded LIST page unusable ("" if nothing): a shape the informer reads.

    client-go fails to decode such a page and lists again after a backoff; so does the
    informer (fuzzing: a page, an item or its metadata of another JSON type).
    """
    if not isinstance(body, dict):
        return f"the response is a JSON {type(body).__name__}, not an object"
    meta = body.get("metadata") or {}
    if not isinstance(meta, dict) or not isinstance(meta.get("resourceVersion", ""), str):
        return "the list's metadata is not an object with a string resourceVersion"
    if not isinstance(meta.get("continue") or "", str):
        return "the list's continue token is not a string"
    items = body.get("items") or []
    if not isinstance(items, list):
        return f"items is a JSON {type(items).__name__}, not a list"
    for index, obj in enumerate(items):
        if not isinstance(obj, dict) or not isinstance(obj.get("metadata") or {}, dict):
            return f"items[{index}] is not an object with object metadata"
    return ""
