"""Tests of turning a ModelDataUrl into a local model directory (gateway.store.artifacts)."""

from __future__ import annotations

import gzip
import io
import os
import socket
import stat
import sys
import tarfile
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from gateway.store.artifacts import ArtifactError, ArtifactLimits, ArtifactStore, check_url

Member = tuple[tarfile.TarInfo, bytes]

HANDLER = b"def model_fn(model_dir):\n    return 'model'\n"
WEIGHTS = bytes(range(256)) * 16


def regular(name: str, data: bytes = b"data", mode: int = 0o644) -> Member:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    return info, data


def entry(name: str, kind: bytes, linkname: str = "", mode: int = 0o755) -> Member:
    """A member without data: a directory, link, device or FIFO."""
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mode = mode
    return info, b""


MODEL: list[Member] = [regular("code/inference.py", HANDLER), regular("model.bin", WEIGHTS)]


def tar_bytes(members: Sequence[Member], compresslevel: int = 9) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=compresslevel) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buffer.getvalue()


def write_tarball(path: Path, members: Sequence[Member] = MODEL) -> Path:
    path.write_bytes(tar_bytes(members))
    return path


def entries(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def store(cache: Path) -> ArtifactStore:
    return ArtifactStore(cache)


def assert_model(directory: Path, handler: bytes = HANDLER) -> None:
    assert (directory / "code" / "inference.py").read_bytes() == handler
    assert (directory / "model.bin").read_bytes() == WEIGHTS


# --- URLs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "/opt/ml/model",
        "/models/model.tar.gz",
        "file:///models/my%20model.tar.gz",
        "file://localhost/models/iris",
        "FILE:///models/iris",
        "s3://bucket/model.tar.gz",
        "s3://bucket/deep/key with spaces?v=1#x.tgz",
    ],
)
def test_check_url_accepts_supported_shapes(url: str) -> None:
    """Absolute paths, local file:// URLs and s3://bucket/key pass the syntax check."""
    check_url(url)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://bucket.s3.amazonaws.com/model.tar.gz", "https:// scheme is not supported"),
        ("model.tar.gz", "relative path"),
        ("./models/iris", "relative path"),
        ("", "relative path"),
        ("file://otherhost/models/iris", "host 'otherhost'"),
        ("file:models/iris", "relative path"),
        ("file://", "absolute path"),
        ("file:///models/iris?x=1", "query or fragment"),
        ("s3://bucket", "not a bucket or a prefix"),
        ("s3://bucket/", "not a bucket or a prefix"),
        ("s3://bucket/models/", "not a bucket or a prefix"),
        ("s3:///model.tar.gz", "s3://bucket/key"),
        ("/models/\0iris", "NUL"),
        ("/" + "a" * 1024, "longer than 1024"),
    ],
)
def test_check_url_refuses_other_shapes(url: str, problem: str) -> None:
    """Unsupported schemes, relative paths and malformed URLs are refused, naming ModelDataUrl."""
    with pytest.raises(ArtifactError) as caught:
        check_url(url)
    assert caught.value.message.startswith("ModelDataUrl ")
    assert problem in caught.value.message


def test_limits_must_be_positive() -> None:
    """A zero or negative limit is a programming error, refused at construction."""
    with pytest.raises(ValueError, match="max_members"):
        ArtifactLimits(max_members=0)


# --- directories --------------------------------------------------------------------------


def test_directory_is_used_in_place(tmp_path: Path, store: ArtifactStore, cache: Path) -> None:
    """An absolute path naming a directory resolves to that directory, with nothing copied."""
    model = tmp_path / "model"
    (model / "code").mkdir(parents=True)
    (model / "code" / "inference.py").write_bytes(HANDLER)

    assert store.resolve(str(model)) == model
    assert entries(cache) == []


