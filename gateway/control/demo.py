"""The demo endpoint: a scikit-learn iris classifier, trained on first start and packaged in
the SageMaker model-code convention.

Layout under the state directory (what a ``model.tar.gz`` would unpack to)::

    <state_dir>/demo/model/
    ├── model.joblib          the fitted classifier
    └── code/inference.py     the handler module (``model_fn`` only)

The gateway process must not import scikit-learn or numpy (they would cost it about 100 MB
of memory for nothing), so training runs in a child interpreter: ``python -m gateway.control.demo
--train DIR``. The function behind that command is the only place scikit-learn is imported.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

DEMO_ENDPOINT_NAME: Final = "demo"
DEMO_MEMORY_MB: Final = 2048
DEMO_MAX_CONCURRENCY: Final = 10

_MODEL_FILE: Final = "model.joblib"
_PROGRAM: Final = "inference.py"
# Training happens in a sibling directory with this prefix, renamed into place when complete;
# one left behind was abandoned by a crash.
_TRAINING_PREFIX: Final = ".model-training-"
_LOCK_FILE: Final = ".lock"
_STDERR_TAIL_CHARS: Final = 2000
# Exit status of the trainer when scikit-learn cannot be imported.
_EXIT_NO_SKLEARN: Final = 3
_INSTALL_HINT: Final = "the demo needs scikit-learn: pip install 'coldbrew[demo]'"

INFERENCE_PY: Final = '''\
"""Model code for the Coldbrew demo endpoint: an iris classifier.

This follows the SageMaker convention for model code: the model artifacts sit
at the top of the model directory (here model.joblib) and this module sits in
code/, named by the SAGEMAKER_PROGRAM environment variable (inference.py by
default).
"""

import os

import joblib

# Only model_fn is defined here; the serving stack supplies the other three
# handlers:
#
#   input_fn(request_body, request_content_type)
#       Decodes application/json, text/csv and application/x-npy bodies into
#       a numpy array and refuses any other content type. Here: a JSON list
#       of iris rows (sepal length, sepal width, petal length, petal width,
#       in cm), e.g. [[5.1, 3.5, 1.4, 0.2]].
#   predict_fn(input_object, model)
#       Returns model.predict(input_object): one class index per row
#       (0 setosa, 1 versicolor, 2 virginica).
#   output_fn(prediction, accept)
#       Encodes the prediction as JSON, CSV or NPY, as the Accept header asks;
#       JSON when the request does not ask for a type.
#
# To change a step, define the function of that name in this module. For
# example, to answer with class probabilities instead of class indices:
#
#   def predict_fn(input_object, model):
#       return model.predict_proba(input_object)
#
# output_fn may return the body bytes, or a (body, content_type) pair.
# Instead of those three, a module may define a single
# transform_fn(model, request_body, request_content_type, accept); mixing
# transform_fn with input_fn, predict_fn or output_fn is an error.


def model_fn(model_dir):
    """Load the classifier once per worker; predict_fn gets the result."""
    return joblib.load(os.path.join(model_dir, "model.joblib"))
'''


class DemoError(Exception):
    """The demo model could not be built; the message says why and how to fix it."""


def demo_model_dir(state_dir: Path) -> Path:
    """Return where the demo model lives under ``state_dir`` (it may not exist yet)."""
    return state_dir / DEMO_ENDPOINT_NAME / "model"


def ensure_demo_model(
    state_dir: Path, *, python: str = sys.executable, timeout_s: float = 120.0
) -> Path:
    """Make sure the demo model exists under ``state_dir`` and return its model directory.

    Blocking. A complete model directory (``model.joblib`` and ``code/inference.py``) is
    returned at once. Otherwise the model is trained by running ``python -m gateway.control.demo
    --train`` (so ``python`` must be able to import this package and scikit-learn) into a
    temporary sibling directory that is renamed into place only when complete: a crash never
    leaves a half-written model, and a temporary directory left by an earlier crash is
    removed. Concurrent callers on one state directory are serialised by a lock file
    (``<state_dir>/demo/.lock``) so that none removes another's work in progress.

    Raises ``DemoError`` if the trainer cannot be started, fails (its stderr tail is in the
    message), produces no model, or runs past ``timeout_s`` (it is then killed).
    """
    model_dir = demo_model_dir(state_dir)
    if _is_complete(model_dir):
        return model_dir
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    with _locked(model_dir.parent / _LOCK_FILE):
        # Another caller may have finished while this one waited for the lock.
        if _is_complete(model_dir):
            return model_dir
        for stale in model_dir.parent.glob(_TRAINING_PREFIX + "*"):
            shutil.rmtree(stale, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=_TRAINING_PREFIX, dir=model_dir.parent))
        # mkdtemp makes the directory private; the model is read by worker processes.
        staging.chmod(0o755)
        try:
            _build(staging, python=python, timeout_s=timeout_s)
            # Only this module writes model_dir, always by rename; an incomplete one was
            # damaged by hand and is replaced.
            if model_dir.exists():
                shutil.rmtree(model_dir)
            staging.rename(model_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return model_dir


def demo_documents(model_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return the CreateModel and CreateEndpointConfig request documents for the demo.

    They are what boto3 would send for this model directory (its ``file://`` URI, made
    absolute, is the ModelDataUrl). Pure; touches no files.
    """
    model = {
        "ModelName": DEMO_ENDPOINT_NAME,
        "ExecutionRoleArn": "arn:aws:iam::000000000000:role/coldbrew-demo",
        "PrimaryContainer": {
            "Image": "coldbrew/python:3.11",
            "ModelDataUrl": model_dir.absolute().as_uri(),
            "Environment": {"SAGEMAKER_PROGRAM": _PROGRAM},
        },
    }
    config = {
        "EndpointConfigName": DEMO_ENDPOINT_NAME,
        "ProductionVariants": [
            {
                "VariantName": "AllTraffic",
                "ModelName": DEMO_ENDPOINT_NAME,
                "ServerlessConfig": {
                    "MemorySizeInMB": DEMO_MEMORY_MB,
                    "MaxConcurrency": DEMO_MAX_CONCURRENCY,
                },
            }
        ],
    }
    return model, config


