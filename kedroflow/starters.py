"""The ``kedroflow-reviews`` Kedro starter: ``kedro new --starter=kedroflow-reviews``.

Kedro loads the ``starters`` list below through the ``kedro.starters`` entry point.
The template is generated from the example project ``examples/reviews`` and shipped
as one archive, ``kedroflow/templates/starters.zip``, by ``scripts/build_starters.py``
(a build tool, not part of the installed package).
"""

from __future__ import annotations

from pathlib import Path

from kedro.framework.cli.starters import KedroStarterSpec

ARCHIVE = Path(__file__).parent / "templates" / "starters.zip"

starters = [
    KedroStarterSpec(
        alias="kedroflow-reviews",
        template_path=str(ARCHIVE),
        directory="reviews",
    )
]
