"""Finished spans as plain records: what the gateway batches for its span exporter, and
what workers report for the spans model code makes.

A record is a dict of JSON values: ``trace_id`` (32 hex digits), ``span_id`` and
``parent_span_id`` (16 hex digits, or None for a root), ``name``, ``kind`` and ``status``
(the OpenTelemetry API's enum values), ``start`` and ``end`` (ns since the epoch),
``attributes``; optionally ``parent_remote`` (true when the parent span is another
process's), ``status_message``, ``events`` (``[name, time_ns, attributes]`` each) and
``scope`` (the instrumentation scope's name, ``WORKER_SCOPE`` when absent or empty).
``workers.wire.spans`` makes them.
The exporter process encodes them into OTLP (see ``otlp``).
"""

from __future__ import annotations

WORKER_SCOPE = "coldbrew.worker"
