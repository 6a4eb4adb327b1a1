"""``MlflowHook``: one MLflow run per ``kedro run``, auto-registered by the plugin.

The hook stays thin: it reads ``mlflow.yml`` when the context is created (no call to
MLflow), then opens the run, logs parameters and tags before the first node, and
closes the run with the right status. MLflow itself is imported only when a tracked
pipeline starts, so ``kedro viz``, ``kedro jupyter`` and untracked runs never pay for it.
Opt out with ``DISABLE_HOOKS_FOR_PLUGINS = ("kedroflow",)`` in ``settings.py``.
"""

from __future__ import annotations

import atexit
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kedro.framework.hooks import hook_impl

from kedroflow import provenance
from kedroflow.config import (
    AUTO_LOG_ENV,
    TRACKING_OFF_ENV,
    WORKER_RUN_ENV,
    KedroflowConfig,
    load_config,
    normalize_run_params,
    tracking_disabled_by_env,
)
from kedroflow.fluent import SessionEnv, configure_session
from kedroflow.logs import follow_kedro_logging, quiet_config_reads
from kedroflow.provenance import pipeline_names
from kedroflow.run_names import register_resolvers
from kedroflow.secrets import project_credentials

if TYPE_CHECKING:
    from collections.abc import Generator

    from kedro.framework.context import KedroContext
    from kedro.io import CatalogProtocol
    from kedro.pipeline import Node, Pipeline

    from kedroflow.io.auto_log import AutoLog
    from kedroflow.observer import RunObserver
    from kedroflow.tracking import CurrentRun

logger = logging.getLogger(__name__)


