"""The sandbox's plain parts: its spec on the wire, uids per account, the read-only view,
which modules a runtime zygote may pre-import, and reading one's parent across pid
namespaces."""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path

import pytest

from workers.child.preload import installation_roots, installed, preload
from workers.pool.sandbox import SYSTEM_PATHS, Sandboxes, installation_paths
from workers.wire.kernel import ParentWatch
from workers.wire.sandbox import SandboxSpec


def spec(**changes: object) -> dict[str, object]:
    base = SandboxSpec(
        uid=200_001,
        gid=200_001,
        root="/var/lib/coldbrew/sandbox-root",
        model_dir="/var/lib/coldbrew/artifacts/m",
        read_only=("/usr", "/etc"),
        hidden=("/etc/coldbrew.toml",),
        tmp_bytes=5 << 30,
        network=False,
    ).to_json()
    return {**base, **changes}


def test_a_spec_survives_the_wire() -> None:
    data = spec()
    assert SandboxSpec.from_json(data).to_json() == data


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"uid": 0}, "uid"),
        ({"gid": True}, "gid"),
        ({"tmp_bytes": -1}, "tmp_bytes"),
        ({"root": "relative"}, "root"),
        ({"model_dir": None}, "model_dir"),
        ({"read_only": ["/usr", "etc"]}, "read_only"),
        ({"hidden": "/etc"}, "hidden"),
        ({"network": "yes"}, "network"),
    ],
)
def test_a_bad_spec_is_refused_naming_the_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=f"sandbox {field}"):
        SandboxSpec.from_json(spec(**changes))


def test_each_account_has_its_own_uid_in_sorted_order() -> None:
    sandboxes = Sandboxes(accounts=("222222222222", "111111111111"), uid_base=5000, root=Path("/r"))
    assert sandboxes.uid_of("111111111111") == 5000
    assert sandboxes.uid_of("222222222222") == 5001
    with pytest.raises(LookupError, match="333333333333"):
        sandboxes.uid_of("333333333333")


def test_the_view_holds_the_system_and_the_installation_and_hides_secrets() -> None:
    sandboxes = Sandboxes(
        accounts=("111111111111",), uid_base=5000, root=Path("/r"), hidden=("/etc/secret",)
    )
    made = sandboxes.spec_for("111111111111", Path("/models/m"), network=True)
    assert set(SYSTEM_PATHS) <= set(made.read_only)
    assert sys.prefix in made.read_only
    # The workers package, not the source tree around it (the config may live there).
    workers_dir = str(Path(__file__).resolve().parents[2] / "workers")
    assert workers_dir in installation_paths()
    assert str(Path(workers_dir).parent) not in installation_paths()
    assert made.hidden == ("/etc/secret",)
    assert (made.uid, made.gid, made.model_dir, made.network) == (5000, 5000, "/models/m", True)


def test_only_installed_modules_are_pre_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    roots = installation_roots()
    assert installed("json", roots)
    assert installed("json.decoder", roots)
    assert installed("sys", roots)  # built in
    assert installed("workers.child.serve", roots)
    assert not installed("json.__main__", roots)
    assert not installed("no_such_module_anywhere", roots)
    # A module a model planted on a path of its own is not the installation's.
    (tmp_path / "cb_planted_probe.py").write_text("raise SystemExit('imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert not installed("cb_planted_probe", roots)
    assert "cb_planted_probe" not in sys.modules


def test_the_parent_watch_reads_the_parent() -> None:
    watch = ParentWatch()
    try:
        assert watch() == os.getppid()
    finally:
        watch.close()


def test_a_planted_module_is_not_pre_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "cb_planted_preload.py").write_text("raise SystemExit('imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        outcome = preload(["cb_planted_preload", "json.tool"], only_under=installation_roots())
    finally:
        gc.unfreeze()
    assert outcome["failed"] == ["cb_planted_preload"]
    assert "cb_planted_preload" not in sys.modules


def test_an_import_that_hangs_is_given_up_at_its_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "cb_hangs_on_import.py").write_text("import time\ntime.sleep(600)\n")
    (tmp_path / "cb_after_the_hang.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        outcome = preload(["cb_hangs_on_import", "cb_after_the_hang"], deadline_s=0.2)
    finally:
        gc.unfreeze()
        sys.modules.pop("cb_after_the_hang", None)
    assert outcome["failed"] == ["cb_hangs_on_import"]
    assert outcome["imported"] == ["cb_after_the_hang"]
