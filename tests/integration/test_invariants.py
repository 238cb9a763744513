"""Invariants under random schedules, against one real gateway.

Hypothesis draws a schedule: invocations (served, slow, refused by the model, a worker
killed or exiting mid-request, a hung model), each at its own moment, and endpoint
updates to a random MaxConcurrency, all sent at once from their own threads. Whatever
the schedule, once the dust settles:

- every request got exactly one answer, and an answer its call allows (the model's
  answer or ModelError, or a throttle); never a 5xx, a dropped connection or a timeout;
- every quota's concurrency in use is back to 0;
- the gateway's processes are back to the baseline (its runtime zygote alone: workers and
  model zygotes are reaped after short idle timeouts), and so are its open pipes, files
  and event handles.

Examples are not shrunk (each costs seconds of real processes); a failure prints its
schedule.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import BotoCoreError, ClientError
from hypothesis import HealthCheck, Phase, event, given, note, settings
from hypothesis import strategies as st

from tests.integration.control import control_client, deploy, serverless_variant
from tests.support import (
    Gateway,
    children_of,
    is_running,
    running_gateway,
    scrape,
    toml_config,
    value,
    wait_until,
)

pytestmark = pytest.mark.timeout(240)

THROTTLE = "ThrottlingException"
# What each call may answer besides a throttle: the model's answer, or ModelError.
CALLS = {
    "ok": "ok",
    "sleep:0.3": "slept",
    "raise": "ModelError",
    "kill": "ModelError",
    "exit": "ModelError",
    "hang": "ModelError",
}
# Endpoints: declared in the config, and one deployed through the control plane, which
# the schedules update.
DECLARED = {"behave": 2, "echo": 3}
UPDATED = "live"
REGION_CONCURRENCY = 5
SETTLE_S = 30.0


@dataclass(frozen=True)
class Invoke:
    at_ms: int
    endpoint: str
    body: str

    def allowed(self) -> set[str]:
        if self.endpoint == "echo":
            return {self.body, THROTTLE}
        return {CALLS[self.body], THROTTLE}


@dataclass(frozen=True)
class Update:
    at_ms: int
    max_concurrency: int


Step = Invoke | Update

invocations = st.one_of(
    st.builds(
        Invoke,
        at_ms=st.integers(0, 400),
        endpoint=st.sampled_from(["behave", UPDATED]),
        body=st.sampled_from(list(CALLS)),
    ),
    st.builds(Invoke, at_ms=st.integers(0, 400), endpoint=st.just("echo"), body=st.just("ok")),
)
updates = st.builds(Update, at_ms=st.integers(0, 400), max_concurrency=st.integers(1, 3))
# Calls at random moments, and at most one update among them (an endpoint already
# Updating refuses another update, as SageMaker does).
schedules = st.builds(
    lambda calls, update: [*calls, *([update] if update else [])],
    st.lists(invocations, min_size=1, max_size=14),
    st.none() | updates,
)


@dataclass
class Baseline:
    children: int
    handles: Counter[str]


def handles(pid: int) -> Counter[str]:
    """The gateway's open pipes, files and event handles by kind. Sockets are left out:
    the test's own clients keep pooled connections open."""
    kinds: Counter[str] = Counter()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        kind = target.partition(":")[0] if ":" in target else "file"
        if kind != "socket":
            kinds[kind] += 1
    return kinds


def targets(pid: int) -> list[str]:
    """What the gateway's descriptors other than sockets point at."""
    found = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if not target.startswith("socket:"):
            found.append(f"{fd.name} -> {target}")
    return found


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp_path = tmp_path_factory.mktemp("invariants")
    config = toml_config(
        tmp_path / "state",
        endpoints={name: {"max_concurrency": mc} for name, mc in DECLARED.items()},
        pool={"idle_timeout_s": 0.2, "zygote_idle_timeout_s": 0.5, "invocation_timeout_s": 1},
        quotas={"region_concurrency": REGION_CONCURRENCY},
    )
    with running_gateway(tmp_path, config) as gw:
        deploy(control_client(gw.url), UPDATED, "behave")
        yield gw


