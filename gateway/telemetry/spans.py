"""The gateway's spans: ``workers.wire.spans``' cheap spans, batched for the span exporter
process and sampled by the SDK's sampler (``OTEL_TRACES_SAMPLER``), asked once per trace
that enters the gateway."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk.trace.sampling import DEFAULT_ON, Decision, Sampler
from opentelemetry.trace import SpanContext

from workers import LightTracer, Record, follow_parent

GATEWAY_SCOPE = "coldbrew.gateway"
# Records handed to the sink at once; a timer flushes a partial batch.
BATCH_SIZE = 128


class SpanBatch:
    """Finished span records, handed to ``sink`` a batch at a time (``BATCH_SIZE``, or
    whatever ``flush`` finds). The sink must not block: it runs on the event loop."""

    def __init__(
        self, sink: Callable[[list[Record]], None], dropped: Callable[[], int] = lambda: 0
    ) -> None:
        self._sink = sink
        self._records: list[Record] = []
        # How many spans the sink has dropped so far (it may, rather than block).
        self.dropped = dropped

    def add(self, record: Record) -> None:
        self._records.append(record)
        if len(self._records) >= BATCH_SIZE:
            self.flush()

    def extend(self, records: Sequence[Record]) -> None:
        self._records.extend(records)
        if len(self._records) >= BATCH_SIZE:
            self.flush()

    def flush(self) -> None:
        if self._records:
            batch, self._records = self._records, []
            self._sink(batch)


def gateway_tracer(batch: SpanBatch, sampler: Sampler) -> LightTracer:
    """A tracer whose spans go to ``batch``, ``sampler`` deciding which traces to keep."""
    if sampler is DEFAULT_ON:
        # The SDK's default, decided without its machinery.
        return LightTracer(batch.add, GATEWAY_SCOPE, follow_parent)

    def sample(parent: SpanContext, *asked: Any) -> bool:
        return sampler.should_sample(*asked).decision is Decision.RECORD_AND_SAMPLE

    return LightTracer(batch.add, GATEWAY_SCOPE, sample)
