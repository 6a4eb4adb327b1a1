"""pipeline_ml_factory / PipelineML: the binding checks and the registry lookup."""

from __future__ import annotations

import pytest
from kedro.pipeline import Node, Pipeline

from kedroflow import PipelineML, pipeline_ml_factory
from kedroflow.errors import PipelineMLError
from kedroflow.pipeline import find_pipeline_ml


def fit(data):
    return data


def transform(data, encoder):
    return data


def predict(features, model, threshold):
    return features


TRAINING = Pipeline(
    [
        Node(fit, "data", "encoder", name="fit_encoder"),
        Node(transform, ["data", "encoder"], "features", name="transform"),
        Node(fit, "features", "model", name="fit_model"),
    ]
)
INFERENCE = Pipeline(
    [
        Node(transform, ["instances", "encoder"], "x", name="transform_inference"),
        Node(predict, ["x", "model", "params:threshold"], "predictions", name="pred"),
    ]
)


def make(**kwargs) -> PipelineML:
    args = {"training": TRAINING, "inference": INFERENCE, "input_name": "instances"}
    return pipeline_ml_factory(**{**args, **kwargs})


class TestFactory:
    def test_binding_exposes_its_parts(self) -> None:
        ml = make()
        assert isinstance(ml, Pipeline)
        assert ml.training.nodes == TRAINING.nodes
        assert ml.output_name == "predictions"
        assert ml.artifact_names == {"encoder", "model"}
        assert ml.parameter_names == {"params:threshold"}
        assert ml.log_model_kwargs == {"name": "model", "signature": "auto"}

    def test_input_name_must_be_an_inference_input(self) -> None:
        with pytest.raises(PipelineMLError, match=r"input_name 'data' is not an input"):
            make(input_name="data")

    def test_free_inference_inputs_are_named(self) -> None:
        inference = INFERENCE + Pipeline(
            [Node(predict, ["x", "stopwords", "params:t"], "other", name="o")]
        )
        with pytest.raises(PipelineMLError, match=r"needs \['stopwords'\]"):
            make(inference=inference)

    def test_exactly_one_output_or_a_named_one(self) -> None:
        inference = INFERENCE + Pipeline([Node(fit, "x", "debug_x", name="debug")])
        with pytest.raises(PipelineMLError, match=r"exactly one free output.*debug_x"):
            make(inference=inference)
        ml = make(inference=inference, kpm_kwargs={"output_name": "predictions"})
        assert ml.output_name == "predictions"
        with pytest.raises(PipelineMLError, match=r"output_name 'nope' is not"):
            make(inference=inference, kpm_kwargs={"output_name": "nope"})

    def test_kwargs_are_checked(self) -> None:
        with pytest.raises(PipelineMLError, match=r"Unknown kpm_kwargs \['runner'\]"):
            make(kpm_kwargs={"runner": "SequentialRunner"})
        with pytest.raises(PipelineMLError, match=r"copy_mode \['shallow'\]"):
            make(kpm_kwargs={"copy_mode": {"model": "shallow"}})
        with pytest.raises(PipelineMLError, match=r"\['python_model'\] are set by"):
            make(log_model_kwargs={"python_model": object()})
        with pytest.raises(PipelineMLError, match=r"Unknown log_model_kwargs"):
            make(log_model_kwargs={"flavour": "x"})
        with pytest.raises(PipelineMLError, match=r"alias needs registered_model"):
            make(log_model_kwargs={"registered_model_alias": "champion"})
        with pytest.raises(PipelineMLError, match=r"both 'artifact_path' and 'name'"):
            make(log_model_kwargs={"artifact_path": "a", "name": "b"})

    def test_artifact_path_becomes_name(self) -> None:
        assert (
            make(log_model_kwargs={"artifact_path": "m"}).log_model_kwargs["name"]
            == "m"
        )


class TestFindInRegistry:
    def test_by_name_inside_default_and_after_filters(self) -> None:
        ml = make()
        etl = Pipeline([Node(fit, "raw", "data", name="etl")])
        registry = {"training": ml, "etl": etl, "__default__": ml + etl}
        assert find_pipeline_ml(registry, ["training"], ml.filter(tags=None)) == [
            ("training", ml)
        ]
        assert find_pipeline_ml(registry, ["__default__"], registry["__default__"]) == [
            ("training", ml)
        ]
        filtered = (Pipeline([]) + ml).filter(node_names=["fit_model"])
        assert find_pipeline_ml(registry, ["training"], filtered) == [("training", ml)]
        assert find_pipeline_ml(registry, ["etl"], etl) == []
        assert find_pipeline_ml(registry, ["__default__"], etl) == []
