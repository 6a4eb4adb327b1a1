"""An LLM pipeline with Kedro's ``llm_context_node``, a registry prompt and a stub LLM.

A real project run by ``KedroSession`` on SQLite, no network: the prompt comes from the
project's Prompt Registry by alias (``MlflowPromptDataset``), the LLM is a local stub
loaded by a custom dataset, and the node that calls it goes through an
``@mlflow.trace`` function (as an LLM client's autolog would).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from kedro.runner import ParallelRunner, SequentialRunner, ThreadRunner

from tests.test_tracing import spans_by_name, the_trace, traces_of

# Kedro >= 1.7 only; older Kedro versions have no LLM context nodes
pytest.importorskip("kedro.pipeline.llm_context")

LLM = """
from kedro.io import AbstractDataset, DatasetError


class EchoLLM:
    \"\"\"A local stand-in for a chat model: it answers without any network.\"\"\"

    def __init__(self, model):
        self.model = model

    def invoke(self, prompt):
        return f"[{self.model}] {prompt}"


class EchoLLMDataset(AbstractDataset):
    def __init__(self, model="echo-1"):
        self._model = model

    def load(self):
        return EchoLLM(self._model)

    def save(self, data):
        raise DatasetError("EchoLLMDataset is read-only")

    def _describe(self):
        return {"model": self._model}
"""

NODES = """
import mlflow


def build_lookup(facts):
    def lookup(topic):
        return facts.get(topic, "nothing known")

    return lookup


@mlflow.trace(span_type="LLM")
def call_llm(llm, prompt):
    return llm.invoke(prompt)


def answer(context, question):
    facts = context.tools["lookup"](question)
    prompt = context.prompts["answer_prompt"]
    return call_llm(context.llm, prompt.format(question=question, facts=facts))


def fill(prompt, question):
    return prompt.format(question=question, facts="")
"""

REGISTRY = """
from kedro.pipeline import Node, Pipeline, llm_context_node, tool

from fake_project.nodes import answer, build_lookup, fill


def register_pipelines():
    pipeline = Pipeline(
        [
            llm_context_node(
                name="build_context",
                outputs="context",
                llm="llm",
                prompts=["answer_prompt"],
                tools=[tool(build_lookup, "params:facts")],
            ),
            Node(answer, ["context", "params:question"], "answer", name="answer"),
        ]
    )
    # ParallelRunner cannot run an llm_context_node (its function is a closure)
    plain = Pipeline(
        [Node(fill, ["answer_prompt", "params:question"], "filled", name="fill")]
    )
    return {"__default__": pipeline, "plain": plain}
"""

CATALOG = """
answer_prompt:
  type: kedroflow.MlflowPromptDataset
  name: answer
  alias: production
llm:
  type: fake_project.llm.EchoLLMDataset
  model: echo-1
"""

PARAMETERS = """
question: kedro
facts:
  kedro: a framework for data pipelines
"""


@pytest.fixture
def project(kedro_project: Any) -> Any:
    kedro_project.write("src/fake_project/llm.py", LLM)
    kedro_project.write("src/fake_project/nodes.py", NODES)
    kedro_project.write_pipelines(REGISTRY)
    kedro_project.write("conf/base/catalog.yml", CATALOG)
    kedro_project.write("conf/base/parameters.yml", PARAMETERS)
    client = kedro_project.client()
    client.register_prompt("answer", "Answer about {{question}} using: {{facts}}")
    client.set_prompt_alias("answer", "production", 1)
    # a newer version the alias does not point at: the run must not use it
    client.register_prompt("answer", "DRAFT {{question}}")
    return kedro_project


@pytest.mark.parametrize(
    "runner",
    [SequentialRunner, lambda: ThreadRunner(max_workers=2)],
    ids=["sequential", "thread"],
)
class TestLLMContextNode:
    def test_llm_call_nests_under_the_node_that_makes_it(
        self, project: Any, runner: Any
    ) -> None:
        result = project.run(runner=runner())
        expected = "[echo-1] Answer about kedro using: a framework for data pipelines"
        assert result["answer"].load() == expected
        _, trace = the_trace(project)
        spans = spans_by_name(trace)
        root = spans["kedro run __default__"]
        context, answer, call = (
            spans["build_context"],
            spans["answer"],
            spans["call_llm"],
        )
        assert context.parent_id == root.span_id == answer.parent_id
        assert call.parent_id == answer.span_id
        assert call.outputs == expected
        assert context.attributes["kedro.inputs"] == [
            "llm",
            "answer_prompt",
            "params:facts",
        ]

    def test_the_prompt_version_is_linked_to_the_run_and_the_context_span(
        self, project: Any, runner: Any
    ) -> None:
        project.run(runner=runner())
        run, trace = the_trace(project)
        used = [{"name": "answer", "version": "1"}]  # the alias's, not the latest
        assert json.loads(run.data.tags["mlflow.linkedPrompts"]) == used
        context = spans_by_name(trace)["build_context"]
        assert _decoded(context.attributes["mlflow.linkedPrompts"]) == used


def _decoded(value: Any) -> Any:
    """A span attribute in MLflow's JSON format (decoded once more by some stores)."""
    return json.loads(value) if isinstance(value, str) else value


def test_parallel_runner_worker_spans_name_the_prompt_versions(project: Any) -> None:
    project.run(runner=ParallelRunner(max_workers=2), pipeline_names=["plain"])
    run = project.only_run()
    traces = [
        project.client().get_trace(t.info.request_id)
        for t in traces_of(project, run.info.run_id)
    ]
    (fill,) = [s for t in traces for s in t.data.spans if s.name == "fill"]
    used = [{"name": "answer", "version": "1"}]
    assert json.loads(run.data.tags["mlflow.linkedPrompts"]) == used
    assert _decoded(fill.attributes["mlflow.linkedPrompts"]) == used
