"""The one metrics helper every Turnout package uses.

Metrics follow Ray's conventions: they are `ray.util.metrics` Counter/Gauge/Histogram
objects, exported by each node's Ray metrics agent on one Prometheus endpoint per node
(the port is `ray start --metrics-export-port` / `ray.init(_metrics_export_port=...)`;
KubeRay pods use 8080). Ray prefixes every name with `ray_` and counters get `_total`,
so `turnout_gateway_requests` is scraped as `ray_turnout_gateway_requests_total`.
Workers push to the agent every `metrics_report_interval_ms` (10 s by default) and the
agent drops a gauge not refreshed for two intervals, so gauges must be set periodically.
Ray rebuilds a histogram's `_sum` from bucket midpoints: use the buckets, not `_sum`.

Definitions are module-level `Metric` handles registered in REGISTRY (so tests can list
what the code exports). The backing object is created lazily, on first record, inside
the process that records (Ray requires that): a `ray.util.metrics` object when Ray is
initialized, otherwise a process-local `prometheus_client` metric in LOCAL_REGISTRY
named exactly as Ray would export it (unit tests and the CLI can read it; nothing is
served). Recording never raises: metrics must not break a request.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Literal

import prometheus_client

logger = logging.getLogger("turnout.telemetry")

EXPORT_PREFIX = "ray_"
Kind = Literal["counter", "gauge", "histogram"]
# Label names that could carry a secret; no Turnout metric may use them.
FORBIDDEN_LABELS = frozenset({"api_key", "key", "token", "authorization", "secret", "password",
                              "admin_key", "bearer"})
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
TOKEN_LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56)

LOCAL_REGISTRY = prometheus_client.CollectorRegistry(auto_describe=True)


@dataclass(frozen=True)
class MetricDef:
    name: str  # as defined in code: turnout_<component>_<what>_<unit>
    kind: Kind
    description: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()

    @property
    def component(self) -> str:
        return self.name.split("_")[1]

    @property
    def exported(self) -> str:
        """The name Prometheus scrapes (counters: the `_total` series)."""
        return EXPORT_PREFIX + self.name + ("_total" if self.kind == "counter" else "")

    @property
    def series(self) -> tuple[str, ...]:
        """Every series name a scrape shows for this metric."""
        base = EXPORT_PREFIX + self.name
        if self.kind == "histogram":
            return (base + "_bucket", base + "_sum", base + "_count")
        return (self.exported,)


REGISTRY: dict[str, MetricDef] = {}


@dataclass
class Metric:
    """A lazily-backed metric handle; record with inc/set/observe and keyword labels."""

    spec: MetricDef
    _ray: Any = field(default=None, repr=False)
    _local: Any = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def inc(self, value: float = 1.0, **labels: Any) -> None:
        if value > 0:  # Ray rejects non-positive increments
            self._record(value, labels)

    def set(self, value: float | None, **labels: Any) -> None:
        if value is not None:
            self._record(value, labels)

    def observe(self, value: float | None, **labels: Any) -> None:
        if value is not None and value >= 0:
            self._record(value, labels)

    # Handles are module globals; if one is ever pickled, the copy rebuilds its backend
    # in the process that unpickles it (Ray metrics must be created where they record).
    def __reduce__(self) -> tuple:
        return (Metric, (self.spec,))

    def _record(self, value: float, labels: dict[str, Any]) -> None:
        try:
            tags = {k: _label_value(labels.get(k)) for k in self.spec.labels}
            if _ray_ready():
                self._record_ray(float(value), tags)
            else:
                self._record_local(float(value), tags)
        except Exception:  # a metric must never fail the request that records it
            logger.debug("metric %s not recorded", self.spec.name, exc_info=True)

    def _record_ray(self, value: float, tags: dict[str, str]) -> None:
        if self._ray is None:
            with self._lock:
                if self._ray is None:
                    self._ray = _make_ray(self.spec)
        m, kind = self._ray, self.spec.kind
        if kind == "counter":
            m.inc(value, tags)
        elif kind == "gauge":
            m.set(value, tags)
        else:
            m.observe(value, tags)

    def _record_local(self, value: float, tags: dict[str, str]) -> None:
        if self._local is None:
            with self._lock:
                if self._local is None:
                    self._local = _make_local(self.spec)
        m = self._local.labels(**tags) if self.spec.labels else self._local
        kind = self.spec.kind
        if kind == "counter":
            m.inc(value)
        elif kind == "gauge":
            m.set(value)
        else:
            m.observe(value)


def _label_value(v: Any) -> str:
    return "" if v is None else str(v)


def _ray_ready() -> bool:
    try:
        import ray
    except ImportError:
        return False
    return ray.is_initialized()


def _make_ray(spec: MetricDef) -> Any:
    from ray.util import metrics

    if spec.kind == "counter":
        return metrics.Counter(spec.name, spec.description, tag_keys=spec.labels)
    if spec.kind == "gauge":
        return metrics.Gauge(spec.name, spec.description, tag_keys=spec.labels)
    return metrics.Histogram(spec.name, spec.description, boundaries=list(spec.buckets),
                             tag_keys=spec.labels)


def _make_local(spec: MetricDef) -> Any:
    name = EXPORT_PREFIX + spec.name  # prometheus_client adds _total to counters itself
    kw = {"registry": LOCAL_REGISTRY, "labelnames": spec.labels}
    if spec.kind == "counter":
        return prometheus_client.Counter(name, spec.description, **kw)
    if spec.kind == "gauge":
        return prometheus_client.Gauge(name, spec.description, **kw)
    return prometheus_client.Histogram(name, spec.description, buckets=spec.buckets, **kw)


def _define(name: str, kind: Kind, description: str, labels: tuple[str, ...],
            buckets: tuple[float, ...] = ()) -> Metric:
    if not name.startswith("turnout_") or name.endswith("_total"):
        raise ValueError(f"metric {name!r}: names are turnout_<component>_<what>_<unit>, no _total")
    bad = FORBIDDEN_LABELS.intersection(labels)
    if bad:
        raise ValueError(f"metric {name!r}: label {sorted(bad)[0]!r} could carry a secret")
    spec = MetricDef(name, kind, description, tuple(labels), tuple(buckets))
    if name in REGISTRY and REGISTRY[name] != spec:
        raise ValueError(f"metric {name!r} is defined twice with different specs")
    REGISTRY[name] = spec
    return Metric(spec)


def counter(name: str, description: str, labels: tuple[str, ...] = ()) -> Metric:
    return _define(name, "counter", description, labels)


def gauge(name: str, description: str, labels: tuple[str, ...] = ()) -> Metric:
    return _define(name, "gauge", description, labels)


def histogram(name: str, description: str, labels: tuple[str, ...] = (),
              buckets: tuple[float, ...] = LATENCY_BUCKETS_S) -> Metric:
    return _define(name, "histogram", description, labels, buckets)


def local_exposition() -> str:
    """The process-local fallback's Prometheus text (what was recorded outside Ray)."""
    return prometheus_client.generate_latest(LOCAL_REGISTRY).decode()
