"""Benchmark: replication in minutes. In a real browser (Chromium, through Playwright), a council
officer adopts a published model through the rolling adoption route, from the model's page to a
submitted adoption; then another council's officer builds an application from scratch in the
same browser (the round's expression of interest, then its bid). It is the journey of
tests/test_browser_adoption_route.py, run against a fresh database in a temporary folder.

For each path it prints the fields typed (a choice counts as one), the characters typed, the
seconds the browser took, and the typing time estimated for a person at 200 characters a
minute (40 words a minute) and five seconds to find each field. Target: the adoption's estimated
typing under ten minutes, and below the path from scratch.

    python bench/adoption.py
"""

from __future__ import annotations

import os
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="cbflow-adoption-bench-"))
    os.environ["CBFLOW_DATA_DIR"] = str(workdir / "data")
    os.environ["CBFLOW_DATABASE_URL"] = ""
    os.environ["CBFLOW_RENDER_WORKERS"] = "1"
    sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # this checkout; the journey and its round

    from playwright.sync_api import sync_playwright

    from cbflow.clock import FixedClock
    from cbflow.db import migrate, session_scope
    from cbflow.services.councils import load_register
    from cbflow.settings import get_settings

    get_settings.cache_clear()
    migrate()
    with session_scope() as session:
        load_register(session)

    import test_browser as harness
    import test_browser_adoption_route as journey
    from conftest import london
    from portal import serving
    from round_walk import PUBLISH_DAY, SECOND_WAVE, to_publication
    from test_browser_applicant import add_applicant, sign_in

    from cbflow import stages

    model_id = to_publication(journey.ROUTE)
    stages.launch(SECOND_WAVE, "whole-place-2013.yaml", now=london(2013, 3, 18, 9, 0))
    add_applicant("officer@devon.gov.uk", "DEV", "Sam Ward")
    add_applicant("pat@essex.gov.uk", "ESS", "Pat Jones")
    clock = FixedClock(PUBLISH_DAY + timedelta(hours=1))
    with serving(get_settings(), clock) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(harness.CHROMIUM), args=harness.CHROMIUM_ARGS
        )
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.add_init_script(path=str(harness.AXE))
        page = context.new_page()
        sign_in(page, url, "officer@devon.gov.uk")
        adoption = journey.adopt_through_the_route(page, url, model_id)
        sign_in(page, url, "pat@essex.gov.uk")
        scratch = journey.apply_from_scratch(page, url, clock)
        browser.close()
    print(adoption.line("Adopting through the rolling route"))
    print(scratch.line("Applying from scratch (expression of interest and bid)"))
    ratio = scratch.estimated_minutes / adoption.estimated_minutes
    print(f"Applying from scratch takes {ratio:.1f} times the typing of adopting")
    met = (
        adoption.estimated_minutes < journey.TARGET_MINUTES
        and adoption.estimated_minutes < scratch.estimated_minutes
    )
    print(
        f"Target (under {journey.TARGET_MINUTES} minutes, below from scratch): "
        f"{'met' if met else 'NOT met'}"
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
