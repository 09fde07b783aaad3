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
    try:
        Worker(app, loglevel=settings.log_level, loop=asyncio.get_event_loop()).execute_from_commandline()
    finally:
        limiter.restore_original_limits()