def test_file_url_is_percent_decoded(tmp_path: Path, store: ArtifactStore) -> None:
    """A file:// URL is percent-decoded, for directories and archives alike."""
    model = tmp_path / "my model #1"
    model.mkdir()
    url = model.as_uri()
    assert "%20" in url
    assert "%23" in url

    assert store.resolve(url) == model

    archive = write_tarball(tmp_path / "my archive.tar.gz")
    assert_model(store.resolve(archive.as_uri()))


def test_missing_path_is_refused(tmp_path: Path, store: ArtifactStore, cache: Path) -> None:
    """A path that does not exist is an ArtifactError naming ModelDataUrl and the path."""
    missing = tmp_path / "nowhere" / "model.tar.gz"
    with pytest.raises(ArtifactError) as caught:
        store.resolve(str(missing))
    assert caught.value.message == f"ModelDataUrl {str(missing)!r}: {missing} does not exist"
    assert entries(cache) == []


def test_fifo_is_refused_without_blocking(tmp_path: Path, store: ArtifactStore) -> None:
    """A FIFO is neither a directory nor an archive: refused at once, never opened for reading."""
    fifo = tmp_path / "model.tar.gz"
    os.mkfifo(fifo)
    with pytest.raises(ArtifactError, match="neither a directory nor a regular file"):
        store.resolve(str(fifo))


# --- local archives -------------------------------------------------------------------------


