"""MlflowPromptDataset through a real session: a prompt saved, then loaded by alias."""

from __future__ import annotations

from typing import Any

import pytest

from kedroflow.errors import MlflowDatasetError
from kedroflow.io import MlflowPromptDataset

NODES = """
def write_prompt():
    return "Summarize {{text}} in a {{tone}} tone."


def fill(prompt):
    return prompt
"""

REGISTRY = """
from kedro.pipeline import Node, Pipeline

from fake_project.nodes import fill, write_prompt


def register_pipelines():
    return {
        "__default__": Pipeline([Node(write_prompt, None, "new_prompt", name="write")]),
        "write": Pipeline([Node(write_prompt, None, "new_prompt", name="write")]),
        "read": Pipeline([Node(fill, "production_prompt", "filled", name="fill")]),
    }
"""

CATALOG = """
new_prompt:
  type: kedroflow.MlflowPromptDataset
  name: summarize
  save_args: {commit_message: from the write pipeline, alias: production}
production_prompt:
  type: kedroflow.MlflowPromptDataset
  name: summarize
  alias: production
  load_args: {output: template, variables: {text: the reviews, tone: neutral}}
"""


@pytest.fixture
def project(kedro_project: Any) -> Any:
    kedro_project.write("src/fake_project/nodes.py", NODES)
    kedro_project.write_pipelines(REGISTRY)
    kedro_project.write("conf/base/catalog.yml", CATALOG)
    return kedro_project


class TestPromptDataset:
    def test_saved_then_loaded_by_alias(self, project: Any) -> None:
        project.run(pipeline_names=["write"])
        result = project.run(pipeline_names=["read"])
        assert result["filled"].load() == "Summarize the reviews in a neutral tone."
        client = project.client()
        prompt = client.load_prompt("summarize", version=1)
        assert prompt.commit_message == "from the write pipeline"

    def test_version_and_alias_together_is_one_clear_error(self) -> None:
        with pytest.raises(MlflowDatasetError, match="`version` or `alias`, not both"):
            MlflowPromptDataset(name="p", version=1, alias="prod")
