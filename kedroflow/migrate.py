"""Rewrite a kedro-mlflow 2.x project for kedroflow (``kedro mlflow migrate``).

What changes is only names: catalog ``type:`` values (``kedro_mlflow.io.artifacts.
MlflowArtifactDataset`` -> ``kedroflow.MlflowArtifactDataset``), Python imports
(``from kedro_mlflow.pipeline import pipeline_ml_factory`` -> ``from kedroflow import
pipeline_ml_factory``) and the plugin name in ``DISABLE_HOOKS_FOR_PLUGINS``.
``mlflow.yml`` is read as it is. Anything the rewrite cannot map (a class kedroflow
does not have, ``import kedro_mlflow``, private modules) is reported, not touched.

Examples:
    >>> text = "model:\\n  type: kedro_mlflow.io.models.MlflowModelTrackingDataset\\n"
    >>> print(migrate_catalog(text).text, end="")
    model:
      type: kedroflow.MlflowModelTrackingDataset
    >>> code = "from kedro_mlflow.pipeline import pipeline_ml_factory\\n"
    >>> print(migrate_python(code).text, end="")
    from kedroflow import pipeline_ml_factory
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path

#: kedro-mlflow public names that kedroflow exports under the same name.
PUBLIC_NAMES = frozenset(
    {
        "MlflowArtifactDataset",
        "MlflowMetricDataset",
        "MlflowMetricHistoryDataset",
        "MlflowMetricsHistoryDataset",
        "MlflowModelTrackingDataset",
        "MlflowModelLocalFileSystemDataset",
        "MlflowModelRegistryDataset",
        "PipelineML",
        "pipeline_ml_factory",
        "KedroPipelineModel",
        "MlflowHook",
    }
)

# type: kedro_mlflow.io.<group>[.<module>].<Name>   (DataSet: the 0.x spelling)
_TYPE = re.compile(
    r"(?P<lead>^\s*type:\s*['\"]?)kedro_mlflow(?:\.\w+)*\.(?P<name>Mlflow\w*?)Data[sS]et\b",
    re.M,
)
_FROM_IMPORT = re.compile(
    r"^(?P<indent>[ \t]*)from\s+kedro_mlflow(?:\.[\w.]+)?\s+import\s+"
    r"(?P<names>\([^)]*\)|[^\n#]+)",
    re.M,
)
_OTHER_USE = re.compile(r"^.*\bkedro_mlflow\b.*$", re.M)
_DISABLED_HOOKS = re.compile(r"(['\"])kedro[-_]mlflow\1")


@dataclass
class Migration:
    """The migrated text of one file and what could not be migrated."""

    text: str
    changed: int = 0
    notes: list[str] = field(default_factory=list)


def migrate_catalog(text: str) -> Migration:
    """Rewrite the kedro-mlflow ``type:`` values of a catalog (YAML) text.

    Examples:
        >>> old = "m:\\n  type: kedro_mlflow.io.metrics.MlflowMetricDataSet\\n"
        >>> migrate_catalog(old).text
        'm:\\n  type: kedroflow.MlflowMetricDataset\\n'
        >>> migrate_catalog(
        ...     "x:\\n  type: kedro_mlflow.io.models.MlflowModelLoggerDataSet\\n"
        ... ).notes
        ["line 2: kedroflow has no 'MlflowModelLoggerDataset' (kedro-mlflow 2.0 removed it too): use kedroflow.MlflowModelTrackingDataset"]
    """
    result = Migration(text)

    def replace(match: re.Match[str]) -> str:
        name = f"{match['name']}Dataset"
        if name not in PUBLIC_NAMES:
            line = text.count("\n", 0, match.start()) + 1
            hint = (
                " (kedro-mlflow 2.0 removed it too): use "
                "kedroflow.MlflowModelTrackingDataset"
                if name == "MlflowModelLoggerDataset"
                else ": keep kedro-mlflow for it or replace it"
            )
            result.notes.append(f"line {line}: kedroflow has no '{name}'{hint}")
            return match.group(0)
        result.changed += 1
        return f"{match['lead']}kedroflow.{name}"

    result.text = _TYPE.sub(replace, text)
    return result


def migrate_python(text: str) -> Migration:
    """Rewrite ``from kedro_mlflow... import ...`` and the disabled-hooks plugin name.

    Examples:
        >>> src = "from kedro_mlflow.io.artifacts import MlflowArtifactDataset as A\\n"
        >>> migrate_python(src).text
        'from kedroflow import MlflowArtifactDataset as A\\n'
        >>> migrate_python('DISABLE_HOOKS_FOR_PLUGINS = ("kedro-mlflow",)\\n').text
        'DISABLE_HOOKS_FOR_PLUGINS = ("kedroflow",)\\n'
    """
    result = Migration(text)
    noted: set[int] = set()

    def replace(match: re.Match[str]) -> str:
        names = match["names"].strip().strip("()")
        imported = [
            part.split()[0]
            for part in names.replace("\n", " ").split(",")
            if part.strip()
        ]
        unknown = sorted(set(imported) - PUBLIC_NAMES)
        if unknown:
            line = text.count("\n", 0, match.start()) + 1
            noted.add(line)
            result.notes.append(
                f"line {line}: kedroflow does not export {unknown}: rewrite this "
                "import by hand (kedroflow's public names: "
                f"{', '.join(sorted(PUBLIC_NAMES))})"
            )
            return match.group(0)
        result.changed += 1
        names = match["names"]
        kept = names[len(names.rstrip()) :]  # the space before an inline comment
        return f"{match['indent']}from kedroflow import {names.strip()}{kept}"

    migrated = _FROM_IMPORT.sub(replace, text)
    migrated, hooks = _DISABLED_HOOKS.subn(r"\1kedroflow\1", migrated)
    result.changed += hooks
    for match in _OTHER_USE.finditer(migrated):
        line = migrated.count("\n", 0, match.start()) + 1
        if line not in noted and not match.group(0).lstrip().startswith("#"):
            result.notes.append(
                f"line {line}: '{match.group(0).strip()}' still uses kedro_mlflow"
            )
    result.text = migrated
    return result


_STORE_URI = re.compile(
    r"^(?P<lead>[ \t]*mlflow_(?P<kind>tracking|registry)_uri:[ \t]*)"
    r"(?P<quote>['\"]?)(?P<uri>[^'\"\s#]+)(?P=quote)",
    re.M,
)


def migrate_mlflow_yml(text: str) -> Migration:
    """Point ``mlflow.yml`` at a SQLite store where it names a local file store.

    MLflow 3.7+ refuses file stores (kedro-mlflow's ``mlruns``, the ``mlflow_runs`` of
    Kedro's MLflow page): the tracking URI becomes ``sqlite:///mlflow.db`` (kedroflow's
    default), a file-store registry URI ``null`` (the tracking store).

    Examples:
        >>> result = migrate_mlflow_yml(
        ...     "server:\\n  mlflow_tracking_uri: mlflow_runs\\n"
        ... )
        >>> print(result.text, end="")
        server:
          mlflow_tracking_uri: sqlite:///mlflow.db
    """
    from kedroflow.config import DEFAULT_TRACKING_URI
    from kedroflow.file_stores import is_file_store

    result = Migration(text)

    def replace(match: re.Match[str]) -> str:
        uri = match["uri"]
        if uri in ("null", "~") or uri.startswith("$") or not is_file_store(uri):
            return match.group(0)
        line = text.count("\n", 0, match.start()) + 1
        result.changed += 1
        if match["kind"] == "registry":
            return f"{match['lead']}null"
        result.notes.append(
            f"line {line}: the file store '{uri}' becomes {DEFAULT_TRACKING_URI} "
            "(MLflow 3.7+ refuses file stores); runs already in it stay there: "
            f"`mlflow migrate-filestore` (see its --help) copies them into mlflow.db"
        )
        return f"{match['lead']}{DEFAULT_TRACKING_URI}"

    result.text = _STORE_URI.sub(replace, text)
    return result


@dataclass
class FileMigration:
    """One file of a project: its path, old and new text, and notes."""

    path: Path
    old: str
    new: str
    notes: list[str]

    def diff(self, root: Path) -> str:
        """A unified diff of the change, with paths relative to ``root``."""
        name = self.path.relative_to(root).as_posix()
        return "".join(
            difflib.unified_diff(
                self.old.splitlines(keepends=True),
                self.new.splitlines(keepends=True),
                f"a/{name}",
                f"b/{name}",
            )
        )


def migrate_project(project_path: Path, *, write: bool = False) -> list[FileMigration]:
    """Find (and with ``write=True`` rewrite) what a kedro-mlflow project must change.

    Looks at every ``conf/**/*.yml``/``*.yaml`` (catalog ``type:`` values; file
    stores in ``mlflow*.yml``) and every ``*.py`` under ``src/`` (imports,
    ``DISABLE_HOOKS_FOR_PLUGINS``).

    Args:
        project_path: The Kedro project root.
        write: Rewrite the files in place; else only report.

    Returns:
        The files that change or need a manual edit, in path order.

    Examples:
        >>> conf = tmp_path / "conf" / "base"
        >>> conf.mkdir(parents=True)
        >>> _ = (conf / "catalog.yml").write_text(
        ...     "plot:\\n  type: kedro_mlflow.io.artifacts.MlflowArtifactDataset\\n"
        ... )
        >>> [m.path.name for m in migrate_project(tmp_path, write=True)]
        ['catalog.yml']
        >>> (conf / "catalog.yml").read_text()
        'plot:\\n  type: kedroflow.MlflowArtifactDataset\\n'
        >>> migrate_project(tmp_path)
        []
    """
    root = Path(project_path)
    candidates = [
        (
            path,
            migrate_mlflow_yml if path.name.startswith("mlflow") else migrate_catalog,
        )
        for pattern in ("*.yml", "*.yaml")
        for path in (root / "conf").rglob(pattern)
    ]
    candidates += [(path, migrate_python) for path in (root / "src").rglob("*.py")]
    found = []
    for path, migrate in sorted(candidates, key=lambda item: item[0]):
        if any(part.startswith(".") or part == "__pycache__" for part in path.parts):
            continue
        old = path.read_text(encoding="utf-8")
        result = migrate(old)
        if result.text == old and not result.notes:
            continue
        found.append(FileMigration(path, old, result.text, result.notes))
        if write and result.text != old:
            path.write_text(result.text, encoding="utf-8")
    return found


def report(migrations: list[FileMigration], root: Path, *, written: bool) -> str:
    """What ``kedro mlflow migrate`` prints: diffs, notes and what to do next."""
    if not migrations:
        return "Nothing to migrate: no kedro_mlflow type or import found."
    lines = []
    for migration in migrations:
        diff = migration.diff(root)
        if diff:
            lines.append(diff.rstrip("\n"))
        rel = migration.path.relative_to(root).as_posix()
        lines += [f"{rel}: {note}" for note in migration.notes]
    changed = sum(m.old != m.new for m in migrations)
    verb = "Rewrote" if written else "Would rewrite"
    lines.append(f"{verb} {changed} file(s).")
    if not written and changed:
        lines.append("Run `kedro mlflow migrate --write` to apply.")
    return "\n".join(lines)
