"""States of a round and of an application, and the only moves between them. Pure: no I/O.

Every state change in cbflow goes through `services.audit.transition`, which consults these
tables; nothing sets a state directly. An administrator's override is not a bypass: it is one of
the listed moves (for example a referred EOI passed or failed by staff), recorded with its reason.
"""

from enum import StrEnum


class RoundState(StrEnum):
    LAUNCHED = "launched"  # EOI window open (or about to open)
    EOI_CLOSED = "eoi_closed"  # sifted; shortlist awaits staff confirmation
    BIDS_INVITED = "bids_invited"
    BIDS_CLOSED = "bids_closed"
    ASSESSED = "assessed"  # scores final, moderation done, ranking known
    DECIDED = "decided"  # decisions made and letters issued
    IMPLEMENTING = "implementing"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class AppState(StrEnum):
    EOI_DRAFT = "eoi_draft"
    EOI_SIGN_OFF = "eoi_awaiting_sign_off"  # sent to the council's certifier to approve
    EOI_SUBMITTED = "eoi_submitted"
    SIFT_PASS = "sift_pass"
    SIFT_REFER = "sift_refer"
    SIFT_FAIL = "sift_fail"
    INVITED = "invited"
    BID_DRAFT = "bid_draft"
    BID_SIGN_OFF = "bid_awaiting_sign_off"
    BID_SUBMITTED = "bid_submitted"
    UNDER_ASSESSMENT = "under_assessment"
    MODERATED = "moderated"  # assessment complete: scores final, disagreements moderated
    SELECTED = "selected"
    RESERVE = "reserve"
    UNSUCCESSFUL = "unsuccessful"
    IMPLEMENTING = "implementing"
    COMPLETED = "completed"
    PUBLISHED = "published"  # published as a model others can adopt
    WITHDRAWN = "withdrawn"
    # the rolling adoption route (services.adoption_route): a light form, approved by staff
    ADOPTION_DRAFT = "adoption_draft"
    ADOPTION_SUBMITTED = "adoption_submitted"


R, A = RoundState, AppState

# an application selected for funding, wherever it has got to since
FUNDED = frozenset(
    {AppState.SELECTED, AppState.IMPLEMENTING, AppState.COMPLETED, AppState.PUBLISHED}
)

ROUND_TRANSITIONS: dict[RoundState, frozenset[RoundState]] = {
    R.LAUNCHED: frozenset({R.EOI_CLOSED, R.CANCELLED}),
    # a round without a bid stage goes from the sift straight to assessment or decision
    R.EOI_CLOSED: frozenset({R.BIDS_INVITED, R.ASSESSED, R.DECIDED, R.CANCELLED}),
    R.BIDS_INVITED: frozenset({R.BIDS_CLOSED, R.CANCELLED}),
    R.BIDS_CLOSED: frozenset({R.ASSESSED, R.DECIDED, R.CANCELLED}),
    R.ASSESSED: frozenset({R.DECIDED, R.CANCELLED}),
    R.DECIDED: frozenset({R.IMPLEMENTING, R.COMPLETED}),
    R.IMPLEMENTING: frozenset({R.COMPLETED}),
    R.COMPLETED: frozenset(),
    R.CANCELLED: frozenset(),
}

_ACTIVE_BEFORE_DECISION = {
    A.EOI_DRAFT,
    A.EOI_SIGN_OFF,
    A.BID_SIGN_OFF,
    A.EOI_SUBMITTED,
    A.SIFT_PASS,
    A.SIFT_REFER,
    A.INVITED,
    A.BID_DRAFT,
    A.BID_SUBMITTED,
    A.UNDER_ASSESSMENT,
    A.MODERATED,
    A.RESERVE,
    A.SELECTED,
    A.IMPLEMENTING,
    A.ADOPTION_DRAFT,
    A.ADOPTION_SUBMITTED,
}
_DECIDE = {A.SELECTED, A.RESERVE, A.UNSUCCESSFUL}

APP_TRANSITIONS: dict[AppState, frozenset[AppState]] = {
    # where the prospectus asks for sign-off, a draft waits for the certifier, who approves it
    # (submitting it) or returns it with a reason (reopening it)
    A.EOI_DRAFT: frozenset({A.EOI_SUBMITTED, A.EOI_SIGN_OFF}),
    A.EOI_SIGN_OFF: frozenset({A.EOI_SUBMITTED, A.EOI_DRAFT}),
    # reopened by the council before the deadline, where the prospectus allows (see
    # services.reopening): a draft again, which counts only if submitted again in time
    A.EOI_SUBMITTED: frozenset({A.SIFT_PASS, A.SIFT_REFER, A.SIFT_FAIL, A.EOI_DRAFT}),
    A.SIFT_REFER: frozenset({A.SIFT_PASS, A.SIFT_FAIL}),  # staff review
    # shortlisted (bid stage), assessed on the EOI (no bid stage), or decided (opt-in round)
    A.SIFT_PASS: frozenset({A.INVITED, A.UNDER_ASSESSMENT} | _DECIDE),
    A.SIFT_FAIL: frozenset(),
    A.INVITED: frozenset({A.BID_DRAFT, A.UNSUCCESSFUL}),  # unsuccessful: no bid by the deadline
    A.BID_DRAFT: frozenset({A.BID_SUBMITTED, A.BID_SIGN_OFF, A.UNSUCCESSFUL}),
    # still waiting at the deadline: not submitted, so unsuccessful like a draft
    A.BID_SIGN_OFF: frozenset({A.BID_SUBMITTED, A.BID_DRAFT, A.UNSUCCESSFUL}),
    A.BID_SUBMITTED: frozenset({A.UNDER_ASSESSMENT, A.BID_DRAFT} | _DECIDE),
    A.UNDER_ASSESSMENT: frozenset({A.MODERATED}),
    A.MODERATED: frozenset(_DECIDE),
    A.RESERVE: frozenset({A.SELECTED, A.UNSUCCESSFUL}),  # a selected place dropped out, or not
    A.SELECTED: frozenset({A.IMPLEMENTING}),
    A.UNSUCCESSFUL: frozenset(),
    A.IMPLEMENTING: frozenset({A.COMPLETED}),
    A.COMPLETED: frozenset({A.PUBLISHED}),
    A.PUBLISHED: frozenset(),
    A.WITHDRAWN: frozenset(),
    # an adoption through the rolling route: submitted, then approved by staff (its
    # implementation starts) or returned to the council with a reason (a draft again)
    A.ADOPTION_DRAFT: frozenset({A.ADOPTION_SUBMITTED}),
    A.ADOPTION_SUBMITTED: frozenset({A.IMPLEMENTING, A.ADOPTION_DRAFT}),
}
# an applicant may withdraw at any point until the work is complete
APP_TRANSITIONS = {
    state: targets | ({A.WITHDRAWN} if state in _ACTIVE_BEFORE_DECISION else frozenset())
    for state, targets in APP_TRANSITIONS.items()
}


def round_move_allowed(current: RoundState, target: RoundState) -> bool:
    return target in ROUND_TRANSITIONS[current]


def app_move_allowed(current: AppState, target: AppState) -> bool:
    return target in APP_TRANSITIONS[current]
