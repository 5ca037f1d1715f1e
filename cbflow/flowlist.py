"""Every Prefect flow of cbflow, named once: its name, what staff read it as, and what starts it.

`flows.stages` gives each flow its name from here, `flows.deployments` registers the deadline
flows and the portal's from here, `cbflow.stages` schedules a round's dates by these names and
the staff pages title runs and buttons with them. No other module spells a flow's name.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

PORTAL = "portal"  # the deployment name of the flows staff (and the portal) start
DEADLINE = "deadline"  # the deployment name of the flows a round's dates trigger
SCHEDULE = "schedule"  # the deployment name of the programme's recurring flows


class Trigger(StrEnum):
    DEADLINE = "deadline"  # a date in the round's prospectus: a scheduled run
    STAFF = "staff"  # a staff member's action in the portal
    PORTAL = "portal"  # the portal itself, on applicants' actions (receipts for submissions)
    DIRECT = "direct"  # called in process (the demo's adoptions): not deployed
    # a recurring run over the whole programme, not one round's date: its deployment's schedule
    # is the setting FlowSpec.schedule_setting names (a cron line, or "every N seconds")
    SCHEDULE = "schedule"


@dataclass(frozen=True)
class FlowSpec:
    name: str  # the flow's name in Prefect
    title: str  # what staff read on buttons, runs and error pages
    trigger: Trigger
    schedule_setting: str = ""  # Trigger.SCHEDULE: the cbflow.settings.Settings field

    @property
    def deployment(self) -> str | None:
        """The name of the deployment that runs this flow, None for a flow run in process."""
        if self.trigger is Trigger.DEADLINE:
            return DEADLINE
        if self.trigger is Trigger.SCHEDULE:
            return SCHEDULE
        if self.trigger is Trigger.DIRECT:
            return None
        return PORTAL


LAUNCH_ROUND = FlowSpec("launch-round", "Launch the round", Trigger.STAFF)
ISSUE_RECEIPTS = FlowSpec("issue-receipts", "Issue receipts", Trigger.PORTAL)
CLOSE_EOI = FlowSpec("close-eoi", "Close expressions of interest and sift", Trigger.DEADLINE)
INVITE_TO_BID = FlowSpec(
    "invite-to-bid", "Confirm the shortlist and issue invitations", Trigger.STAFF
)
CLOSE_BIDS = FlowSpec("close-bids", "Close bids", Trigger.DEADLINE)
ASSIGN_ASSESSORS = FlowSpec("assign-assessors", "Assign assessors", Trigger.STAFF)
OPEN_MODERATION = FlowSpec("open-moderation", "Open moderation", Trigger.STAFF)
FINALISE_ASSESSMENT = FlowSpec(
    "finalise-assessment", "Finalise the assessment and rank", Trigger.STAFF
)
DECIDE = FlowSpec("decide", "Select places and issue decision letters", Trigger.DEADLINE)
START_IMPLEMENTATION = FlowSpec("start-implementation", "Start implementation", Trigger.STAFF)
RETURNS_CYCLE = FlowSpec(
    "returns-cycle", "Returns cycle: chase overdue returns, progress reports", Trigger.DEADLINE
)
COMPLETE_ROUND = FlowSpec("complete-round", "Complete the round", Trigger.DEADLINE)
SEND_REMINDERS = FlowSpec("send-reminders", "Send reminders before a deadline", Trigger.DEADLINE)
PUBLISH_MODEL = FlowSpec("publish-model", "Publish a replication model", Trigger.STAFF)
ADOPT_MODEL = FlowSpec("adopt-model", "Adopt a replication model", Trigger.DIRECT)
AMEND_PROSPECTUS = FlowSpec(
    "amend-prospectus", "Publish an amendment to the prospectus", Trigger.STAFF
)
CLARIFICATIONS_DUE = FlowSpec(
    "clarifications-due",
    "Clarification requests: remind, and lapse those past their date",
    Trigger.DEADLINE,
)
BOARD_PACK = FlowSpec(
    "board-pack",
    "Produce the programme board's pack",
    Trigger.SCHEDULE,
    schedule_setting="board_pack_schedule",
)
SEND_DIGESTS = FlowSpec(
    "send-digests",
    "Send followers their digest",
    Trigger.SCHEDULE,
    schedule_setting="digest_schedule",
)

FLOWS: dict[str, FlowSpec] = {
    spec.name: spec
    for spec in (
        LAUNCH_ROUND,
        ISSUE_RECEIPTS,
        CLOSE_EOI,
        INVITE_TO_BID,
        CLOSE_BIDS,
        ASSIGN_ASSESSORS,
        OPEN_MODERATION,
        FINALISE_ASSESSMENT,
        DECIDE,
        START_IMPLEMENTATION,
        RETURNS_CYCLE,
        COMPLETE_ROUND,
        SEND_REMINDERS,
        PUBLISH_MODEL,
        ADOPT_MODEL,
        AMEND_PROSPECTUS,
        CLARIFICATIONS_DUE,
        BOARD_PACK,
        SEND_DIGESTS,
    )
}

# the flows a round's dates trigger, in the order a round meets them
DEADLINE_FLOWS = tuple(spec for spec in FLOWS.values() if spec.trigger is Trigger.DEADLINE)


def title(name: str) -> str:
    """What staff read for the flow called `name` (its name, for one cbflow does not know)."""
    spec = FLOWS.get(name)
    return spec.title if spec is not None else name
