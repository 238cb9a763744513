"""The demo model: trained once in a child interpreter, packaged in the SageMaker layout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from botocore.session import get_session
from botocore.validate import validate_parameters

from gateway.control import demo
from gateway.control.demo import (
    DEMO_ENDPOINT_NAME,
    DEMO_MAX_CONCURRENCY,
    DEMO_MEMORY_MB,
    DemoError,
    demo_documents,
    demo_model_dir,
    ensure_demo_model,
)
from tests.support import DEMO_SAMPLE

# A child interpreter that imports scikit-learn takes a second or two; keep headroom.
_CHILD_TIMEOUT_S = 45.0


def _run_python(script: str, *args: str) -> str:
    """Run ``script`` in a fresh interpreter of this venv and return its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        timeout=_CHILD_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _fake_python(directory: Path, body: str) -> str:
    """Write an executable shell script that stands in for the Python interpreter."""
    path = directory / "python"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


def _leftovers(state_dir: Path) -> list[str]:
    """Names under ``<state_dir>/demo`` other than the model dir and the lock file."""
    parent = demo_model_dir(state_dir).parent
    return sorted(p.name for p in parent.iterdir() if p.name not in {"model", ".lock"})


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state dir with the demo model trained once for the read-only tests of this module."""
    state_dir = tmp_path_factory.mktemp("state")
    ensure_demo_model(state_dir)
    return state_dir


def test_trains_complete_model_in_sagemaker_layout(trained: Path) -> None:
    """Training yields model.joblib plus code/inference.py and leaves no temporary dirs."""
    model_dir = demo_model_dir(trained)
    assert model_dir == trained / "demo" / "model"
    assert (model_dir / "model.joblib").stat().st_size > 0
    assert (model_dir / "code" / "inference.py").read_text() == demo.INFERENCE_PY
    assert sorted(p.name for p in model_dir.iterdir()) == ["code", "model.joblib"]
    assert _leftovers(trained) == []


def test_complete_model_is_returned_without_retraining(trained: Path) -> None:
    """A second call returns the same files untouched and never starts a trainer."""
    model_file = demo_model_dir(trained) / "model.joblib"
    before = model_file.stat()
    # An interpreter that does not exist proves that no child process is started.
    returned = ensure_demo_model(trained, python="/nonexistent/python")
    after = model_file.stat()
    assert returned == demo_model_dir(trained)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_stale_training_dir_from_a_crash_is_removed(tmp_path: Path) -> None:
    """A half-written training dir left by a crashed run is deleted and the model is built."""
    stale = tmp_path / "demo" / f"{demo._TRAINING_PREFIX}crashed"
    (stale / "code").mkdir(parents=True)
    (stale / "model.joblib").write_bytes(b"half a pick")
    model_dir = ensure_demo_model(tmp_path)
    assert not stale.exists()
    assert _leftovers(tmp_path) == []
    assert (model_dir / "model.joblib").read_bytes() != b"half a pick"


def test_incomplete_model_dir_is_rebuilt(tmp_path: Path) -> None:
    """A model dir missing its handler module does not count as built and is replaced."""
    model_dir = demo_model_dir(tmp_path)
    model_dir.mkdir(parents=True)
    (model_dir / "model.joblib").write_bytes(b"not a model")
    assert ensure_demo_model(tmp_path) == model_dir
    assert (model_dir / "code" / "inference.py").is_file()
    assert (model_dir / "model.joblib").read_bytes() != b"not a model"


def test_model_predicts_one_class_per_iris_species(trained: Path) -> None:
    """Loaded by joblib and by the handler's model_fn, the model answers [0, 1, 2] to the sample."""
    script = """
        import importlib.util, json, sys
        import joblib, numpy
        model_dir = sys.argv[1]
        rows = numpy.asarray(json.loads(sys.argv[2]), dtype=numpy.float32)
        direct = joblib.load(model_dir + "/model.joblib").predict(rows).tolist()
        spec = importlib.util.spec_from_file_location("inference", model_dir + "/code/inference.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        via_handler = module.model_fn(model_dir).predict(rows).tolist()
        print(json.dumps([direct, via_handler]))
    """
    out = _run_python(script, str(demo_model_dir(trained)), DEMO_SAMPLE.decode())
    assert json.loads(out) == [[0, 1, 2], [0, 1, 2]]


def test_importing_demo_loads_neither_sklearn_nor_numpy() -> None:
    """The gateway can import gateway.control.demo without paying for scikit-learn or numpy."""
    script = """
        import json, sys
        import gateway.control.demo
        heavy = {"sklearn", "numpy", "scipy", "joblib"}
        print(json.dumps(sorted(m for m in sys.modules if m.partition(".")[0] in heavy)))
    """
    assert json.loads(_run_python(script)) == []


