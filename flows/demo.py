"""The demo round as one parent flow: every stage event is a subflow the Prefect UI shows."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from cbflow import demo
from flows import stages


@flow(name="demo-round", flow_run_name="demo · {prospectus}")
async def demo_round(
    prospectus: str, seed: int = 2011, councils: int | None = None, assessors: int = 6
) -> dict[str, Any]:
    logger = get_run_logger()
    summary = await demo.run(
        Path(prospectus),
        stages=stages,
        seed=seed,
        council_count=councils,
        assessors=assessors,
        log=logger.info,
    )
    return asdict(summary)
