"""Starting the worker process: one scoring thread, the event loop, the data directory, Faust's Worker."""

from __future__ import annotations

import asyncio

from streams.settings import Settings


def pin_scoring_threads(threads: int):
    """Limit the OpenMP/BLAS pools scikit-learn scores with to `threads`; returns the limiter.

    threadpoolctl can only limit libraries that are loaded, so scikit-learn's compiled modules
    (and with them OpenMP) are imported first: a limit set before that limits nothing.
    """
    import sklearn.ensemble  # noqa: F401 - loads the OpenMP runtime the boosted model predicts with
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=threads)


def openmp_threads() -> int | None:
    """The thread count the OpenMP runtime scoring uses would start with now (None: not loaded)."""
    from threadpoolctl import threadpool_info

    counts = [pool["num_threads"] for pool in threadpool_info() if pool.get("user_api") == "openmp"]
    return max(counts) if counts else None


def loop_kind(loop: asyncio.AbstractEventLoop) -> str:
    return f"{type(loop).__module__}.{type(loop).__qualname__}"


def use_event_loop(kind: str) -> None:
    if kind == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.set_event_loop(asyncio.new_event_loop())


def run_worker(settings: Settings) -> None:
    """Build the app from the settings and run it until stopped (SIGTERM/SIGINT)."""
    from faust.worker import Worker

    from streams.app import create_app

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    limiter = pin_scoring_threads(settings.scoring_threads)
    use_event_loop(settings.event_loop)
    app = create_app(settings)
    _report_runtime(app, asyncio.get_event_loop())
    try:
        Worker(app, loglevel=settings.log_level, loop=asyncio.get_event_loop()).execute_from_commandline()
    finally:
        limiter.restore_original_limits()


def _report_runtime(app, loop: asyncio.AbstractEventLoop) -> None:
    """What the worker effectively runs with, on /metrics (benchmarks write it beside their figures)."""
    from prometheus_client import Info

    info = Info("reconnect_worker_runtime", "The event loop and scoring threads the worker runs with.",
                registry=app.reconnect_parts.runtime.metrics.registry)
    info.info({"event_loop": loop_kind(loop), "openmp_threads": str(openmp_threads())})
