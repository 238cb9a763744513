"""The clean environment a worker process starts with.

A worker gets only what a container would: a minimal base (so Python, locales and BLAS
work), its private directories, and the model's own ``Environment``. Nothing else of the
gateway's environment crosses, so gateway credentials and settings never reach model code.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Final

# Kept from the gateway's environment because a process cannot run sensibly without them
# (PATH, locale, time zone) or because some CPUs need them for a working OpenBLAS.
INHERITED_KEYS: Final = (
    "PATH",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
)


def worker_environment(
    container_env: Mapping[str, str],
    *,
    inherited: Mapping[str, str],
    private_dir: Path,
    model_dir: Path,
) -> dict[str, str]:
    """Return the environment for one worker process.

    ``private_dir`` becomes HOME and TMPDIR, so files a model writes stay in the worker's
    own directory. The container's ``Environment`` is applied last and may override any of
    it, as SageMaker lets a container's environment do.
    """
    env = {key: inherited[key] for key in INHERITED_KEYS if key in inherited}
    env.update(
        HOME=str(private_dir),
        TMPDIR=str(private_dir),
        SAGEMAKER_BASE_DIR=str(model_dir.parent),
        SM_MODEL_DIR=str(model_dir),
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.update(container_env)
    return env
