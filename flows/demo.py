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


def _stage_of(line: str) -> str:
    """'2011-11-10 12:00 GMT  close EOI and sift  passed: 20' -> the date and the stage."""
    parts = [part.strip() for part in line.split("  ") if part.strip()]
    return " · ".join(parts[:2]) if len(parts) >= 2 else line[:60]


@flow(name="demo-round", flow_run_name=_demo_run_name)
async def demo_round(
    prospectus: str,
    seed: int = 2011,
    councils: int | None = None,
    assessors: int = 6,
    progress_bar: bool = False,
) -> dict[str, Any]:
    """The demo, with each stage printed and a progress bar on the terminal (over the round's
    simulated timetable) when run from the command line."""
    logger = get_run_logger()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        disable=not progress_bar,
        transient=True,
    ) as bar:
        task = bar.add_task("simulating the round: launch", total=1.0)

        def log(line: str) -> None:
            """Each stage to the run's log, and the latest on the progress bar."""
            logger.info(line)
            if progress_bar:  # above the bar on a terminal, one line each in a log file
                bar.console.print(f"  {line}", highlight=False, markup=False, soft_wrap=True)
            bar.update(task, description=f"simulating the round: {_stage_of(line)}")

        summary = await demo.run(
            Path(prospectus),
            stages=stages,
            seed=seed,
            council_count=councils,
            assessors=assessors,
            log=log,
            progress=lambda done: bar.update(task, completed=done),
        )
    return asdict(summary)
