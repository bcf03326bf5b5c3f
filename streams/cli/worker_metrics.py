"""A worker's Prometheus /metrics page, parsed (`rewards status`, the harnesses, the tests)."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class MetricsEndpoint:
    """A worker's /metrics page, parsed."""

    def __init__(self, web_port: int, host: str = "127.0.0.1") -> None:
        self.url = f"http://{host}:{web_port}/metrics"

    def metrics_text(self) -> str:
        """The raw /metrics page."""
        with urllib.request.urlopen(self.url, timeout=5) as response:  # noqa: S310 - our own worker
            return str(response.read().decode())

    def samples(self) -> Samples:
        """Every sample on /metrics, keyed by (name, sorted labels)."""
        out: Samples = {}
        for family in text_string_to_metric_families(self.metrics_text()):
            for s in family.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    def total(self, name: str, **labels: str) -> float:
        """Sum of the samples named `name` whose labels include `labels`."""
        want = set(labels.items())
        return sum(v for (n, ls), v in self.samples().items() if n == name and want <= set(ls))