def test_tarball_is_unpacked_into_the_cache(
    tmp_path: Path, store: ArtifactStore, cache: Path
) -> None:
    """A model.tar.gz is unpacked into one cache directory readable by workers."""
    archive = write_tarball(tmp_path / "model.tar.gz")

    model = store.resolve(str(archive))

    assert model.parent == cache
    assert len(model.name) == 32
    assert entries(cache) == [model.name]
    assert_model(model)
    for path in (model, model / "code"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o755
    for path in (model / "model.bin", model / "code" / "inference.py"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_relative_cache_dir_yields_absolute_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Model directories are absolute even when the cache directory was given relative."""
    monkeypatch.chdir(tmp_path)
    archive = write_tarball(tmp_path / "model.tar.gz")

    model = ArtifactStore(Path("cache")).resolve(str(archive))

    assert model.is_absolute()
    assert model.parent == tmp_path / "cache"


def test_dot_prefixed_members_are_accepted(tmp_path: Path, store: ArtifactStore) -> None:
    """Archives made with `tar -C dir .` (members named ./x, and a '.' entry) unpack normally."""
    members = [
        entry(".", tarfile.DIRTYPE),
        entry("./code", tarfile.DIRTYPE),
        regular("./code/inference.py", HANDLER),
        regular("./model.bin", WEIGHTS),
    ]
    archive = write_tarball(tmp_path / "model.tar.gz", members)

    assert_model(store.resolve(str(archive)))


def test_unchanged_tarball_is_unpacked_once(tmp_path: Path, store: ArtifactStore) -> None:
    """Resolving the same archive again, by path or by URL, reuses the first unpacked tree."""
    archive = write_tarball(tmp_path / "model.tar.gz")
    first = store.resolve(str(archive))
    # A fresh unpack would make a new tree without this file.
    (first / "marker").write_bytes(b"")
    inode = first.stat().st_ino

    again = store.resolve(str(archive))
    by_url = store.resolve(archive.as_uri())

    assert again == first
    assert by_url == first
    assert (again / "marker").exists()
    assert again.stat().st_ino == inode


def test_unpacked_tree_is_reused_by_a_new_store(tmp_path: Path, cache: Path) -> None:
    """The cache outlives the store: a restarted gateway reuses what was unpacked."""
    archive = write_tarball(tmp_path / "model.tar.gz")
    first = ArtifactStore(cache).resolve(str(archive))
    (first / "marker").write_bytes(b"")

    again = ArtifactStore(cache).resolve(str(archive))

    assert again == first
    assert (again / "marker").exists()


def test_changed_tarball_is_unpacked_anew(
    tmp_path: Path, store: ArtifactStore, cache: Path
) -> None:
    """A rewritten archive of the same size (new content, new mtime) is unpacked anew."""
    # Stored (level 0) gzip: the archive's size depends only on the content's length, so
    # only the mtime tells the two versions apart.
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(tar_bytes(MODEL, compresslevel=0))
    first = store.resolve(str(archive))
    before = archive.stat()

    handler_v2 = HANDLER.replace(b"'model'", b"'MODEL'")
    archive.write_bytes(tar_bytes([regular("code/inference.py", handler_v2), MODEL[1]], 0))
    os.utime(archive, ns=(before.st_mtime_ns + 10**9, before.st_mtime_ns + 10**9))
    assert archive.stat().st_size == before.st_size
    second = store.resolve(str(archive))

    assert second != first
    assert_model(second, handler_v2)
    assert_model(first)
    assert entries(cache) == sorted([first.name, second.name])


def test_hard_link_to_an_earlier_member_is_kept(tmp_path: Path, store: ArtifactStore) -> None:
    """A hard link to a file unpacked earlier from the same archive shares that file."""
    members = [*MODEL, entry("code/weights.bin", tarfile.LNKTYPE, linkname="model.bin")]
    model = store.resolve(str(write_tarball(tmp_path / "model.tar.gz", members)))

    assert (model / "code" / "weights.bin").read_bytes() == WEIGHTS
    assert (model / "code" / "weights.bin").stat().st_ino == (model / "model.bin").stat().st_ino


def test_later_member_of_the_same_name_wins(tmp_path: Path, store: ArtifactStore) -> None:
    """As with tar, a repeated file name holds the content of its last member."""
    members = [*MODEL, regular("model.bin", b"second")]
    model = store.resolve(str(write_tarball(tmp_path / "model.tar.gz", members)))

    assert (model / "model.bin").read_bytes() == b"second"


@pytest.mark.parametrize(
    ("member", "expected"),
    [
        (regular("setuid", mode=0o4755), 0o755),
        (regular("setgid", mode=0o2755), 0o755),
        (regular("sticky-private", mode=0o1600), 0o644),
        (regular("private", mode=0o600), 0o644),
        (regular("owner-exec", mode=0o700), 0o755),
        (entry("private-dir", tarfile.DIRTYPE, mode=0o3700), 0o755),
    ],
)
def test_modes_are_normalised(
    tmp_path: Path, store: ArtifactStore, member: Member, expected: int
) -> None:
    """Setuid, setgid and sticky bits are stripped and everything is readable by workers."""
    model = store.resolve(str(write_tarball(tmp_path / "model.tar.gz", [member])))

    mode = (model / member[0].name).stat().st_mode
    assert stat.S_IMODE(mode) == expected


# --- refusals: each leaves nothing behind ------------------------------------------------------


def assert_refused(
    store: ArtifactStore, cache: Path, archive: Path, problem: str, url: str | None = None
) -> None:
    url = str(archive) if url is None else url
    with pytest.raises(ArtifactError) as caught:
        store.resolve(url)
    assert caught.value.message.startswith(f"ModelDataUrl {url!r}: ")
    assert problem in caught.value.message
    assert entries(cache) == []


ESCAPED = "escaped"


@pytest.mark.parametrize(
    ("members", "problem"),
    [
        ([regular(f"../{ESCAPED}")], "'..' path component"),
        ([regular(f"code/../../{ESCAPED}")], "'..' path component"),
        ([regular(f"/{ESCAPED}")], "absolute path"),
        ([entry("passwd", tarfile.SYMTYPE, linkname="/etc/passwd")], "symbolic link"),
        ([entry("etc", tarfile.SYMTYPE, linkname="/etc")], "symbolic link"),
        ([entry("up", tarfile.SYMTYPE, linkname=".."), regular(f"up/{ESCAPED}")], "symbolic link"),
        ([entry("inside", tarfile.SYMTYPE, linkname="model.bin")], "symbolic link"),
        ([entry("passwd", tarfile.LNKTYPE, linkname="/etc/passwd")], "hard link"),
        ([entry("link", tarfile.LNKTYPE, linkname=f"../{ESCAPED}")], "hard link"),
        ([entry("link", tarfile.LNKTYPE, linkname="/model.bin")], "hard link"),
        ([entry("link", tarfile.LNKTYPE, linkname="later.bin"), regular("later.bin")], "hard link"),
        ([entry("null", tarfile.CHRTYPE)], "special file"),
        ([entry("disk", tarfile.BLKTYPE)], "special file"),
        ([entry("pipe", tarfile.FIFOTYPE)], "special file"),
        ([regular("model.bin/inner")], "needs model.bin as a directory"),
        ([regular("code")], "earlier member made it a directory"),
        ([regular(".")], "names the model directory itself"),
    ],
)
def test_unsafe_members_are_refused(
    tmp_path: Path, store: ArtifactStore, cache: Path, members: list[Member], problem: str
) -> None:
    """Escapes, links out of the tree and special files are refused after a partial unpack."""
    # Real files first, so the refusal comes mid-way through an unpack that must be undone.
    archive = write_tarball(tmp_path / "model.tar.gz", [*MODEL, *members])
    assert_refused(store, cache, archive, problem)
    assert not (tmp_path / ESCAPED).exists()


def test_absolute_member_is_not_written_anywhere(
    tmp_path: Path, store: ArtifactStore, cache: Path
) -> None:
    """A member naming an absolute path outside the tree writes nothing there."""
    target = tmp_path / "outside" / "owned.txt"
    archive = write_tarball(tmp_path / "model.tar.gz", [*MODEL, regular(str(target))])
    assert_refused(store, cache, archive, "absolute path")
    assert not target.parent.exists()


def test_unpacked_size_limit_aborts_midway(tmp_path: Path, cache: Path) -> None:
    """Passing max_unpacked_bytes aborts the unpack and removes all of it, scratch included."""
    store = ArtifactStore(cache, limits=ArtifactLimits(max_unpacked_bytes=1000))
    members = [regular("a.bin", b"a" * 600), regular("b.bin", b"b" * 600)]
    archive = write_tarball(tmp_path / "model.tar.gz", members)
    assert_refused(store, cache, archive, "unpacks to more than 1000 bytes")


def test_bytes_after_the_tar_count_towards_the_limit(tmp_path: Path, cache: Path) -> None:
    """Data compressed after the tar's end marker is decompressed too, so it counts."""
    store = ArtifactStore(cache, limits=ArtifactLimits(max_unpacked_bytes=100_000))
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info, data = regular("small.bin")
        tar.addfile(info, io.BytesIO(data))
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(gzip.compress(raw.getvalue() + bytes(1_000_000)))
    assert_refused(store, cache, archive, "unpacks to more than 100000 bytes")


def test_member_count_limit(tmp_path: Path, cache: Path) -> None:
    """An archive with more than max_members members is refused."""
    store = ArtifactStore(cache, limits=ArtifactLimits(max_members=3))
    archive = write_tarball(tmp_path / "model.tar.gz", [regular(f"f{i}") for i in range(4)])
    assert_refused(store, cache, archive, "more than 3 members")


def test_archive_size_limit(tmp_path: Path, cache: Path) -> None:
    """An archive larger than max_archive_bytes is refused before it is read."""
    archive = write_tarball(tmp_path / "model.tar.gz")
    size = archive.stat().st_size
    store = ArtifactStore(cache, limits=ArtifactLimits(max_archive_bytes=size - 1))
    assert_refused(store, cache, archive, f"the archive is {size} bytes")


@pytest.mark.parametrize("damage", ["truncated", "flipped"])
def test_corrupt_gzip_is_refused(
    tmp_path: Path, store: ArtifactStore, cache: Path, damage: str
) -> None:
    """A truncated archive, or one whose compressed bytes were altered, is refused."""
    # Incompressible content, so a flipped byte damages data rather than a header.
    good = tar_bytes([regular("model.bin", os.urandom(200_000))])
    middle = len(good) // 2
    if damage == "truncated":
        bad = good[:middle]
    else:
        bad = good[:middle] + bytes([good[middle] ^ 0xFF]) + good[middle + 1 :]
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(bad)
    assert_refused(store, cache, archive, "is not a readable gzip-compressed tar archive")


@pytest.mark.parametrize(
    "content",
    [b"", b"def model_fn(model_dir): ...\n", gzip.compress(b"not a tar archive\n" * 100)],
)
def test_non_tarball_file_is_refused(
    tmp_path: Path, store: ArtifactStore, cache: Path, content: bytes
) -> None:
    """An empty file, a plain file or gzip data that is not a tar archive is refused."""
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(content)
    assert_refused(store, cache, archive, "is not a readable gzip-compressed tar archive")


def test_stale_scratch_is_removed_on_construction(tmp_path: Path, cache: Path) -> None:
    """Unfinished work of an earlier process goes; finished model directories stay."""
    archive = write_tarball(tmp_path / "model.tar.gz")
    model = ArtifactStore(cache).resolve(str(archive))
    (cache / ".tmp-crashed" / "model").mkdir(parents=True)

    ArtifactStore(cache)

    assert entries(cache) == [model.name]


def test_concurrent_resolves_share_one_unpack(
    tmp_path: Path, cache: Path, store: ArtifactStore
) -> None:
    """Eight threads resolving one archive at once all get the same complete directory."""
    archive = write_tarball(tmp_path / "model.tar.gz")
    start = threading.Barrier(8)

    def resolve() -> Path:
        start.wait()
        return store.resolve(archive.as_uri())

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: resolve(), range(8)))

    assert len(set(results)) == 1
    assert entries(cache) == [results[0].name]
    assert_model(results[0])


