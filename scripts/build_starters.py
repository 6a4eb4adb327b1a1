"""Build the ``kedroflow-reviews`` starter archive from the example project.

One source of truth: the example project ``examples/reviews`` is a normal, runnable
Kedro project. The starter is a cookiecutter template *generated* from it by
:func:`build_template` and shipped as one archive, ``kedroflow/templates/starters.zip``
(an archive keeps the template's Python files out of pytest, mypy and ruff, which
would otherwise see them as kedroflow modules). ``tests/test_example.py`` fails when
the archive is out of date; after editing the example, regenerate it with::

    python scripts/build_starters.py
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path, PurePosixPath

REPO = Path(__file__).resolve().parent.parent
ARCHIVE = REPO / "kedroflow" / "templates" / "starters.zip"
EXAMPLES = REPO / "examples"

_TOP = "kedroflow-starters"
_PACKAGE = "reviews"  # the example's python package, replaced by the user's
_PY = "{{ cookiecutter.python_package }}"

# Only these values of the example become template variables; each must occur exactly
# once in its file, so a change to the example that breaks the template fails loudly.
_VARIABLES: dict[str, list[tuple[str, str]]] = {
    "pyproject.toml": [
        (r'(?m)^name = "reviews"$', f'name = "{_PY}"'),
        (r'(?m)^reviews = "reviews\.__main__:main"$', f'{_PY} = "{_PY}.__main__:main"'),
        (r'(?m)^attr = "reviews\.__version__"$', f'attr = "{_PY}.__version__"'),
        (r'(?m)^package_name = "reviews"$', f'package_name = "{_PY}"'),
        (
            r'(?m)^project_name = "Reviews"$',
            'project_name = "{{ cookiecutter.project_name }}"',
        ),
        (
            r'(?m)^kedro_init_version = "[^"]*"$',
            'kedro_init_version = "{{ cookiecutter.kedro_version }}"',
        ),
    ],
    "conf/base/mlflow.yml": [(r"(?m)^    name: reviews$", f"    name: {_PY}")],
    "README.md": [(r"(?m)^# Reviews$", "# {{ cookiecutter.project_name }}")],
}

_COOKIECUTTER_JSON = {
    "project_name": "Reviews",
    "repo_name": "{{ cookiecutter.project_name.strip().replace(' ', '-')"
    ".replace('_', '-').lower() }}",
    "python_package": "{{ cookiecutter.project_name.strip().replace(' ', '_')"
    ".replace('-', '_').lower() }}",
    "kedro_version": "{{ cookiecutter.kedro_version }}",
}

_PROMPTS_YML = """\
project_name:
  title: "Project Name"
  text: |
    Please enter a name for your new project.
    Spaces, hyphens, and underscores are allowed.
    To skip this step in future use --name
  regex_validator: "^[\\\\w -]{2,}$"
  error_message: |
    It must contain only alphanumeric symbols, spaces, underscores and hyphens and
    be at least 2 characters long.
"""

# Outputs and local state: never part of the template (same as the example's .gitignore).
_SKIP_DIRS = {"__pycache__", ".venv", "mlruns", "mlartifacts", "build", "dist", ".viz"}
_SKIP_SUFFIXES = (".pyc", ".pyo", ".log", ".egg-info")
_SKIP_FILES = {"mlflow.db", ".telemetry"}
_KEPT_DATA = {"data/01_raw/stopwords.yml"}
_JINJA = re.compile(r"\{\{|\{%|\{#")


def example_files(example: Path) -> list[PurePosixPath]:
    """The files of an example project that belong to its starter, sorted.

    Pipeline outputs (everything under ``data/`` but the committed inputs), the MLflow
    store, local configuration and caches are left out.
    """
    found = []
    for path in sorted(example.rglob("*")):
        rel = PurePosixPath(path.relative_to(example).as_posix())
        if path.is_dir() or _skipped(rel):
            continue
        found.append(rel)
    return found


def _skipped(rel: PurePosixPath) -> bool:
    if any(part in _SKIP_DIRS or part.endswith(_SKIP_SUFFIXES) for part in rel.parts):
        return True
    if rel.name in _SKIP_FILES:
        return True
    if rel.parts[0] == "data":
        return rel.as_posix() not in _KEPT_DATA and rel.name != ".gitkeep"
    return rel.parts[:2] == ("conf", "local") and rel.name != ".gitkeep"


def build_template(example: Path) -> dict[str, bytes]:
    """The cookiecutter template of ``example``: archive member name -> content.

    Raises:
        ValueError: If a file of the example contains Jinja markup (cookiecutter would
            render it), or a template variable no longer matches exactly once.
    """
    root = f"{_TOP}/{example.name}"
    members = {
        f"{root}/cookiecutter.json": (json.dumps(_COOKIECUTTER_JSON, indent=4) + "\n"),
        f"{root}/prompts.yml": _PROMPTS_YML,
    }
    for rel in example_files(example):
        text = (example / rel).read_text(encoding="utf-8")
        key = rel.as_posix()
        if _JINJA.search(text):
            raise ValueError(
                f"{example / rel} contains '{{{{', '{{%' or '{{#', which cookiecutter "
                "would render: rewrite that text (e.g. split the braces)."
            )
        for pattern, replacement in _VARIABLES.get(key, []):
            text, count = re.subn(pattern, replacement.replace("\\", r"\\"), text)
            if count != 1:
                raise ValueError(
                    f"Pattern {pattern!r} matched {count} times in {example / rel} "
                    "(expected once): update _VARIABLES in scripts/build_starters.py to the "
                    "example's new text."
                )
        parts = list(rel.parts)
        if parts[:2] == ["src", _PACKAGE]:
            parts[1] = _PY
        members["/".join([root, "{{ cookiecutter.repo_name }}", *parts])] = text
    return {name: content.encode("utf-8") for name, content in members.items()}


def write_archive(templates: dict[str, bytes], target: Path = ARCHIVE) -> None:
    """Write template members to a zip archive, byte-for-byte reproducibly."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        directories = {_TOP + "/"}
        for name in templates:
            parents = PurePosixPath(name).parents
            directories.update(
                f"{p.as_posix()}/" for p in parents if p.as_posix() != "."
            )
        # cookiecutter needs the top-level directory entry first
        for name in sorted(directories, key=lambda d: (d != _TOP + "/", d)):
            archive.writestr(_info(name, 0o40755), b"")
        for name in sorted(templates):
            archive.writestr(_info(name, 0o100644), templates[name])
    target.write_bytes(buffer.getvalue())


def read_archive(archive: Path = ARCHIVE) -> dict[str, bytes]:
    """The files (not directories) of a starters archive: member name -> content."""
    with zipfile.ZipFile(archive) as opened:
        return {
            info.filename: opened.read(info)
            for info in opened.infolist()
            if not info.is_dir()
        }


def _info(name: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
    info.external_attr = mode << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def main() -> None:
    """Regenerate ``kedroflow/templates/starters.zip`` from ``examples/``."""
    example = EXAMPLES / "reviews"
    if not example.is_dir():
        raise SystemExit(
            f"{example} not found: run this from a source checkout of kedroflow."
        )
    write_archive(build_template(example))
    print(f"wrote {ARCHIVE} from {example}")


if __name__ == "__main__":
    main()
