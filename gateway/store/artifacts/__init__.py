"""Model artifacts: from a model's ``ModelDataUrl`` to a local, unpacked model directory.

A ``ModelDataUrl`` may name, in this order of detection:

* a directory, as an absolute path or a ``file://`` URL: used in place, never copied;
* a regular file, as an absolute path or a ``file://`` URL: read as a gzip-compressed tar
  archive (SageMaker's ``model.tar.gz``; ``.tgz`` is the same thing) whatever its name,
  and unpacked once into the artifact cache;
* ``s3://bucket/key``: an object holding a ``model.tar.gz``, downloaded with boto3 (an
  optional dependency, imported only here) and then unpacked like a local archive.

Anything else is an ``ArtifactError`` whose message names ``ModelDataUrl``.

The cache is ``cache_dir/<key>/``, where ``<key>`` hashes the archive's identity: (path,
size, mtime) for a local file, (bucket, key, ETag) for an S3 object. A changed archive
therefore gets a new directory and an unchanged one is reused; old directories are never
removed here, because workers may still be running from them. A directory appears in the
cache only by an atomic rename of a fully unpacked tree, so one that exists is complete.
Work in progress lives in ``cache_dir/.tmp-*``; the store assumes it is the only writer
of ``cache_dir`` (one gateway per state directory), so it removes every ``.tmp-*`` when it
is built, and everything of a failed attempt when the attempt fails.

Unpacking trusts nothing in the archive (see ``archive._Extractor``): members are written only
below the model directory, links are refused except hard links to files unpacked earlier
from the same archive, special files are refused, and every directory is mode 0755 and
every file 0644 (0755 if it was executable), so worker processes can read the tree.
"""

from gateway.store.artifacts.archive import ArtifactLimits
from gateway.store.artifacts.errors import ArtifactError
from gateway.store.artifacts.store import ArtifactStore
from gateway.store.artifacts.urls import check_url

__all__ = ["ArtifactError", "ArtifactLimits", "ArtifactStore", "check_url"]
