"""Benchmark: a national round, all 353 councils through the whole lifecycle.

Runs `bench/national-round.yaml` (the whole-place prospectus at national scale: every council
sends an EOI, 40 are shortlisted, 12 selected, a year of quarterly returns, replication) through
the stage events with simulated councils and assessors, rendering every document with cbflow's
pool of rendering processes. The stage events run as the Prefect flows administrators watch
(each stage's steps as task runs, reporting to a temporary Prefect server started before the
clock starts), or with --without-prefect as the domain alone. Then, in the same process, renders
the very same documents with a plain serial WeasyPrint loop. Prints both times and, as the last
line, their ratio: lifecycle time / serial rendering time. Target: at most 0.6 on a 2-core
machine, and Prefect's bookkeeping within 0.05 of the domain alone.

    python bench/national_round.py [--workers N] [--without-prefect]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PROSPECTUS = ROOT / "bench" / "national-round.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--workers", type=int, default=0, help="rendering processes (0: one per core)"
    )
    parser.add_argument(
        "--without-prefect",
        action="store_true",
        help="run the stage events as the domain alone, not as Prefect flows",
    )
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="cbflow-bench-"))
    os.environ["CBFLOW_DATA_DIR"] = str(workdir / "data")
    os.environ["CBFLOW_DATABASE_URL"] = ""
    os.environ["CBFLOW_RENDER_WORKERS"] = str(args.workers)
    # the temporary Prefect server: quiet, and reaching no outside host
    os.environ |= {
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }

    from cbflow import demo, render, stages

    if args.without_prefect:
        events: Any = stages
        harness: Any = contextlib.nullcontext()
    else:
        from prefect.testing.utilities import prefect_test_harness

        from flows import stages as events

        harness = prefect_test_harness(server_startup_timeout=180)

    # record every job the lifecycle renders, to render the same documents serially afterwards
    rendered: list[render.RenderJob] = []
    pooled = stages.render_many

    def recording(jobs: Any, **kwargs: Any) -> list[Path]:
        rendered.extend(jobs)
        return pooled(jobs, **kwargs)

    stages.render_many = recording  # type: ignore[assignment]

    print(
        f"cores: {os.cpu_count()}, rendering workers: {args.workers or os.cpu_count()}, "
        f"stages: {'the domain alone' if args.without_prefect else 'Prefect flows'}, "
        f"data: {workdir}"
    )
    with harness:  # the temporary Prefect server starts before the clock does
        started = time.perf_counter()
        summary = asyncio.run(
            demo.run(PROSPECTUS, stages=events, council_count=353, log=lambda _: None)
        )
        lifecycle = time.perf_counter() - started
    states = ", ".join(f"{k} {v}" for k, v in sorted(summary.states.items()))
    print(f"lifecycle: {sum(summary.states.values())} applications ({states})")
    print(f"lifecycle: {len(rendered)} documents, {summary.documents.get('by_kind')}")
    print(f"lifecycle (353 councils, all stages, parallel rendering): {lifecycle:.2f} s")

    serial_dir = workdir / "serial"
    jobs = [
        render.RenderJob(j.template, j.context, serial_dir / j.out_path.relative_to(workdir))
        for j in rendered
    ]
    # the lifecycle left a large heap in this process; freeze it so that the baseline loop's
    # garbage collections do not scan it (the rendering workers have small heaps of their own)
    gc.collect()
    gc.freeze()
    started = time.perf_counter()
    render.render_serial(jobs)
    serial = time.perf_counter() - started
    print(f"serial WeasyPrint loop, same {len(jobs)} documents: {serial:.2f} s")
    ratio = lifecycle / serial
    print(f"ratio lifecycle/serial: {ratio:.3f} (target <= 0.6)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
