"""The demo round as one parent flow: every stage event is a subflow the Prefect UI shows."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from cbflow import demo
from flows import stages


def _demo_run_name() -> str:
    from prefect.runtime import flow_run

    return f"demo · {Path(flow_run.parameters['prospectus']).stem}"


@flow(name="demo-round", flow_run_name=_demo_run_name)
async def demo_round(
    prospectus: str,
    seed: int = 2011,
    councils: int | None = None,
    assessors: int = 6,
    progress_bar: bool = False,
) -> dict[str, Any]:
    """The demo, with a progress bar on the terminal (over the round's simulated timetable)
    when run from the command line."""
    logger = get_run_logger()
    with Progress(
        TextColumn("simulating the round"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        disable=not progress_bar,
        transient=True,
    ) as bar:
        task = bar.add_task("round", total=1.0)
        summary = await demo.run(
            Path(prospectus),
            stages=stages,
            seed=seed,
            council_count=councils,
            assessors=assessors,
            log=logger.info,
            progress=lambda done: bar.update(task, completed=done),
        )
    return asdict(summary)