def settled(gw: Gateway, baseline: Baseline | None) -> Baseline:
    """Wait until nothing is in flight, the updated endpoint is InService, and no worker
    or model zygote is left; then return (or check against ``baseline``) what is open."""
    sm = control_client(gw.url)
    wait_until(
        lambda: sm.describe_endpoint(EndpointName=UPDATED)["EndpointStatus"] == "InService",
        timeout=SETTLE_S,
        what="the update to finish",
    )
    wait_until(
        lambda: value(scrape(gw), "coldbrew_concurrency") == 0,
        timeout=SETTLE_S,
        what="every quota's concurrency back to 0",
    )
    wait_until(
        lambda: len([pid for pid in children_of(gw.pid) if is_running(pid)]) == 1,
        timeout=SETTLE_S,
        what="only the runtime zygote left",
    )
    if baseline is None:
        return Baseline(1, handles(gw.pid))
    try:
        wait_until(
            lambda: handles(gw.pid) == baseline.handles,
            timeout=SETTLE_S,
            what=f"open handles back to {dict(baseline.handles)}",
        )
    except AssertionError as exc:
        # Say which, for the next one to look at.
        raise AssertionError(f"{exc}; now open: {sorted(targets(gw.pid))}") from None
    return baseline


class Runner:
    """Plays schedules against the gateway, each step from its own thread."""

    def __init__(self, gw: Gateway, configs: Iterator[int]) -> None:
        self.gw, self.configs = gw, configs
        self.runtime = gw.runtime()
        self.control = control_client(gw.url)

    def invoke(self, step: Invoke) -> str:
        try:
            answer: Any = self.runtime.invoke_endpoint(
                EndpointName=step.endpoint, Body=step.body.encode()
            )
            return bytes(answer["Body"].read()).decode()
        except ClientError as error:
            status = error.response["ResponseMetadata"]["HTTPStatusCode"]
            return f"{error.response['Error']['Code']}" if status < 500 else f"HTTP {status}"
        except BotoCoreError as error:
            return f"no answer: {error!r}"

    def update(self, step: Update) -> str:
        sm, name = self.control, f"{UPDATED}-{next(self.configs)}"
        variant = serverless_variant(UPDATED, max_concurrency=step.max_concurrency)
        sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[variant])
        sm.update_endpoint(EndpointName=UPDATED, EndpointConfigName=name)
        return "updating"

    def play(self, step: Step, start: float) -> str:
        time.sleep(max(0.0, start + step.at_ms / 1000 - time.monotonic()))
        return self.update(step) if isinstance(step, Update) else self.invoke(step)


@settings(
    max_examples=int(os.environ.get("COLDBREW_INVARIANT_EXAMPLES", "25")),
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    print_blob=True,
)
@given(schedule=schedules)
def test_random_schedules_keep_every_invariant(
    gateway: Gateway, schedule: list[Step], played: dict[str, Any]
) -> None:
    baseline = played.get("baseline") or settled(gateway, None)
    played["baseline"] = baseline
    note(f"schedule: {schedule}")
    runner = played.get("runner") or Runner(gateway, itertools.count(1))
    played["runner"] = runner
    start = time.monotonic() + 0.05
    with concurrent.futures.ThreadPoolExecutor(len(schedule)) as pool:
        futures = [pool.submit(runner.play, step, start) for step in schedule]
        answers = [future.result(timeout=60) for future in futures]
    note(f"answers: {answers}")
    for answer in answers:
        event(answer)
    for step, answer in zip(schedule, answers, strict=True):
        if isinstance(step, Invoke):
            assert answer in step.allowed(), (step, answer)
    settled(gateway, baseline)


@pytest.fixture(scope="module")
def played() -> dict[str, Any]:
    """What the examples share: the baseline, measured once, and one runner."""
    return {}