def _is_complete(model_dir: Path) -> bool:
    return (model_dir / _MODEL_FILE).is_file() and (model_dir / "code" / _PROGRAM).is_file()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (created if missing) for the block."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build(staging: Path, *, python: str, timeout_s: float) -> None:
    """Write the handler module and train the model into ``staging``; raise DemoError."""
    code_dir = staging / "code"
    code_dir.mkdir()
    (code_dir / _PROGRAM).write_text(INFERENCE_PY, encoding="utf-8")
    command = [python, "-m", "gateway.control.demo", "--train", str(staging)]
    try:
        done = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise _failure(f"training with {python} took over {timeout_s:g} s", exc.stderr) from exc
    except OSError as exc:
        raise _failure(f"cannot run {python}: {exc}", None) from exc
    if done.returncode == _EXIT_NO_SKLEARN:
        raise _failure(f"scikit-learn cannot be imported by {python}", done.stderr)
    if done.returncode != 0:
        raise _failure(f"training failed (exit status {done.returncode})", done.stderr)
    if not _is_complete(staging):
        raise _failure(f"the trainer exited cleanly but wrote no {_MODEL_FILE}", done.stderr)


def _failure(what: str, stderr: bytes | None) -> DemoError:
    """Build the error for a failed training run, with the tail of the trainer's stderr."""
    message = f"cannot build the demo model: {what}; {_INSTALL_HINT}"
    text = (stderr or b"").decode("utf-8", errors="replace").strip()
    if text:
        message += f"\n{text[-_STDERR_TAIL_CHARS:]}"
    return DemoError(message)


def _train(target: Path) -> int:
    """Fit the iris classifier and joblib-dump it to ``target/model.joblib``; exit status."""
    try:
        import joblib
        from sklearn.datasets import load_iris
        from sklearn.linear_model import LogisticRegression
    except ModuleNotFoundError as exc:
        sys.stderr.write(f"cannot import {exc.name}: {exc}\n")
        return _EXIT_NO_SKLEARN
    features, labels = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=1000, random_state=0).fit(features, labels)
    joblib.dump(model, target / _MODEL_FILE)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command line of the trainer: ``python -m gateway.control.demo --train DIR``; exit status."""
    parser = argparse.ArgumentParser(prog="python -m gateway.control.demo")
    parser.add_argument(
        "--train",
        metavar="DIR",
        type=Path,
        required=True,
        help="write model.joblib into this existing directory",
    )
    args = parser.parse_args(argv)
    return _train(args.train)


if __name__ == "__main__":
    sys.exit(main())
