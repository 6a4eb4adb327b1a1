"""A run's artifact folder on this machine's disk, written with plain file copies.

For a local artifact root (a path or a ``file:`` URI: the default beside a ``sqlite:``
store, or a server with ``--no-serve-artifacts`` on a shared disk) logging an artifact
is copying a file into the run's folder. MLflow's ``LocalArtifactRepository`` does so
through a 1 MB Python buffer into a temp file, then ``copystat`` and rename: several
times slower than :func:`shutil.copyfile`, which lets the kernel copy
(``benchmarks/bench_auto_log.py``). :class:`LocalArtifacts` writes the same layout with
``copyfile``, and keeps MLflow's guarantee that a reader never sees half a file: each
file is copied under a temp name MLflow's listing hides, then renamed. Pure: no mlflow.
"""

from __future__ import annotations

import os
import shutil
import uuid
from urllib.parse import urlparse
from urllib.request import url2pathname

from kedroflow.file_stores import is_file_store

#: MLflow's prefix of a file being written into a local artifact folder: its listing
#: hides these, and it refuses artifacts named so.
_UPLOADING = ".artifact.uploading."


def local_artifact_root(artifact_uri: str) -> str | None:
    """The folder of a local artifact URI (a path or ``file:``); None for a remote one."""
    if not is_file_store(artifact_uri):
        return None
    if artifact_uri.startswith("file:"):
        return url2pathname(urlparse(artifact_uri).path)
    return artifact_uri


class LocalArtifacts:
    """The artifact folder of one run; the two methods of MLflow's repository we use."""

    def __init__(self, root: str) -> None:
        self.root = root

    def log_artifact(self, local_file: str, artifact_path: str | None = None) -> None:
        """Copy ``local_file`` to ``<root>/<artifact_path>/<its name>``."""
        folder = self._folder(artifact_path)
        _make_folder(folder)
        _copy(local_file, folder)

    def log_artifacts(self, local_dir: str, artifact_path: str | None = None) -> None:
        """Copy the files under ``local_dir`` into ``<root>/<artifact_path>/``."""
        folder = self._folder(artifact_path)
        for current, _, names in os.walk(local_dir):
            relative = os.path.relpath(current, local_dir)
            target = os.path.normpath(os.path.join(folder, relative))
            _make_folder(target)
            for name in sorted(names):
                _copy(os.path.join(current, name), target)

    def _folder(self, artifact_path: str | None) -> str:
        """The folder of ``artifact_path``, relative to the root and never outside it."""
        if not artifact_path:
            return self.root
        relative = os.path.normpath(artifact_path)
        if os.path.isabs(relative) or relative.split(os.sep)[0] == "..":
            raise ValueError(
                f"The artifact path {artifact_path!r} leaves the run's artifact folder "
                f"{self.root}: name artifacts by paths relative to it."
            )
        return os.path.join(self.root, relative)


def _make_folder(folder: str) -> None:
    """Create ``folder``: one ``mkdir`` when its parent exists (the usual case)."""
    try:
        os.mkdir(folder)
    except FileExistsError:
        pass
    except FileNotFoundError:
        os.makedirs(folder, exist_ok=True)


def _copy(local_file: str, folder: str) -> None:
    """Copy ``local_file`` into ``folder`` under a temp name, then rename it."""
    target = os.path.join(folder, os.path.basename(local_file))
    staged = os.path.join(folder, f"{_UPLOADING}{uuid.uuid4().hex}")
    try:
        shutil.copyfile(local_file, staged)
        os.replace(staged, target)  # readers see the whole file or the one before
    except BaseException:
        if os.path.exists(staged):
            os.remove(staged)
        raise
