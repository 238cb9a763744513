"""Durability: SIGKILL and restart on the same state dir bring every resource back.
(Hostile input to the control plane is fuzzed in test_fuzz.py.)"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.integration.control import control_client, deploy, serverless_variant
from tests.support import (
    is_running,
    running_gateway,
    toml_config,
    wait_until,
)

pytestmark = pytest.mark.timeout(180)


def test_sigkill_and_restart_bring_every_endpoint_back(tmp_path: Path) -> None:
    """After a SIGKILL, a gateway restarted on the same state dir has every model,
    config and endpoint; InService endpoints serve, a Failed one keeps its reason, one
    killed mid-creation finishes creating, and no worker of the old gateway survives."""
    state = tmp_path / "state"
    config = toml_config(state, endpoints={})
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    first_dir.mkdir()
    second_dir.mkdir()
    with running_gateway(first_dir, config) as gw:
        sm = control_client(gw.url)
        deploy(sm, "steady", "behave")
        deploy(sm, "broken", "broken", wait=False)
        old_worker = int(
            gw.runtime().invoke_endpoint(EndpointName="steady", Body=b"pid")["Body"].read()
        )
        sm.create_model(
            ModelName="slow",
            PrimaryContainer={
                "ModelDataUrl": str(Path(__file__).parent.parent / "models" / "slowload"),
                "Environment": {"LOAD_SECONDS": "1.5"},
            },
        )
        sm.create_endpoint_config(
            EndpointConfigName="slow", ProductionVariants=[serverless_variant("slow")]
        )
        sm.create_endpoint(EndpointName="slow", EndpointConfigName="slow")
        wait_until(
            lambda: sm.describe_endpoint(EndpointName="broken")["EndpointStatus"] == "Failed",
            timeout=30,
            what="the broken endpoint to fail",
        )
        assert gw.stop(signal.SIGKILL) == -signal.SIGKILL
    wait_until(lambda: not is_running(old_worker), timeout=10, what="the old worker to die")

    with running_gateway(second_dir, config) as gw:
        sm = control_client(gw.url)
        models = {m["ModelName"] for m in sm.list_models()["Models"]}
        assert models == {"steady", "broken", "slow"}
        assert sm.describe_endpoint(EndpointName="steady")["EndpointStatus"] == "InService"
        broken = sm.describe_endpoint(EndpointName="broken")
        assert broken["EndpointStatus"] == "Failed"
        assert "weights file is corrupt" in broken["FailureReason"]
        sm.get_waiter("endpoint_in_service").wait(
            EndpointName="slow", WaiterConfig={"Delay": 1, "MaxAttempts": 30}
        )
        rt = gw.runtime()
        assert rt.invoke_endpoint(EndpointName="steady", Body=b"ok")["Body"].read() == b"ok"
        assert rt.invoke_endpoint(EndpointName="slow", Body=b"ok")["Body"].read() == b"ok"
