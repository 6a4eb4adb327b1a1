"""``MlflowPromptDataset``: a prompt of MLflow's Prompt Registry, by version or alias."""

from __future__ import annotations

import logging
from typing import Any, Literal

from mlflow.exceptions import MlflowException

from kedroflow.errors import MlflowDatasetError
from kedroflow.io._base import MlflowBaseDataset, mapping_arg

logger = logging.getLogger(__name__)

_OUTPUTS = ("prompt", "template")


class MlflowPromptDataset(MlflowBaseDataset[Any, Any]):
    """Load a prompt from MLflow's Prompt Registry; save registers a new version.

    ``load`` returns the prompt object (``load_args.output: prompt``, the default) or
    its template (``output: template``), formatted when ``load_args.variables`` is
    given. ``save`` takes a template text (or, with an MLflow that has chat prompts, a
    list of ``{"role", "content"}`` messages) and registers it as a new version, with
    ``save_args.commit_message``, ``tags`` and ``alias`` (the alias then points at it).
    The registry is the current run's (mlflow.yml's) or MLflow's outside a run. In a
    ``kedro run`` the loaded version is linked to the run, as ``mlflow.genai.load_prompt``
    links it to MLflow's active run.

    Example catalog entry:

    .. code-block:: yaml

        summary_prompt:
          type: kedroflow.MlflowPromptDataset
          name: summarize
          alias: production          # or version: 3; neither: the latest version
          load_args: {output: template, variables: {tone: friendly}}
          save_args: {commit_message: tuned by the eval pipeline, alias: candidate}

    Example (a prompt saved, then loaded by its alias):

    >>> import mlflow
    >>> mlflow.set_tracking_uri(tracking_uri)
    >>> from kedroflow.io import MlflowPromptDataset
    >>> MlflowPromptDataset(name="greet", save_args={"alias": "prod"}).save(
    ...     "Say hello to {{name}}, {{tone}}."
    ... )
    >>> greet = MlflowPromptDataset(
    ...     name="greet",
    ...     alias="prod",
    ...     load_args={
    ...         "output": "template",
    ...         "variables": {"name": "Ada", "tone": "warmly"},
    ...     },
    ... )
    >>> greet.load()
    'Say hello to Ada, warmly.'
    """

    def __init__(
        self,
        *,
        name: str,
        version: int | None = None,
        alias: str | None = None,
        load_args: dict[str, Any] | None = None,
        save_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        owner = f"MlflowPromptDataset '{name}'"
        if version is not None and alias is not None:
            raise MlflowDatasetError(
                f"{owner}: give `version` or `alias`, not both (alias {alias!r} "
                f"already names one version)."
            )
        self._name = name
        self._version = version
        self._alias = alias
        self._load_args = mapping_arg(load_args, "load_args", owner)
        self._save_args = mapping_arg(save_args, "save_args", owner)
        output = self._load_args.get("output", "prompt")
        if output not in _OUTPUTS:
            raise MlflowDatasetError(
                f"{owner}: load_args.output is {output!r}; use 'prompt' (the prompt "
                "object) or 'template' (its text, formatted with load_args.variables)."
            )
        self._output: Literal["prompt", "template"] = output
        self.metadata = metadata

    def load(self) -> Any:
        client = self._client()
        try:
            version = self._resolved_version(client)
            prompt = client.load_prompt(self._name, version=version)
        except MlflowException as exc:
            raise MlflowDatasetError(
                f"Dataset {self._label()} cannot load prompt '{self._name}' "
                f"({self._selector()}): {exc.message}"
            ) from None
        self._link_to_run(client, prompt)
        if self._output == "prompt" and "variables" not in self._load_args:
            return prompt
        variables = self._load_args.get("variables")
        return prompt.format(**variables) if variables else prompt.template

    def save(self, data: Any) -> None:
        client = self._client()
        args = self._save_args
        try:
            prompt = client.register_prompt(
                name=self._name,
                template=data,
                commit_message=args.get("commit_message"),
                tags=args.get("tags"),
            )
            if args.get("alias"):
                client.set_prompt_alias(self._name, args["alias"], int(prompt.version))
        except MlflowException as exc:
            raise MlflowDatasetError(
                f"Dataset {self._label()} cannot register a version of prompt "
                f"'{self._name}': {exc.message}"
            ) from None

    def _resolved_version(self, client: Any) -> int | None:
        """The version to load: given, behind the alias, or None for the latest."""
        if self._alias is None:
            return self._version
        by_alias = getattr(client, "get_prompt_version_by_alias", None)
        if by_alias is None:
            # MLflow 3.0 has no prompt-alias lookup, and its public registry API
            # hides prompts: its registry client (private) still finds the version
            by_alias = client._get_registry_client().get_model_version_by_alias
        return int(by_alias(self._name, self._alias).version)

    def _link_to_run(self, client: Any, prompt: Any) -> None:
        """Link the loaded version to the current run: MLflow's client ``load_prompt``
        does not (only the fluent one does, for MLflow's active run)."""
        run_id = self._current_run_id()
        if run_id is None:
            return
        # MLflow 3.0 records the run on the prompt version (log_prompt); later
        # versions record the version in the run's `mlflow.linkedPrompts` tag
        link = getattr(client, "link_prompt_version_to_run", None) or client.log_prompt
        try:
            link(run_id, prompt)
        except MlflowException as exc:  # the prompt is loaded: the link is an aid
            logger.warning(
                "kedroflow: %s: prompt '%s' version %s is not linked to run %s: %s",
                self._label(),
                self._name,
                prompt.version,
                run_id,
                exc.message,
            )

    def _selector(self) -> str:
        if self._alias is not None:
            return f"alias {self._alias!r}"
        return f"version {self._version}" if self._version else "latest version"

    def _exists(self) -> bool:
        try:
            return (
                self._client().load_prompt(self._name, allow_missing=True) is not None
            )
        except MlflowException:
            return False

    def _describe(self) -> dict[str, Any]:
        return {"name": self._name, "version": self._version, "alias": self._alias}