class MlflowHook:
    """Tracks each ``kedro run`` in MLflow as configured by ``conf/<env>/mlflow.yml``."""

    def __init__(self) -> None:
        self._config: KedroflowConfig | None = None
        self._context: KedroContext | None = None
        self._tracked: set[str] = set()  # Kedro run ids with an open MLflow run
        # what nodes see of the run (kedroflow.observer); what the context exported
        self._observer: RunObserver | None = None
        self._session_env = SessionEnv()
        # outputs the auto_log rules select (None: not planned in this process)
        self._auto_log: AutoLog | None = None
        self._exit_pid: int | None = None  # the process whose exit unbinds the run

    @hook_impl
    def after_context_created(self, context: KedroContext) -> None:
        from kedro.framework.project import LOGGING

        follow_kedro_logging(LOGGING)
        register_resolvers()
        with quiet_config_reads():
            self._config = load_config(context.config_loader, _package_name())
            # a missing credentials entry is reported clearly when the run starts
            wanted = self._config.server.credentials
            credentials = project_credentials(context) if wanted else {}
        self._context = context
        self._session_env = configure_session(
            self._config, Path(context.project_path), credentials, self._session_env
        )

    @hook_impl(wrapper=True)
    def before_pipeline_run(
        self, run_params: dict[str, Any], pipeline: Pipeline, catalog: CatalogProtocol
    ) -> Generator[None, Any, Any]:
        """Open the run before the other plugins' and the project's hooks: they run
        inside it, and one that fails ends it FAILED with its error, as a node would."""
        key = self._open_run(run_params, pipeline, catalog)
        try:
            return (yield)
        except BaseException as error:
            if key is not None and self._owns({"run_id": key}):
                self._end_run("FAILED", error)
            raise

    def _open_run(
        self, run_params: dict[str, Any], pipeline: Pipeline, catalog: CatalogProtocol
    ) -> str | None:
        """Open the MLflow run of this ``kedro run``; its Kedro run id, or None."""
        config, context = self._config, self._context
        if config is None or context is None:
            return None  # a runner used outside a KedroSession: nothing to track
        run_params = normalize_run_params(run_params)
        names = pipeline_names(run_params)
        if tracking_disabled_by_env() or config.is_pipeline_disabled(names):
            # decided before importing MLflow: an untracked run never loads it
            logger.info(
                "kedroflow: tracking is off for pipeline(s) %s", "+".join(names)
            )
            os.environ[TRACKING_OFF_ENV] = "1"
            return None
        with quiet_config_reads():  # before MLflow's import: see project_credentials
            credentials, project_params = project_credentials(context), context.params
        from kedroflow import io, observer, tracking
        from kedroflow.training import check_training_models

        check_training_models(names, run_params, pipeline, catalog)
        run, tags, diff = self._start_run(
            config, context, run_params, pipeline,
            credentials=credentials, params=project_params,
        )  # fmt: skip
        self._tracked.add(str(run_params.get("run_id")))
        if self._exit_pid is None:
            # runs before MLflow's own exit handler (registered at its import), which
            # would end the kedro run FINISHED over the KILLED of an interrupted run
            atexit.register(self._unbind_at_exit)
            self._exit_pid = os.getpid()
        try:
            params = provenance.consumed_params(pipeline, catalog, run_params)
            run = tracking.log_params(run, params, config.tracking.params)
            if diff:
                tracking.log_text(run, diff, "git/uncommitted.diff")
            io.bind_catalog_names(catalog, pipeline.datasets())
            scope = observer.RunScope.of_run(names, tags, pipeline, catalog)
            self._observer = observer.RunObserver.start(config, run, scope)
            self._plan_auto_log(config, pipeline, catalog)
        except BaseException as error:
            self._end_run("FAILED", error)
            raise
        logger.info(
            "kedroflow: MLflow run %s (experiment '%s') at %s",
            run.run_id,
            config.tracking.experiment.name,
            run.stores.display_uri,
        )
        return str(run_params.get("run_id"))

    def _start_run(
        self,
        config: KedroflowConfig,
        context: KedroContext,
        run_params: dict[str, Any],
        pipeline: Pipeline,
        *,
        credentials: dict[str, Any],
        params: dict[str, Any],
    ) -> tuple[CurrentRun, dict[str, Any], str | None]:
        """Open the run with its provenance tags (``params``: the project's, whose
        redacted values are the run's secrets); the run, those tags, the git diff."""
        from kedroflow import shared_runs, tracking
        from kedroflow.secrets import redacted_values

        project_path, names = Path(context.project_path), pipeline_names(run_params)
        git_tags, diff = provenance.git_info(project_path)
        tags = provenance.run_tags(
            config, run_params, env=context.env, project_path=project_path
        )
        try:
            run = tracking.start_run(
                config,
                project_path=project_path,
                run_name=config.tracking.run.name or "+".join(names),
                tags={**git_tags, **tags},
                credentials=credentials,
                context=context,
                secrets=redacted_values(params, config.tracking.params.redact),
                part=shared_runs.part_id(node.name for node in pipeline.nodes),
            )
        except BaseException:
            self._session_env.forget_credentials()  # a failed start leaves none behind
            raise
        return run, tags, diff

    @hook_impl
    def after_pipeline_run(
        self, run_params: dict[str, Any], pipeline: Pipeline, catalog: CatalogProtocol
    ) -> None:
        config = self._config
        if not self._owns(run_params) or config is None:
            os.environ.pop(TRACKING_OFF_ENV, None)
            return
        from kedroflow.training import log_run_outputs

        try:
            log_run_outputs(normalize_run_params(run_params), pipeline, catalog, config)
        except BaseException as error:
            self._end_run("FAILED", error)
            raise
        self._end_run("FINISHED")

    @hook_impl
    def on_pipeline_error(
        self, error: Exception, run_params: dict[str, Any], pipeline: Pipeline
    ) -> None:
        if not self._owns(run_params):
            os.environ.pop(TRACKING_OFF_ENV, None)
            return
        try:
            self._end_run("FAILED", error)
        except Exception as closing:
            # raising here would replace the node's error and stop the project's own
            # on_pipeline_error hooks: the tracking failure is only logged
            from kedroflow.secrets import mask_credentials

            logger.error(
                "kedroflow: the failed run could not be closed: %s",
                mask_credentials(str(closing)),
            )

    # ---- nodes and datasets: what they see of the run (kedroflow.observer)

    @hook_impl
    def before_node_run(self, node: Node, inputs: dict[str, Any]) -> None:
        if (observer := self._node_observer()) is not None:
            observer.before_node(node, inputs)

    @hook_impl
    def after_node_run(self, node: Node) -> None:
        if (observer := self._node_observer()) is not None:
            observer.after_node(node)
        if self._tracked:  # metrics that waited too long go now; is the server lost?
            from kedroflow import tracking

            tracking.node_done()

    @hook_impl
    def on_node_error(self, error: Exception, node: Node) -> None:
        if (observer := self._node_observer()) is not None:
            observer.after_node(node, error)

    @hook_impl
    def before_dataset_loaded(self, dataset_name: str, node: Node) -> None:
        self._dataset_event("load", dataset_name, node, done=False)

    @hook_impl
    def after_dataset_loaded(self, dataset_name: str, node: Node) -> None:
        self._dataset_event("load", dataset_name, node, done=True)

    @hook_impl
    def before_dataset_saved(self, dataset_name: str, node: Node) -> None:
        self._dataset_event("save", dataset_name, node, done=False)

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any, node: Node) -> None:
        self._dataset_event("save", dataset_name, node, done=True)
        self._log_output(dataset_name, data)

    def _dataset_event(
        self, action: str, dataset_name: str, node: Node, *, done: bool
    ) -> None:
        """A load or save starting (or done), for the run's observer (its spans)."""
        if (observer := self._node_observer()) is not None:
            observer.dataset(action, dataset_name, node, done=done)

    # ---- outputs the auto_log rules select (kedroflow.io.auto_log)

    def _log_output(self, dataset_name: str, data: Any) -> None:
        auto_log = self._auto_log
        if auto_log is None and self._config is None and os.environ.get(AUTO_LOG_ENV):
            from kedroflow.io.auto_log import AutoLog  # a spawned ParallelRunner worker

            auto_log = self._auto_log = AutoLog.from_env()
        if auto_log and dataset_name in auto_log.selected:
            from kedroflow import tracking

            run = tracking.current_run()
            if run is not None:
                auto_log.saved(dataset_name, data, run)

    def _plan_auto_log(
        self, config: KedroflowConfig, pipeline: Pipeline, catalog: CatalogProtocol
    ) -> None:
        from kedroflow.io import auto_log

        rules = config.tracking.artifacts.auto_log
        self._auto_log = auto_log.plan(rules, pipeline, catalog)
        if self._auto_log:
            os.environ[AUTO_LOG_ENV] = self._auto_log.to_env()

    def _node_observer(self) -> RunObserver | None:
        """The run's observer; in a ParallelRunner worker, the worker's own."""
        observer = self._observer
        if observer is not None:
            if observer.pid != os.getpid():  # a forked worker: its own counterpart
                observer = self._observer = observer.for_this_process()
        elif self._config is None and os.environ.get(WORKER_RUN_ENV):
            if not os.environ.get(TRACKING_OFF_ENV):  # a spawned worker
                from kedroflow.observer import from_env

                observer = self._observer = from_env()
        return observer

    def _end_run(self, status: str, error: BaseException | None = None) -> None:
        from kedroflow import tracking

        observer, self._observer = self._observer, None
        self._auto_log = None
        os.environ.pop(AUTO_LOG_ENV, None)
        try:
            if observer is not None:
                _finish(observer, error)
        finally:
            tracking.end_run(status, error)
            self._session_env.forget_credentials()

    def _unbind_at_exit(self) -> None:
        """At exit after Ctrl-C or SIGTERM: the run leaves MLflow's active-run stack.

        kedroflow's exit handler (``tracking``) then closes it KILLED, and MLflow's,
        finding no active run, cannot end it FINISHED, nor a shared run under the
        processes still working on it.
        """
        observer, self._observer = self._observer, None
        if observer is not None and self._exit_pid == os.getpid():
            try:
                observer.finish()
            except Exception:  # noqa: S110 - never fail at interpreter exit
                pass

    def _owns(self, run_params: dict[str, Any]) -> bool:
        key = str(normalize_run_params(run_params)["run_id"])
        if key in self._tracked:
            self._tracked.discard(key)
            return True
        return False


def _finish(observer: RunObserver, error: BaseException | None) -> None:
    """Close the observer; what a lost server refuses is kept offline instead."""
    from kedroflow import tracking

    try:
        observer.finish(error)
    except Exception as closing:
        if tracking.fail_over() is None:
            raise
        logger.warning(
            "kedroflow: child runs or the trace of the run stay as the lost server "
            "had them: %s",
            closing,  # scrubbed by the run's log scrubber
        )


def _package_name() -> str | None:
    from kedro.framework.project import PACKAGE_NAME

    return PACKAGE_NAME


mlflow_hook = MlflowHook()
