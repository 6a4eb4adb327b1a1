"""Pins of the distributions a pipeline model needs, read from the running environment.

Without MLflow's requirement-inference subprocess (it loads the model in a new
process): the distributions of the node functions' modules and of what those modules
import, and of the artifacts' and input's classes, plus kedro, kedroflow and mlflow.
"""

from __future__ import annotations

import sys
import types
from typing import Any


def pip_requirements(objects: list[Any], functions: list[Any]) -> list[str]:
    """Pins (``dist==version``) of kedro, kedroflow, mlflow and what the model uses.

    ``functions`` are the node functions, ``objects`` the artifacts and the input.
    """
    from importlib.metadata import version

    import kedro
    import mlflow

    # kedroflow's version from the imported package (importing it from here would run
    # up the layers); from the metadata when only a submodule was imported
    own = getattr(sys.modules.get("kedroflow"), "__version__", None)
    pins = {
        "mlflow": f"mlflow=={mlflow.__version__}",
        "kedro": f"kedro=={kedro.__version__}",
        "kedroflow": f"kedroflow=={own or version('kedroflow')}",
    }
    tops = _top_level_modules(objects, functions)
    for dist, dist_version in sorted(set(_distributions(tops).values())):
        key = dist.lower().replace("_", "-")
        if key in pins or key.startswith("mlflow"):
            continue
        pins[key] = f"{dist}=={dist_version}"
    return list(pins.values())


def _top_level_modules(objects: list[Any], functions: list[Any]) -> set[str]:
    """Top-level modules of the functions, of what their modules import, of objects."""
    tops: set[str] = set()
    for func in functions:
        module = sys.modules.get(getattr(func, "__module__", "") or "")
        if module is None:
            continue
        tops.add(module.__name__.split(".")[0])
        for value in vars(module).values():
            owner = (
                value.__name__
                if isinstance(value, types.ModuleType)
                else getattr(value, "__module__", None)
            )
            if isinstance(owner, str):
                tops.add(owner.split(".")[0])
    for obj in objects:
        tops.add(type(obj).__module__.split(".")[0])
    return tops - set(sys.stdlib_module_names) - {"builtins", "__main__"}


#: Top-level module -> (distribution, version), per process: a module imported once
#: stays the same code however the environment changes afterwards.
_DIST_OF: dict[str, tuple[str, str]] = {}


def _distributions(tops: set[str]) -> dict[str, tuple[str, str]]:
    """Installed distribution and version of each top-level module (skips local code).

    Reads each distribution's small ``top_level.txt``, or its ``RECORD`` when it has
    none, as plain text, and parses ``METADATA`` only for the distributions found:
    ``packages_distributions()`` and ``Distribution.files`` parse every file path and
    every METADATA, which took a third of a training run's model logging.
    """
    from importlib.metadata import distributions

    wanted = set()
    for top in tops:
        path = getattr(sys.modules.get(top), "__file__", None) or ""
        if "site-packages" in path or "dist-packages" in path:
            wanted.add(top)
    missing = wanted - _DIST_OF.keys()
    for dist in distributions() if missing else ():
        text = dist.read_text("top_level.txt")
        if text is not None:
            provided = set(text.split())
        else:
            provided = {
                line.split(",", 1)[0].split("/", 1)[0].removesuffix(".py")
                for line in (dist.read_text("RECORD") or "").splitlines()
            }
        for top in provided & missing:
            _DIST_OF[top] = (dist.metadata["Name"], dist.version)
        missing -= provided
        if not missing:
            break
    return {top: _DIST_OF[top] for top in wanted if top in _DIST_OF}