def test_missing_sklearn_raises_demo_error_with_install_hint(tmp_path: Path) -> None:
    """Without scikit-learn the error names the fix and quotes the trainer, and nothing is kept."""
    shadow = tmp_path / "shadow" / "sklearn"
    shadow.mkdir(parents=True)
    # A package that fails to import the way an absent one does.
    (shadow / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'sklearn'\", name='sklearn')\n"
    )
    pythonpath = os.pathsep.join(filter(None, [str(shadow.parent), os.environ.get("PYTHONPATH")]))
    python = _fake_python(tmp_path, f'PYTHONPATH="{pythonpath}" exec "{sys.executable}" "$@"')
    state_dir = tmp_path / "state"
    with pytest.raises(DemoError) as caught:
        ensure_demo_model(state_dir, python=python)
    message = str(caught.value)
    assert "pip install 'coldbrew[demo]'" in message
    assert "scikit-learn cannot be imported" in message
    assert "No module named 'sklearn'" in message
    assert not demo_model_dir(state_dir).exists()
    assert _leftovers(state_dir) == []


def test_failing_trainer_reports_its_stderr_tail(tmp_path: Path) -> None:
    """A trainer that fails has the end of its stderr in the DemoError and leaves nothing."""
    python = _fake_python(tmp_path, "echo 'early noise' >&2; echo 'disk on fire' >&2; exit 1")
    state_dir = tmp_path / "state"
    with pytest.raises(DemoError, match=r"(?s)exit status 1.*coldbrew\[demo\].*disk on fire"):
        ensure_demo_model(state_dir, python=python)
    assert not demo_model_dir(state_dir).exists()
    assert _leftovers(state_dir) == []


def test_trainer_that_writes_nothing_is_an_error(tmp_path: Path) -> None:
    """A trainer that exits 0 without writing model.joblib does not produce a model dir."""
    python = _fake_python(tmp_path, "exit 0")
    state_dir = tmp_path / "state"
    with pytest.raises(DemoError, match=r"wrote no model\.joblib"):
        ensure_demo_model(state_dir, python=python)
    assert not demo_model_dir(state_dir).exists()


def test_trainer_past_its_deadline_is_killed(tmp_path: Path) -> None:
    """A trainer that outlives timeout_s is stopped and reported, and leaves nothing."""
    python = _fake_python(tmp_path, "exec sleep 30")
    state_dir = tmp_path / "state"
    with pytest.raises(DemoError, match=r"took over 0\.5 s"):
        ensure_demo_model(state_dir, python=python, timeout_s=0.5)
    assert not demo_model_dir(state_dir).exists()
    assert _leftovers(state_dir) == []


def test_missing_interpreter_is_a_demo_error(tmp_path: Path) -> None:
    """An interpreter path that does not exist becomes a DemoError, not an OSError."""
    with pytest.raises(DemoError, match="cannot run /nonexistent/python"):
        ensure_demo_model(tmp_path, python="/nonexistent/python")


def test_documents_are_valid_sagemaker_requests(tmp_path: Path) -> None:
    """The CreateModel and CreateEndpointConfig documents have the agreed content and pass
    botocore's own validation of those operations."""
    model_dir = demo_model_dir(tmp_path)
    model, config = demo_documents(model_dir)
    assert model == {
        "ModelName": DEMO_ENDPOINT_NAME,
        "ExecutionRoleArn": "arn:aws:iam::000000000000:role/coldbrew-demo",
        "PrimaryContainer": {
            "Image": "coldbrew/python:3.11",
            "ModelDataUrl": model_dir.as_uri(),
            "Environment": {"SAGEMAKER_PROGRAM": "inference.py"},
        },
    }
    assert config == {
        "EndpointConfigName": DEMO_ENDPOINT_NAME,
        "ProductionVariants": [
            {
                "VariantName": "AllTraffic",
                "ModelName": DEMO_ENDPOINT_NAME,
                "ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 10},
            }
        ],
    }
    assert (DEMO_ENDPOINT_NAME, DEMO_MEMORY_MB, DEMO_MAX_CONCURRENCY) == ("demo", 2048, 10)
    service = get_session().get_service_model("sagemaker")
    validate_parameters(model, service.operation_model("CreateModel").input_shape)
    validate_parameters(config, service.operation_model("CreateEndpointConfig").input_shape)


def test_worker_handler_serves_the_sample(trained: Path) -> None:
    """The worker's SageMaker handler, with its default input/predict/output functions,
    answers the sample with the JSON list [0, 1, 2]."""
    script = """
        import sys
        from pathlib import Path
        from workers.child.handler import ModelHandler
        handler = ModelHandler.load(Path(sys.argv[1]))
        response = handler.invoke(sys.argv[2].encode(), "application/json", "application/json")
        sys.stdout.write(response.content_type + "\\n" + response.body.decode())
    """
    out = _run_python(script, str(demo_model_dir(trained)), DEMO_SAMPLE.decode())
    content_type, _, body = out.partition("\n")
    assert content_type == "application/json"
    assert json.loads(body) == [0, 1, 2]
    assert body.replace(" ", "") == "[0,1,2]"
