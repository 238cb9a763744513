"""Suite-wide guards."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import wait_until, worker_processes


@pytest.fixture(scope="session", autouse=True)
def no_worker_outlives_the_suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After the last test, no worker process started by this session is still running."""
    yield
    root = tmp_path_factory.getbasetemp()
    wait_until(
        lambda: not worker_processes(root), timeout=15, what="every worker of the suite to exit"
    )