def test_s3_without_boto3_says_how_to_install_it(
    store: ArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With boto3 not importable, an s3:// URL fails with the install command."""
    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(ArtifactError) as caught:
        store.resolve("s3://bucket/model.tar.gz")
    assert "ModelDataUrl 's3://bucket/model.tar.gz'" in caught.value.message
    assert "pip install boto3" in caught.value.message


# --- S3, against a real S3-compatible server on 127.0.0.1 ---------------------------------------


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    server_module = pytest.importorskip(
        "moto.server", reason="the S3 tests need moto[server] (part of the dev extra)"
    )
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def s3_environ(endpoint: str, **extra: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_DEFAULT_REGION": "us-east-1",
        **extra,
    }


@pytest.fixture
def refused_endpoint() -> Iterator[str]:
    """An http:// endpoint on 127.0.0.1 whose port is bound but not listening: refused."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{held.getsockname()[1]}"


@pytest.fixture
def bucket(s3_endpoint: str, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh bucket (named after the test) on the S3 server, as a boto3 Bucket."""
    boto3 = pytest.importorskip("boto3")
    s3 = boto3.resource(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id="x",
        aws_secret_access_key="x",
        region_name="us-east-1",
    )
    name = request.node.name.lower().replace("_", "-")[:40] + f"-{os.getpid()}"
    created = s3.create_bucket(Bucket=name)
    yield created
    created.objects.all().delete()
    created.delete()


def test_s3_tarball_is_downloaded_and_unpacked(bucket: Any, s3_endpoint: str, cache: Path) -> None:
    """s3://bucket/model.tar.gz is fetched from the configured endpoint and unpacked."""
    bucket.put_object(Key="models/model.tar.gz", Body=tar_bytes(MODEL))
    store = ArtifactStore(cache, environ=s3_environ(s3_endpoint))

    model = store.resolve(f"s3://{bucket.name}/models/model.tar.gz")

    assert model.parent == cache
    assert_model(model)
    assert entries(cache) == [model.name]


def test_s3_object_is_reused_until_its_etag_changes(
    bucket: Any, s3_endpoint: str, cache: Path
) -> None:
    """An unchanged object reuses its tree; re-uploaded content (new ETag) is unpacked anew."""
    url = f"s3://{bucket.name}/model.tar.gz"
    store = ArtifactStore(cache, environ=s3_environ(s3_endpoint))
    bucket.put_object(Key="model.tar.gz", Body=tar_bytes(MODEL))
    first = store.resolve(url)
    (first / "marker").write_bytes(b"")

    assert store.resolve(url) == first
    assert (first / "marker").exists()

    handler_v2 = b"def model_fn(model_dir):\n    return 'v2'\n"
    bucket.put_object(
        Key="model.tar.gz", Body=tar_bytes([regular("code/inference.py", handler_v2)])
    )
    second = store.resolve(url)

    assert second != first
    assert (second / "code" / "inference.py").read_bytes() == handler_v2
    assert entries(cache) == sorted([first.name, second.name])


def test_s3_missing_object_is_refused(bucket: Any, s3_endpoint: str, cache: Path) -> None:
    """A key that does not exist is an ArtifactError naming the URL; nothing is cached."""
    url = f"s3://{bucket.name}/missing/model.tar.gz"
    store = ArtifactStore(cache, environ=s3_environ(s3_endpoint))
    with pytest.raises(ArtifactError) as caught:
        store.resolve(url)
    assert caught.value.message == f"ModelDataUrl {url!r}: {url} does not exist"
    assert entries(cache) == []


def test_s3_unsafe_or_oversized_archive_is_refused(
    bucket: Any, s3_endpoint: str, cache: Path
) -> None:
    """S3 archives get the same checks as local ones, and leave nothing behind either."""
    bucket.put_object(Key="escape.tar.gz", Body=tar_bytes([*MODEL, regular("../x")]))
    store = ArtifactStore(cache, environ=s3_environ(s3_endpoint))
    with pytest.raises(ArtifactError, match=r"'\.\.' path component"):
        store.resolve(f"s3://{bucket.name}/escape.tar.gz")

    bucket.put_object(Key="large.tar.gz", Body=tar_bytes(MODEL))
    limits = ArtifactLimits(max_archive_bytes=100)
    small = ArtifactStore(cache, limits=limits, environ=s3_environ(s3_endpoint))
    with pytest.raises(ArtifactError, match="more than the limit of 100 bytes"):
        small.resolve(f"s3://{bucket.name}/large.tar.gz")

    assert entries(cache) == []


def test_s3_endpoint_falls_back_to_the_general_variable(
    bucket: Any, s3_endpoint: str, refused_endpoint: str, tmp_path: Path
) -> None:
    """AWS_ENDPOINT_URL is used when AWS_ENDPOINT_URL_S3 is absent, and loses when present."""
    bucket.put_object(Key="model.tar.gz", Body=tar_bytes(MODEL))
    url = f"s3://{bucket.name}/model.tar.gz"
    general_only = s3_environ(s3_endpoint)
    general_only["AWS_ENDPOINT_URL"] = general_only.pop("AWS_ENDPOINT_URL_S3")
    # Were the general endpoint used here, the connection would be refused.
    both = s3_environ(s3_endpoint, AWS_ENDPOINT_URL=refused_endpoint)

    assert_model(ArtifactStore(tmp_path / "general", environ=general_only).resolve(url))
    assert_model(ArtifactStore(tmp_path / "both", environ=both).resolve(url))


def test_s3_unreachable_endpoint_is_refused(cache: Path, refused_endpoint: str) -> None:
    """An S3 endpoint that refuses connections is an ArtifactError naming the URL."""
    pytest.importorskip("boto3")
    store = ArtifactStore(cache, environ=s3_environ(refused_endpoint))
    url = "s3://bucket/model.tar.gz"
    with pytest.raises(ArtifactError) as caught:
        store.resolve(url)
    assert caught.value.message.startswith(f"ModelDataUrl {url!r}: cannot read {url}: ")
    assert entries(cache) == []
