"""How a run's trace reaches the tracking store: in one batch, when the run ends.

By default MLflow sends finished spans as they end, a request per few spans (newest
MLflow: 5 spans, or whatever ended in the last 5 s), so a run's requests would grow
with its node count. For the run, MLflow's tracer is set up anew with MLflow's own
documented settings (:data:`ONE_BATCH`): it holds the finished spans and sends them
together when the run ends, one request for the spans and one for the trace (MLflow
3.0 sends a whole trace at its end anyway: the trace, its spans as an artifact, its
tags). The run's end waits until they are sent (:func:`send`), so a failed or
interrupted run loses none of them, then gives the process back a tracer as the user
set it up (:func:`end_tracer`).
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator

logger = logging.getLogger(__name__)

#: How long the run's end waits for MLflow to send its trace (then MLflow's own exit
#: handler goes on trying).
SEND_TIMEOUT = 60.0
#: MLflow's documented trace-export settings (``mlflow.environment_variables``) for the
#: tracer of a run: export off the nodes' threads, the finished spans held in one batch
#: until the run's end sends it (not one request per 5 spans, nor one every 5 s), and
#: sent by one thread, so that the spans are stored before the trace is created (sent
#: at once, the trace could miss them and MLflow would upload them again as an
#: artifact).
ONE_BATCH = {
    "MLFLOW_ENABLE_ASYNC_TRACE_LOGGING": "true",
    "MLFLOW_ASYNC_TRACE_LOGGING_MAX_WORKERS": "1",
    "MLFLOW_USE_BATCH_SPAN_PROCESSOR": "true",
    "MLFLOW_ASYNC_TRACE_LOGGING_MAX_SPAN_BATCH_SIZE": "100000",
    "MLFLOW_ASYNC_TRACE_LOGGING_MAX_INTERVAL_MILLIS": str(24 * 3600 * 1000),
}


@contextmanager
def one_batch_tracer() -> Iterator[None]:
    """MLflow's tracer made anew with :data:`ONE_BATCH` by the span started in the block.

    MLflow reads these settings when its tracer is first used after a reset (as
    ``mlflow.set_tracking_uri`` does when the URI changes), so the user's own values
    are back in the environment once the run's root span has made the tracer.
    """
    saved = {name: os.environ.get(name) for name in ONE_BATCH}
    os.environ.update(ONE_BATCH)
    try:
        end_tracer()
        yield
        _export_in_caller()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def end_tracer() -> None:
    """The next span makes MLflow's tracer anew (from the environment as it is then)."""
    import mlflow

    reset: Any = mlflow.tracing.reset  # untyped in MLflow
    reset()


def _export_in_caller() -> None:
    """The run's tracer sends its batch in the thread that flushes it (the run's end).

    Uses an MLflow internal (the exporter's async flag), in this function only. MLflow
    batches spans only with its async export on, which adds a second queue with its own
    threads: the run's end would wait for them, and stopping them (as any new tracer,
    or ``mlflow.set_tracking_uri``, does) waits up to a second for their idle loop,
    which every run would pay. The batch already leaves the nodes' threads alone, so
    the queue buys nothing here. Without that flag (another MLflow), the queue stays
    and :func:`send` waits for it.
    """
    try:
        from mlflow.tracing import provider

        exporter = provider._get_trace_exporter()  # type: ignore[no-untyped-call]
        if exporter is not None and hasattr(exporter, "_is_async_enabled"):
            exporter._is_async_enabled = False
    except Exception:
        logger.debug("kedroflow: MLflow sends the trace from its queue", exc_info=True)


def send(timeout: float = SEND_TIMEOUT) -> None:
    """Make MLflow send the spans it holds now, and wait until it has sent them.

    Uses MLflow internals (the current span processor and its exporter's queue), in
    this function only: the public ``mlflow.flush_trace_async_logging`` stops and
    restarts MLflow's export threads, and each restart waits up to a second for an idle
    queue to notice, which every run's end would pay. Where those internals differ, it
    falls back to that public flush.
    """
    try:
        from mlflow.tracing import provider

        find = getattr(provider, "_get_span_processor", None)  # not in MLflow 3.0
        processor = find() if find is not None else None
        if processor is not None:
            processor.force_flush()  # a batch processor hands its spans over here
        exporter = provider._get_trace_exporter()  # type: ignore[no-untyped-call]
        queue = getattr(getattr(exporter, "_async_queue", None), "_queue", None)
        if queue is None:
            return  # no tracer yet, or a synchronous export: nothing waits
        with queue.all_tasks_done:  # queue.Queue's own condition, as Queue.join uses
            queue.all_tasks_done.wait_for(lambda: not queue.unfinished_tasks, timeout)
    except Exception:
        import mlflow

        logger.debug("kedroflow: MLflow's own flush sends the trace", exc_info=True)
        mlflow.flush_trace_async_logging()
