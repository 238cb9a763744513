"""What the observable instruments read when metrics are collected: the gateway's live
state (workers, zygotes, tokens in use, limits, spans dropped) and its per-endpoint
totals."""

from __future__ import annotations

from collections.abc import Iterable

from gateway.runtime.admission import AdmissionStore
from gateway.runtime.deployments import Deployments
from gateway.telemetry import catalog
from gateway.telemetry.instruments import GaugeSource
from gateway.telemetry.spans import SpanBatch
from workers import PoolManager

Readings = Iterable[tuple[float, dict[str, str]]]


class LiveState:
    """Readers of the live state, one per observable instrument. Called on the thread
    that collects (the /metrics handler, or the OTLP exporter's); they only read."""

    def __init__(
        self,
        pools: PoolManager,
        deployments: Deployments,
        admission: AdmissionStore,
        region_concurrency: int,
        spans: SpanBatch | None = None,
    ) -> None:
        self._pools = pools
        self._deployments = deployments
        self._admission = admission
        self._region_concurrency = region_concurrency
        self._spans = spans

    def sources(self) -> dict[str, GaugeSource]:
        return {
            catalog.WORKERS.name: self.workers,
            catalog.ZYGOTES.name: self.zygotes,
            catalog.CONCURRENCY_LIMIT.name: self.limits,
            catalog.CONCURRENCY.name: self.in_use,
            catalog.INVOCATIONS.name: self._total("invocations"),
            catalog.BILLED_DURATION.name: self._total("billed_ms"),
            catalog.USAGE.name: self._total("gb_seconds"),
            catalog.BYTES_IN.name: self._total("bytes_in"),
            catalog.BYTES_OUT.name: self._total("bytes_out"),
            catalog.SPANS_DROPPED.name: self.spans_dropped,
        }

    def spans_dropped(self) -> Readings:
        # Only when tracing: a gateway that makes no spans drops none.
        if self._spans is not None:
            yield float(self._spans.dropped()), {}

    def workers(self) -> Readings:
        for key, stats in self._pools.statistics().items():
            assert isinstance(key, tuple)
            labels = {"cloud.account.id": key[0], "cloud.region": key[1], "faas.name": key[2]}
            yield float(stats.starting), {**labels, "state": "starting"}
            yield float(stats.idle), {**labels, "state": "idle"}
            yield float(stats.busy), {**labels, "state": "busy"}

    def zygotes(self) -> Readings:
        models = sum(s.model_zygote == "ready" for s in self._pools.statistics().values())
        yield float(self._pools.runtime_zygote_pid() is not None), {"kind": "runtime"}
        yield float(models), {"kind": "model"}

    def limits(self) -> Readings:
        scopes = set()
        for deployment in self._deployments:
            scopes.add((deployment.scope.account_id, deployment.scope.region))
            labels = {**_endpoint(deployment.scope.account_id, deployment.scope.region,
                                  deployment.name), "scope": "endpoint"}  # fmt: skip
            yield float(deployment.admission_limit), labels
        for account, region in sorted(scopes):
            labels = {"cloud.account.id": account, "cloud.region": region, "scope": "region"}
            yield float(self._region_concurrency), labels

    def in_use(self) -> Readings:
        for deployment in self._deployments:
            labels = _endpoint(
                deployment.scope.account_id, deployment.scope.region, deployment.name
            )
            yield float(self._admission.in_use(("endpoint", *deployment.key))), labels

    def _total(self, field: str) -> GaugeSource:
        def read() -> Readings:
            for key, name, totals in self._deployments.totals():
                yield float(getattr(totals, field)), _endpoint(key[0], key[1], name)

        return read


def _endpoint(account: str, region: str, name: str) -> dict[str, str]:
    return {"cloud.account.id": account, "cloud.region": region, "faas.name": name}
