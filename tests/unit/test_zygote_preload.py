"""What a zygote's pre-import reports: the modules whose import started a thread."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from workers.child.zygote import preload

STARTS_A_THREAD = """\
import threading

stop = threading.Event()
thread = threading.Thread(target=stop.wait, daemon=True)
thread.start()
"""


@pytest.fixture
def library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on sys.path for modules made by the test; they are forgotten, their
    threads stopped and the collector unfrozen afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    try:
        yield tmp_path
    finally:
        for name in set(sys.modules) - before:
            module = sys.modules.pop(name)
            if hasattr(module, "stop"):
                module.stop.set()
                module.thread.join(timeout=10)
        gc.unfreeze()


def test_a_module_whose_import_starts_a_thread_is_named(library: Path) -> None:
    (library / "quiet_module_for_preload.py").write_text("VALUE = 1\n")
    (library / "threaded_module_for_preload.py").write_text(STARTS_A_THREAD)
    (library / "later_module_for_preload.py").write_text("VALUE = 2\n")
    outcome = preload(
        [
            "quiet_module_for_preload",
            "threaded_module_for_preload",
            "later_module_for_preload",
            "no_such_module_for_preload",
        ]
    )
    assert outcome["imported"] == [
        "quiet_module_for_preload",
        "threaded_module_for_preload",
        "later_module_for_preload",
    ]
    assert outcome["failed"] == ["no_such_module_for_preload"]
    assert outcome["threaded"] == ["threaded_module_for_preload"]
