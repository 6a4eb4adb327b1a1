"""One MLflow trace per ``kedro run``, a span per node: real sessions on SQLite."""

from __future__ import annotations

import signal
from typing import Any

import pytest
from kedro.runner import ParallelRunner, SequentialRunner, ThreadRunner

from tests.conftest import WAITING_NODE

NODES = (
    """
import time
from pathlib import Path

import mlflow


@mlflow.trace(name="inner_call")
def inner(x):
    return x * 2


def prepare(a):
    return inner(a)


def train(x, model):
    return {"x": x, "lr": model["lr"]}


def explode(a):
    raise ValueError(f"cannot reach db with password s3cr3t-value-42 (a={a})")

"""
    + WAITING_NODE
)

REGISTRY = """
from kedro.pipeline import Node, Pipeline

from fake_project.nodes import explode, prepare, train, wait


def register_pipelines():
    main = Pipeline(
        [
            Node(prepare, "params:a", "prepared", name="prepare", namespace="prep",
                 tags=["etl"]),
            Node(train, ["prepared", "params:model"], "trained", name="train",
                 tags=["ml"]),
        ]
    )
    return {
        "__default__": main,
        "failing": Pipeline([Node(explode, "params:a", "never", name="explode")]),
        "interrupted": Pipeline(
            [
                Node(prepare, "params:a", "prepared", name="prepare"),
                Node(wait, ["prepared", "params:marker"], "never", name="wait"),
            ]
        ),
    }
"""


@pytest.fixture
def project(kedro_project: Any) -> Any:
    kedro_project.write("src/fake_project/nodes.py", NODES)
    kedro_project.write_pipelines(REGISTRY)
    kedro_project.write(
        "conf/base/parameters.yml",
        f"a: 2\nmodel:\n  lr: 0.1\nmarker: {kedro_project.path / 'started'}\n",
    )
    return kedro_project


def traces_of(project: Any, run_id: str) -> list[Any]:
    """The run's traces, read as soon as the run returned (its end waited for them)."""
    client = project.client()
    experiment = client.get_experiment_by_name("fake_project")
    found = client.search_traces(experiment_ids=[experiment.experiment_id])
    return [
        t for t in found if t.info.request_metadata.get("mlflow.sourceRun") == run_id
    ]


def the_trace(project: Any) -> tuple[Any, Any]:
    """The run and its kedro trace (the one whose root span is the pipeline run)."""
    run = project.only_run()
    client = project.client()
    traces = [
        client.get_trace(t.info.request_id) for t in traces_of(project, run.info.run_id)
    ]
    (trace,) = [
        t for t in traces if any(s.name.startswith("kedro run") for s in t.data.spans)
    ]
    return run, trace


def spans_by_name(trace: Any) -> dict[str, Any]:
    return {span.name: span for span in trace.data.spans}


class TestOneTracePerRun:
    @pytest.mark.parametrize(
        "runner",
        [SequentialRunner, lambda: ThreadRunner(max_workers=2)],
        ids=["sequential", "thread"],
    )
    def test_a_span_per_node_and_spans_of_the_node_nest_under_it(
        self, project: Any, runner: Any
    ) -> None:
        project.run(runner=runner())
        run, trace = the_trace(project)
        spans = spans_by_name(trace)
        root = spans["kedro run __default__"]
        assert root.parent_id is None
        assert {"prep.prepare", "train", "inner_call"} <= spans.keys()
        prepare, train = spans["prep.prepare"], spans["train"]
        assert prepare.parent_id == root.span_id == train.parent_id
        assert spans["inner_call"].parent_id == prepare.span_id
        assert prepare.attributes["kedro.namespace"] == "prep"
        assert prepare.attributes["kedro.tags"] == ["etl"]
        assert prepare.attributes["kedro.inputs"] == ["params:a"]
        assert prepare.attributes["kedro.outputs"] == ["prepared"]
        assert train.attributes["kedro.inputs"] == ["prepared", "params:model"]
        assert prepare.start_time_ns <= prepare.end_time_ns <= train.end_time_ns
        assert trace.info.status in ("OK", "TraceStatus.OK")
        assert run.info.status == "FINISHED"

    def test_parallel_runner_spans_recorded_by_the_workers(self, project: Any) -> None:
        project.run(runner=ParallelRunner(max_workers=2))
        _, trace = the_trace(project)
        spans = spans_by_name(trace)
        root = spans["kedro run __default__"]
        for name in ("prep.prepare", "train"):
            assert spans[name].parent_id == root.span_id
            assert spans[name].end_time_ns > spans[name].start_time_ns
        assert spans["train"].attributes["kedro.tags"] == ["ml"]

    def test_parallel_runner_spans_made_inside_a_node_are_a_trace_of_the_run(
        self, project: Any
    ) -> None:
        project.run(runner=ParallelRunner(max_workers=2))
        run = project.only_run()
        client = project.client()
        # the workers sent their traces before they ended
        names = [
            [span.name for span in client.get_trace(t.info.request_id).data.spans]
            for t in traces_of(project, run.info.run_id)
        ]
        assert ["inner_call"] in names, names

    def test_failing_node_span_is_an_error_with_the_exception_scrubbed(
        self, project: Any
    ) -> None:
        project.write(
            "conf/local/credentials.yml", "db:\n  password: s3cr3t-value-42\n"
        )
        with pytest.raises(ValueError, match="cannot reach db"):
            project.run(pipeline_names=["failing"])
        run, trace = the_trace(project)
        span = spans_by_name(trace)["explode"]
        assert str(span.status.status_code).endswith("ERROR")
        (event,) = [e for e in span.events if e.name == "exception"]
        assert event.attributes["exception.type"] == "ValueError"
        assert (
            "cannot reach db with password *** (a=2)"
            in (event.attributes["exception.message"])
        )
        assert "s3cr3t-value-42" not in str(trace.to_dict())
        assert run.info.status == "FAILED"

    def test_sigterm_during_a_node_keeps_the_trace_of_what_ran(
        self, project: Any, pipelines_option: str
    ) -> None:
        marker = project.path / "started"
        _, output = project.interrupt(
            [pipelines_option, "interrupted"], marker, signal.SIGTERM
        )
        run, trace = the_trace(project)
        assert run.info.status == "KILLED", output
        spans = spans_by_name(trace)
        assert {"prepare", "inner_call", "wait"} <= spans.keys()
        assert spans["inner_call"].parent_id == spans["prepare"].span_id

    def test_dataset_spans_on_request(self, project: Any) -> None:
        project.write(
            "conf/local/mlflow.yml", "tracking:\n  tracing: {datasets: true}\n"
        )
        project.run()
        _, trace = the_trace(project)
        spans = spans_by_name(trace)
        train = spans["train"]
        assert spans["load prepared"].parent_id == train.span_id
        assert spans["save trained"].parent_id == train.span_id
        assert spans["load params:a"].parent_id == spans["prep.prepare"].span_id

    def test_tracing_off(self, project: Any) -> None:
        project.write(
            "conf/local/mlflow.yml", "tracking:\n  tracing: {enabled: false}\n"
        )
        project.run()
        run = project.only_run()
        names = [
            span.name
            for summary in traces_of(project, run.info.run_id)
            for span in project.client().get_trace(summary.info.request_id).data.spans
        ]
        assert "kedro run __default__" not in names
        assert "prep.prepare" not in names
