"""The sift, the shortlist, assessment totals and moderation, and selection within capacity and
budget, all through the real services with hand-chosen answers and scores."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from conftest import edit, example_text, london
from sqlmodel import Session, select

from cbflow.db import session_scope
from cbflow.errors import CbflowError
from cbflow.lifecycle import AppState, RoundState
from cbflow.models import Application, Assignment, AuditEvent, ModerationTask, User
from cbflow.services import applications, assessment, rounds, selection, sift
from cbflow.services.audit import transition
from cbflow.settings import Settings

EOI_DAY = london(2011, 10, 20, 9, 0)
EOI_CLOSE = london(2011, 11, 10, 12, 0)
BID_DAY = london(2011, 12, 1, 9, 0)
BID_CLOSE = london(2011, 12, 10, 0, 0)
ASSESS_DAY = london(2011, 12, 12, 9, 0)
DECIDE_DAY = london(2011, 12, 20, 9, 0)
STAFF = "staff:programme-team"
COUNCILS = ["BIR", "BOL", "BRD", "BUR", "CLD", "CAM", "DEV", "WSM"]

EXAMPLE_SIFT = (
    "    sift:                            "
    "# automatic checks when the window closes: pass, fail or refer\n"
    """      - id: enough-partners
        description: At least two partner organisations
        check: {question: partners, min_rows: 2}
        on_fail: refer               # fail | refer (to staff)
"""
)
EXTRA_EOI_QUESTIONS = (
    "            - {id: board_agreed, label: Partnership board agreement, type: yes_no}\n"
    "            - {id: population, label: Population served, type: number, min: 0}\n"
)
EXAMPLE_SHORTLIST = "shortlist: 6 "
EXAMPLE_GATEWAY = (
    "        minimum: 2                   # optional gateway: below this an application cannot be "
    "selected\n"
)


# -- rounds, applications and answers ----------------------------------------------------------


def sift_prospectus(rules: list[tuple[str, str, str]], shortlist: int = 6) -> str:
    """The example with two more EOI questions and the given sift rules: (id, check, on_fail)."""
    lines = "".join(
        f"      - {{id: {rule_id}, description: Rule {rule_id}, check: {check}, "
        f"on_fail: {on_fail}}}\n"
        for rule_id, check, on_fail in rules
    )
    return edit(
        example_text(),
        (
            EXAMPLE_SIFT,
            EXTRA_EOI_QUESTIONS + ("    sift:\n" + lines if rules else "    sift: []\n"),
        ),
        (EXAMPLE_SHORTLIST, f"shortlist: {shortlist} "),
    )


def launch(source: str) -> str:
    with session_scope() as session:
        round_, _ = rounds.launch_round(
            session, source=source, path="test.yaml", actor=STAFF, now=london(2011, 10, 17)
        )
        return round_.slug


def eoi_answers(
    council: str,
    *,
    partners: int = 2,
    ambition_words: int = 8,
    board_agreed: bool | None = None,
    population: int | None = None,
) -> dict[str, Any]:
    answers: dict[str, Any] = {
        "lead_council": council,
        "partners": [
            {"organisation": f"Partner {n}", "role": "Pooling budgets"} for n in range(partners)
        ],
        "ambition": " ".join(["ambition"] * ambition_words),
    }
    if board_agreed is not None:
        answers["board_agreed"] = board_agreed
    if population is not None:
        answers["population"] = population
    return answers


def submit_eoi(slug: str, answers: dict[str, Any], at: datetime) -> str:
    council = answers["lead_council"]
    with session_scope() as session:
        application, _ = applications.start_application(
            session,
            round_=rounds.get_round(session, slug),
            council_code=council,
            actor=f"council:{council}",
            now=at,
        )
        applications.submit(
            session,
            application=application,
            stage="eoi",
            answers=answers,
            actor=f"council:{council}",
            now=at,
        )
        return application.reference


def close_eoi(slug: str) -> dict[str, int]:
    with session_scope() as session:
        return dict(
            sift.close_eoi(
                session, round_=rounds.get_round(session, slug), actor=STAFF, now=EOI_CLOSE
            )
        )


def app(reference: str) -> Application:
    with session_scope() as session:
        return applications.get_application(session, reference)


def states(references: list[str]) -> list[str]:
    return [app(r).state for r in references]


def round_state(slug: str) -> str:
    with session_scope() as session:
        return rounds.get_round(session, slug).state


def transitions_of(reference: str) -> list[AuditEvent]:
    application = app(reference)
    with session_scope() as session:
        return list(
            session.exec(
                select(AuditEvent)
                .where(
                    AuditEvent.entity == "application",
                    AuditEvent.entity_id == application.id,
                    AuditEvent.action == "transition",
                )
                .order_by(AuditEvent.id)  # type: ignore[arg-type]
            )
        )


def confirm(slug: str, references: list[str]) -> tuple[list[str], list[str]]:
    with session_scope() as session:
        round_ = rounds.get_round(session, slug)
        chosen = [applications.get_application(session, r) for r in references]
        invited, regretted = sift.confirm_shortlist(
            session, round_=round_, chosen=chosen, actor=STAFF, now=EOI_CLOSE + timedelta(days=1)
        )
        return [a.reference for a in invited], [a.reference for a in regretted]


# -- the sift ----------------------------------------------------------------------------------

CHECK_KINDS = [
    # kind, check, answers that just meet it, answers that just miss it
    ("min_rows", "{question: partners, min_rows: 2}", {"partners": 2}, {"partners": 1}),
    ("max_rows", "{question: partners, max_rows: 3}", {"partners": 3}, {"partners": 4}),
    ("answered", "{question: population, answered: true}", {"population": 0}, {}),
    (
        "equals",
        "{question: board_agreed, equals: true}",
        {"board_agreed": True},
        {"board_agreed": False},
    ),
    ("min", "{question: population, min: 10000}", {"population": 10000}, {"population": 9999}),
    ("max", "{question: population, max: 500000}", {"population": 500000}, {"population": 500001}),
    (
        "min_words",
        "{question: ambition, min_words: 5}",
        {"ambition_words": 5},
        {"ambition_words": 4},
    ),
]


@pytest.mark.parametrize(
    ("check", "meets", "misses"),
    [pytest.param(check, meets, misses, id=kind) for kind, check, meets, misses in CHECK_KINDS],
)
def test_sift_check_kind_passes_boundary_and_fails_just_beyond(
    cbflow_env: Settings, check: str, meets: dict[str, Any], misses: dict[str, Any]
) -> None:
    slug = launch(sift_prospectus([("the-check", check, "fail")]))
    passing = submit_eoi(slug, eoi_answers("BIR", **meets), EOI_DAY)
    failing = submit_eoi(slug, eoi_answers("BOL", **misses), EOI_DAY)

    outcomes = close_eoi(slug)

    assert outcomes == {"sift_pass": 1, "sift_fail": 1}
    assert states([passing, failing]) == ["sift_pass", "sift_fail"]
    assert app(passing).sift_results == {"the-check": {"passed": True, "on_fail": "fail"}}
    assert app(failing).sift_results == {"the-check": {"passed": False, "on_fail": "fail"}}
    assert transitions_of(failing)[-1].reason == (
        "Your expression of interest did not pass the sift: it did not meet the check "
        "“Rule the-check”."
    )
    assert app(failing).decision_reason == transitions_of(failing)[-1].reason


def test_sift_outcome_follows_on_fail_of_failed_rules(cbflow_env: Settings) -> None:
    slug = launch(
        sift_prospectus(
            [
                ("enough-partners", "{question: partners, min_rows: 2}", "refer"),
                ("board-agreed", "{question: board_agreed, equals: true}", "fail"),
            ]
        )
    )
    meets_both = submit_eoi(slug, eoi_answers("BIR", board_agreed=True), EOI_DAY)
    misses_refer = submit_eoi(slug, eoi_answers("BOL", partners=1, board_agreed=True), EOI_DAY)
    misses_fail = submit_eoi(slug, eoi_answers("BRD", board_agreed=False), EOI_DAY)
    misses_both = submit_eoi(slug, eoi_answers("BUR", partners=1), EOI_DAY)
    with session_scope() as session:
        draft, _ = applications.start_application(
            session,
            round_=rounds.get_round(session, slug),
            council_code="CLD",
            actor="council:CLD",
            now=EOI_DAY,
        )
        draft_reference = draft.reference

    outcomes = close_eoi(slug)

    assert outcomes == {"sift_pass": 1, "sift_refer": 1, "sift_fail": 2}
    assert states([meets_both, misses_refer, misses_fail, misses_both, draft_reference]) == [
        "sift_pass",
        "sift_refer",
        "sift_fail",
        "sift_fail",
        "eoi_draft",  # never submitted: not sifted
    ]
    assert transitions_of(misses_both)[-1].reason == (
        "Your expression of interest did not pass the sift: it did not meet the checks "
        "“Rule enough-partners” and “Rule board-agreed”."
    )
    assert transitions_of(misses_refer)[-1].reason == (
        "Your expression of interest was referred to staff for a decision: it did not meet "
        "the check “Rule enough-partners”."
    )
    assert transitions_of(meets_both)[-1].reason == (
        "Your expression of interest passed every check of the sift."
    )
    assert round_state(slug) == RoundState.EOI_CLOSED


def referred_round() -> tuple[str, str, str]:
    """A round with one EOI that passed and one referred: (slug, passed, referred)."""
    slug = launch(example_text())
    passed = submit_eoi(slug, eoi_answers("BIR", partners=3), EOI_DAY)
    referred = submit_eoi(slug, eoi_answers("BOL", partners=1), EOI_DAY)
    close_eoi(slug)
    assert states([passed, referred]) == ["sift_pass", "sift_refer"]
    return slug, passed, referred


def review(reference: str, passed: bool, reason: str) -> None:
    with session_scope() as session:
        sift.review_referral(
            session,
            application=applications.get_application(session, reference),
            passed=passed,
            actor="staff:alice",
            now=EOI_CLOSE + timedelta(days=1),
            reason=reason,
        )


@pytest.mark.parametrize("reason", ["", "   "])
def test_review_referral_without_reason_is_refused(cbflow_env: Settings, reason: str) -> None:
    _, _, referred = referred_round()

    with pytest.raises(CbflowError, match="give the reason"):
        review(referred, True, reason)

    assert app(referred).state == AppState.SIFT_REFER
    assert transitions_of(referred)[-1].to_state == "sift_refer"


@pytest.mark.parametrize(("passed", "outcome"), [(True, "sift_pass"), (False, "sift_fail")])
def test_review_referral_records_decision_and_reason(
    cbflow_env: Settings, passed: bool, outcome: str
) -> None:
    _, _, referred = referred_round()

    review(referred, passed, "the council sent its partnership agreement")

    assert app(referred).state == outcome
    last = transitions_of(referred)[-1]
    assert (last.from_state, last.to_state, last.actor, last.reason) == (
        "sift_refer",
        outcome,
        "staff:alice",
        "the council sent its partnership agreement",
    )


def test_confirm_shortlist_while_referrals_open_is_refused(cbflow_env: Settings) -> None:
    slug, passed, referred = referred_round()

    with pytest.raises(CbflowError, match=f"review the referred EOIs.*{referred}"):
        confirm(slug, [passed])

    assert states([passed, referred]) == ["sift_pass", "sift_refer"]
    assert round_state(slug) == RoundState.EOI_CLOSED


def test_confirm_shortlist_after_review_invites(cbflow_env: Settings) -> None:
    slug, passed, referred = referred_round()
    review(referred, True, "partners confirmed by letter")

    invited, regretted = confirm(slug, [passed, referred])

    assert (sorted(invited), regretted) == (sorted([passed, referred]), [])
    assert states([passed, referred]) == ["invited", "invited"]
    assert round_state(slug) == RoundState.BIDS_INVITED


def test_confirm_shortlist_more_than_shortlist_is_refused(cbflow_env: Settings) -> None:
    slug = launch(sift_prospectus([], shortlist=2))
    passes = [submit_eoi(slug, eoi_answers(c), EOI_DAY) for c in COUNCILS[:3]]
    close_eoi(slug)

    with pytest.raises(CbflowError, match="the shortlist holds at most 2; 3 were chosen"):
        confirm(slug, passes)

    assert states(passes) == ["sift_pass"] * 3
    assert round_state(slug) == RoundState.EOI_CLOSED


def test_confirm_shortlist_with_failed_application_is_refused(cbflow_env: Settings) -> None:
    slug = launch(sift_prospectus([("board", "{question: board_agreed, equals: true}", "fail")]))
    passed = submit_eoi(slug, eoi_answers("BIR", board_agreed=True), EOI_DAY)
    failed = submit_eoi(slug, eoi_answers("BOL", board_agreed=False), EOI_DAY)
    close_eoi(slug)

    with pytest.raises(CbflowError, match=f"only EOIs that passed the sift.*{failed}"):
        confirm(slug, [passed, failed])

    assert states([passed, failed]) == ["sift_pass", "sift_fail"]
    assert round_state(slug) == RoundState.EOI_CLOSED


def test_confirm_shortlist_not_chosen_become_unsuccessful_with_reason(cbflow_env: Settings) -> None:
    slug = launch(sift_prospectus([], shortlist=2))
    first, second, third = (
        submit_eoi(slug, eoi_answers(c), EOI_DAY + timedelta(minutes=n))
        for n, c in enumerate(COUNCILS[:3])
    )
    close_eoi(slug)

    invited, regretted = confirm(slug, [first, third])

    assert (sorted(invited), regretted) == (sorted([first, third]), [second])
    assert states([first, second, third]) == ["invited", "unsuccessful", "invited"]
    regret = (
        "Your expression of interest passed the sift but was not among the two places shortlisted."
    )
    assert app(second).decision_reason == regret
    assert transitions_of(second)[-1].reason == regret
    assert app(second).decided_at is None  # the selection decides, not the shortlist
    assert round_state(slug) == RoundState.BIDS_INVITED


def test_propose_shortlist_takes_earliest_passes_up_to_size(cbflow_env: Settings) -> None:
    slug = launch(sift_prospectus([], shortlist=2))
    late = submit_eoi(slug, eoi_answers("BIR"), EOI_DAY + timedelta(hours=2))
    early = submit_eoi(slug, eoi_answers("WSM"), EOI_DAY)
    middle = submit_eoi(slug, eoi_answers("CAM"), EOI_DAY + timedelta(hours=1))
    close_eoi(slug)

    with session_scope() as session:
        proposed = sift.propose_shortlist(session, round_=rounds.get_round(session, slug))

    assert [a.reference for a in proposed] == [early, middle]
    assert late not in [a.reference for a in proposed]


def test_propose_shortlist_spreads_ties_over_regions_never_in_code_order(
    cbflow_env: Settings,
) -> None:
    # four North West councils come first in the alphabet; three councils elsewhere follow
    north_west = ["BBD", "BOL", "BPL", "BUR"]
    elsewhere = ["WSM", "YOR", "WIL"]
    slug = launch(sift_prospectus([], shortlist=4))
    for code in north_west + elsewhere:
        submit_eoi(slug, eoi_answers(code), EOI_DAY)  # all at the same moment
    close_eoi(slug)

    with session_scope() as session:
        proposed = sift.propose_shortlist(session, round_=rounds.get_round(session, slug))
    codes = [a.council_code for a in proposed]

    assert len(codes) == 4
    assert codes != north_west
    assert len(set(codes) & set(north_west)) == 1, "one place per region while others wait"


# -- assessment through the services -----------------------------------------------------------

Scores = dict[str, int | list[int]]  # criterion -> every assessor's score, or one per assessor


@dataclass
class Entry:
    council: str
    scores: Scores
    request: str = "1000000.00"
    bid_at: datetime | None = None  # default: BID_DAY plus a minute per place in the list
    moderated: dict[str, int] = field(default_factory=dict)


def scored(a: int, p: int, r: int) -> Scores:
    return {"ambition": a, "partnership": p, "replicability": r}


def assessed_round(
    entries: list[Entry],
    *,
    places: int = 4,
    budget: str = "4800000",
    gateway: bool = True,
    finalise: bool = True,
    extra: str = "",
    edits: tuple[tuple[str, str], ...] = (),
    panel: dict[str, list[str]] | None = None,
    scorer: Callable[[str, str], Scores] | None = None,
    regions: dict[str, str] | None = None,
    scoring: bool = True,
) -> tuple[str, dict[str, str]]:
    """A round taken through EOI, bid and assessment with these scores; returns (slug, council
    code -> reference). Every assessor gives the entry's score unless a list says otherwise.
    `extra` is added to the end of the prospectus (a `selection` section, say) and `edits`
    made in it. `panel` (assessor name -> the councils they assess) plants the assignments
    instead of assigning three assessors by load; `scorer` (assessor name, council) gives the
    scores instead of the entries. `regions` (assessor name -> region) gives the assessors
    assigned by load instead of three from nowhere in particular. Without `scoring` it stops
    once the assessors are assigned."""
    pairs = [
        ("places: 4 ", f"places: {places} "),
        ("budget_gbp: 4800000 ", f"budget_gbp: {budget} "),
        (EXAMPLE_SHORTLIST, f"shortlist: {len(entries)} "),
    ]
    if not gateway:
        pairs.append((EXAMPLE_GATEWAY, ""))
    slug = launch(edit(example_text(), *pairs, *edits) + extra)
    references = {
        e.council: submit_eoi(slug, eoi_answers(e.council), EOI_DAY + timedelta(minutes=n))
        for n, e in enumerate(entries)
    }
    assert close_eoi(slug) == {"sift_pass": len(entries)}
    confirm(slug, list(references.values()))
    for n, entry in enumerate(entries):
        with session_scope() as session:
            applications.submit(
                session,
                application=applications.get_application(session, references[entry.council]),
                stage="bid",
                answers={
                    "pooled_budget": [
                        {"organisation": "Police", "year": "2012-13", "amount_gbp": "50000.00"}
                    ],
                    "support_requested_gbp": entry.request,
                },
                actor=f"council:{entry.council}",
                now=entry.bid_at or BID_DAY + timedelta(minutes=n),
            )
    with session_scope() as session:
        round_ = rounds.get_round(session, slug)
        sift.close_bids(session, round_=round_, actor=STAFF, now=BID_CLOSE)
        names = list(panel or regions or {f"Assessor {n}": "" for n in range(1, 4)})
        assessors = [
            User(
                email=f"{name.lower().replace(' ', '.')}@assessors.example",
                name=name,
                role="assessor",
                region=(regions or {}).get(name),
            )
            for name in names
        ]
        session.add_all(assessors)
        session.flush()
        if panel is None:
            assessment.assign_assessors(
                session, round_=round_, assessors=assessors, actor=STAFF, now=ASSESS_DAY
            )
        else:
            plant_assignments(session, panel, assessors, references)
    if not scoring:
        return slug, references
    by_reference = {references[e.council]: e for e in entries}
    with session_scope() as session:
        round_ = rounds.get_round(session, slug)
        seen: dict[int, int] = {}
        for assignment in assessment.all_assignments(session, round_):
            application = session.get(Application, assignment.application_id)
            assert application is not None
            entry = by_reference[application.reference]
            which = seen[assignment.application_id] = seen.get(assignment.application_id, -1) + 1
            assessor = session.get(User, assignment.assessor_id)
            assert assessor is not None
            scores = scorer(assessor.name, entry.council) if scorer else entry.scores
            assessment.submit_scores(
                session,
                assignment=assignment,
                scores={
                    criterion: (given if isinstance(given, int) else given[which], "Justified.")
                    for criterion, given in scores.items()
                },
                actor=f"assessor:{assignment.assessor_id}",
                now=ASSESS_DAY,
            )
    if finalise:
        with session_scope() as session:
            round_ = rounds.get_round(session, slug)
            for task in assessment.open_moderation(
                session, round_=round_, actor=STAFF, now=ASSESS_DAY
            ):
                application = session.get(Application, task.application_id)
                assert application is not None
                assessment.moderate(
                    session,
                    task=task,
                    score=by_reference[application.reference].moderated[task.criterion_id],
                    reason="agreed by the moderation panel",
                    actor="staff:moderator",
                    now=ASSESS_DAY,
                )
            assessment.finalise(session, round_=round_, actor=STAFF, now=ASSESS_DAY)
    return slug, references


def plant_assignments(
    session: Session, panel: dict[str, list[str]], assessors: list[User], refs: dict[str, str]
) -> None:
    """Assign each assessor the councils the panel gives them, as staff re-assigning by hand
    would leave it, and move every application to under assessment."""
    by_name = {a.name: a for a in assessors}
    moved = set()
    for name, councils in panel.items():
        for council in councils:
            application = applications.get_application(session, refs[council])
            assert application.id is not None and by_name[name].id is not None
            session.add(Assignment(application_id=application.id, assessor_id=by_name[name].id))
            if application.id not in moved:
                moved.add(application.id)
                transition(
                    session, application, AppState.UNDER_ASSESSMENT, actor=STAFF, now=ASSESS_DAY
                )
    session.flush()


def decide(slug: str) -> dict[str, selection.Decision]:
    with session_scope() as session:
        decisions = selection.decide(
            session, round_=rounds.get_round(session, slug), actor=STAFF, now=DECIDE_DAY
        )
        return {d.application.council_code: d for d in decisions}


def outcome_of(reference: str) -> tuple[str, int | None, str | None]:
    application = app(reference)
    return application.state, application.reserve_position, application.decision_reason


def test_moderation_opens_only_where_spread_reaches_threshold(cbflow_env: Settings) -> None:
    entry = Entry(
        "BIR",
        {"ambition": [1, 2, 3], "partnership": [2, 3, 3], "replicability": [0, 4, 4]},
        moderated={"ambition": 3, "replicability": 4},
    )
    calm = Entry("BOL", {"ambition": [2, 3, 3], "partnership": [3, 3, 4], "replicability": 3})
    slug, refs = assessed_round([entry, calm], finalise=False)

    with session_scope() as session:
        opened = assessment.open_moderation(
            session, round_=rounds.get_round(session, slug), actor=STAFF, now=ASSESS_DAY
        )
        tasks = [(t.application_id, t.criterion_id, t.spread) for t in opened]

    bir = app(refs["BIR"]).id
    assert tasks == [(bir, "ambition", 2), (bir, "replicability", 4)]


def test_moderation_opened_twice_creates_no_second_task(cbflow_env: Settings) -> None:
    entry = Entry("BIR", {"ambition": [0, 2, 4], "partnership": 3, "replicability": 3})
    slug, _ = assessed_round([entry], finalise=False)

    for _ in range(2):
        with session_scope() as session:
            assessment.open_moderation(
                session, round_=rounds.get_round(session, slug), actor=STAFF, now=ASSESS_DAY
            )

    with session_scope() as session:
        assert len(session.exec(select(ModerationTask)).all()) == 1


def test_finalise_with_open_moderation_is_refused(cbflow_env: Settings) -> None:
    entry = Entry("BIR", {"ambition": [0, 2, 4], "partnership": 3, "replicability": 3})
    slug, refs = assessed_round([entry], finalise=False)

    with (
        pytest.raises(CbflowError, match="1 moderation tasks are still open"),
        session_scope() as session,
    ):
        assessment.finalise(
            session, round_=rounds.get_round(session, slug), actor=STAFF, now=ASSESS_DAY
        )

    assert app(refs["BIR"]).state == AppState.UNDER_ASSESSMENT
    assert round_state(slug) == RoundState.BIDS_CLOSED


def test_finalise_uses_moderated_score_and_keeps_originals(cbflow_env: Settings) -> None:
    entry = Entry(
        "BIR",
        {"ambition": [1, 2, 3], "partnership": [2, 3, 3], "replicability": [0, 4, 4]},
        moderated={"ambition": 3, "replicability": 4},
    )
    slug, refs = assessed_round([entry])

    with session_scope() as session:
        [result] = assessment.results(session, rounds.get_round(session, slug))

    by_criterion = {c.criterion_id: c for c in result.criteria}
    assert by_criterion["ambition"].scores == [1, 2, 3]
    assert by_criterion["ambition"].moderated == 3
    assert by_criterion["ambition"].final == Decimal("3.00")
    assert by_criterion["partnership"].moderated is None
    assert by_criterion["partnership"].final == Decimal("2.67")
    # 30 * 3/4 + 40 * (8/3)/4 + 30 * 4/4 = 22.5 + 26.67 + 30
    assert app(refs["BIR"]).total_score == "79.17"
    assert app(refs["BIR"]).state == AppState.MODERATED


# -- selection ---------------------------------------------------------------------------------


def test_decide_never_selects_more_than_places(cbflow_env: Settings) -> None:
    entries = [  # listed out of ranking order on purpose
        Entry("BIR", scored(3, 3, 3), request="100000.00"),  # 75
        Entry("BOL", scored(4, 4, 4), request="100000.00"),  # 100
        Entry("BRD", scored(2, 2, 2), request="100000.00"),  # 50
        Entry("BUR", scored(4, 4, 3), request="100000.00"),  # 92.5
        Entry("CLD", scored(4, 3, 3), request="100000.00"),  # 85
    ]
    slug, refs = assessed_round(entries, places=2)

    decisions = decide(slug)

    selected = [c for c, d in decisions.items() if d.outcome == AppState.SELECTED]
    assert sorted(selected) == ["BOL", "BUR"]
    full = "Both places went to the combination of bids with the highest total score."
    assert outcome_of(refs["CLD"]) == (
        "reserve",
        1,
        f"Your bid ranked 3rd of 5 with a score of 82.50%. It was not selected. {full} It is "
        "first on the reserve list: if a selected place withdraws, it will be offered the place.",
    )
    assert outcome_of(refs["BIR"]) == (
        "reserve",
        2,
        f"Your bid ranked 4th of 5 with a score of 75.00%. It was not selected. {full} It is "
        "second on the reserve list: if selected places withdraw, their places are offered to "
        "the reserve list in order.",
    )
    assert outcome_of(refs["BRD"]) == (
        "unsuccessful",
        None,
        f"Your bid ranked 5th of 5 with a score of 50.00%. It was not selected. {full} The "
        "reserve list holds two bids and is full.",
    )
    assert outcome_of(refs["BOL"]) == (
        "selected",
        None,
        "Your bid ranked 1st of 5 with a score of 100.00%. It has been selected.",
    )
    assert round_state(slug) == RoundState.DECIDED
    assert all(app(r).decided_at == DECIDE_DAY for r in refs.values())


def test_decide_reserves_no_more_than_places(cbflow_env: Settings) -> None:
    entries = [
        Entry("WSM", scored(2, 3, 2), request="100000.00"),  # 60: reserve 3
        Entry("BIR", scored(4, 4, 4), request="100000.00"),  # 100: selected
        Entry("CAM", scored(3, 3, 3), request="100000.00"),  # 75: reserve 1
        Entry("DEV", scored(3, 3, 2), request="100000.00"),  # 67.5: reserve 2
    ]
    slug, refs = assessed_round(entries, places=1)

    decide(slug)

    # one place: at most one reserve
    assert [outcome_of(refs[c])[:2] for c in ("BIR", "CAM", "DEV", "WSM")] == [
        ("selected", None),
        ("reserve", 1),
        ("unsuccessful", None),
        ("unsuccessful", None),
    ]


def test_decide_reserve_positions_in_rank_order(cbflow_env: Settings) -> None:
    entries = [
        Entry("WSM", scored(2, 3, 2), request="100000.00"),  # 60
        Entry("BIR", scored(4, 4, 4), request="100000.00"),  # 100
        Entry("CAM", scored(3, 3, 3), request="100000.00"),  # 75
        Entry("DEV", scored(3, 3, 2), request="100000.00"),  # 67.5
        Entry("BUR", scored(4, 4, 3), request="100000.00"),  # 92.5
    ]
    slug, refs = assessed_round(entries, places=2)

    decide(slug)

    reserves = sorted(
        (app(r).reserve_position, c) for c, r in refs.items() if app(r).state == "reserve"
    )
    assert reserves == [(1, "CAM"), (2, "DEV")]
    assert app(refs["WSM"]).state == AppState.UNSUCCESSFUL


def test_decide_budget_skips_dear_request_for_cheaper_lower_ranked(cbflow_env: Settings) -> None:
    entries = [
        Entry("BIR", scored(4, 4, 4), request="1500000.00"),  # rank 1
        Entry("BOL", scored(4, 4, 3), request="1500000.00"),  # rank 2
        Entry("BRD", scored(4, 3, 3), request="1500000.00"),  # rank 3: 300,000 left after it
        Entry("BUR", scored(3, 3, 3), request="1000000.00"),  # rank 4: does not fit
        Entry("CLD", scored(3, 3, 2), request="300000.00"),  # rank 5: fits exactly
        Entry("CAM", scored(2, 3, 2), request="1.00"),  # rank 6: places are full
    ]
    slug, refs = assessed_round(entries, places=4, budget="4800000")

    decisions = decide(slug)

    selected = sorted(c for c, d in decisions.items() if d.outcome == AppState.SELECTED)
    assert selected == ["BIR", "BOL", "BRD", "CLD"]
    awarded = sum(app(refs[c]).support_requested_pence or 0 for c in selected)
    assert awarded == 480_000_000  # exactly the budget, in pence
    state, position, reason = outcome_of(refs["BUR"])
    assert (state, position) == ("reserve", 1)
    assert reason == (
        "Your bid ranked 4th of 6 with a score of 75.00%. It was not selected. All four places "
        "went to the combination of bids with the highest total score. Its request of "
        "£1,000,000.00 is more than the £0.00 left in the budget. It is first on the reserve "
        "list: if a selected place withdraws, it will be offered the place."
    )
    assert outcome_of(refs["CAM"])[:2] == ("reserve", 2)
    with session_scope() as session:
        total = selection.total_awarded(session, rounds.get_round(session, slug))
    assert total == Decimal("4800000.00")


def test_plan_budget_never_exceeded(cbflow_env: Settings) -> None:
    entries = [
        Entry(council, scored(4, 4, 4 - n % 3), request="1400000.00")
        for n, council in enumerate(COUNCILS[:6])
    ]
    slug, _ = assessed_round(entries, places=6, budget="4000000")

    with session_scope() as session:
        planned = selection.plan(session, rounds.get_round(session, slug))

    chosen = [d.application for d in planned if d.outcome == AppState.SELECTED]
    assert len(chosen) == 2  # a third 1.4m would make 4.2m
    assert sum(a.support_requested_pence or 0 for a in chosen) <= 400_000_000


def test_decide_gateway_below_minimum_unsuccessful_despite_top_total(cbflow_env: Settings) -> None:
    entries = [
        Entry("BIR", scored(4, 1, 4)),  # 70: the top total, but partnership 1 < minimum 2
        Entry("BOL", scored(3, 2, 3)),  # 65
        Entry("BRD", scored(2, 2, 2)),  # 50
    ]
    slug, refs = assessed_round(entries, places=1)

    decide(slug)

    assert app(refs["BIR"]).rank == 1
    assert outcome_of(refs["BIR"]) == (
        "unsuccessful",
        None,
        "Your bid ranked 1st of 3 with a score of 70.00%. It scored below the minimum for "
        "“Partnership working”, so it could not be selected.",
    )
    assert outcome_of(refs["BOL"])[0] == "selected"
    assert outcome_of(refs["BRD"])[:2] == ("reserve", 1)


def withdraw(reference: str) -> None:
    with session_scope() as session:
        applications.withdraw(
            session,
            application=applications.get_application(session, reference),
            actor="council:test",
            now=ASSESS_DAY + timedelta(hours=1),
            reason="the partnership has broken up",
        )


def test_finalise_leaves_out_application_withdrawn_under_assessment(cbflow_env: Settings) -> None:
    slug, refs = assessed_round(
        [Entry("BIR", scored(2, 2, 2)), Entry("BOL", scored(4, 4, 4))], finalise=False
    )
    withdraw(refs["BOL"])

    with session_scope() as session:
        ranked = assessment.finalise(
            session, round_=rounds.get_round(session, slug), actor=STAFF, now=ASSESS_DAY
        )

    assert [r.application.council_code for r in ranked] == ["BIR"]
    assert (app(refs["BIR"]).state, app(refs["BIR"]).rank) == ("moderated", 1)
    assert (app(refs["BOL"]).state, app(refs["BOL"]).rank) == ("withdrawn", None)
    assert round_state(slug) == RoundState.ASSESSED


def test_finalise_needs_no_moderation_of_withdrawn_application(cbflow_env: Settings) -> None:
    split = Entry("BOL", {"ambition": [0, 2, 4], "partnership": 3, "replicability": 3})
    slug, refs = assessed_round([Entry("BIR", scored(2, 2, 2)), split], finalise=False)
    withdraw(refs["BOL"])

    with session_scope() as session:
        round_ = rounds.get_round(session, slug)
        still_open = assessment.open_moderation(session, round_=round_, actor=STAFF, now=ASSESS_DAY)
        ranked = assessment.finalise(session, round_=round_, actor=STAFF, now=ASSESS_DAY)

    assert still_open == []
    assert [r.application.council_code for r in ranked] == ["BIR"]
    assert round_state(slug) == RoundState.ASSESSED


def test_decide_leaves_out_application_withdrawn_after_assessment(cbflow_env: Settings) -> None:
    slug, refs = assessed_round(
        [Entry("BIR", scored(4, 4, 4)), Entry("BOL", scored(3, 3, 3))], places=1
    )
    withdraw(refs["BIR"])

    decisions = decide(slug)

    assert {c: d.outcome.value for c, d in decisions.items()} == {"BOL": "selected"}
    assert states([refs["BIR"], refs["BOL"]]) == ["withdrawn", "selected"]
    assert app(refs["BIR"]).decided_at is None


# ties: every level of assessment.ranking_key, each with the later levels pointing the other way
TIES = [
    pytest.param(
        # equal totals (55): the higher partnership score (the heaviest criterion) wins, though
        # the other asks for less, submitted earlier and comes first alphabetically
        Entry("WSM", scored(1, 4, 1), request="1000000.00", bid_at=BID_DAY + timedelta(hours=1)),
        Entry("BIR", scored(3, 1, 3), request="900000.00", bid_at=BID_DAY),
        id="heaviest-criterion",
    ),
    pytest.param(
        Entry("WSM", scored(3, 3, 3), request="900000.00", bid_at=BID_DAY + timedelta(hours=1)),
        Entry("BIR", scored(3, 3, 3), request="900000.01", bid_at=BID_DAY),
        id="smaller-request",
    ),
    pytest.param(
        Entry("WSM", scored(3, 3, 3), bid_at=BID_DAY),
        Entry("BIR", scored(3, 3, 3), bid_at=BID_DAY + timedelta(seconds=1)),
        id="earlier-submission",
    ),
    pytest.param(
        Entry("BIR", scored(3, 3, 3), bid_at=BID_DAY),
        Entry("WSM", scored(3, 3, 3), bid_at=BID_DAY),
        id="council-code",
    ),
]


@pytest.mark.parametrize(("winner", "loser"), TIES)
def test_ranking_tie_broken_by_documented_rule(
    cbflow_env: Settings, winner: Entry, loser: Entry
) -> None:
    slug, refs = assessed_round([loser, winner], places=1, gateway=False)

    decisions = decide(slug)

    assert app(refs[winner.council]).total_score == app(refs[loser.council]).total_score
    assert (app(refs[winner.council]).rank, app(refs[loser.council]).rank) == (1, 2)
    assert decisions[winner.council].outcome == AppState.SELECTED
    assert decisions[loser.council].outcome == AppState.RESERVE


def test_decide_twice_changes_nothing(cbflow_env: Settings) -> None:
    slug, refs = assessed_round([Entry("BIR", scored(3, 3, 3)), Entry("BOL", scored(2, 2, 2))])
    decide(slug)
    before = [outcome_of(r) for r in refs.values()]

    again = decide(slug)

    assert [outcome_of(r) for r in refs.values()] == before
    assert {c: d.outcome for c, d in again.items()} == {
        "BIR": AppState.SELECTED,
        "BOL": AppState.SELECTED,
    }


# -- an opt-in round: no bid, no assessment ----------------------------------------------------

OPT_IN = """\
format: 1
id: opt-in-roll-out
title: Opt-in roll-out
issued_by: Department for Communities and Local Government
timezone: Europe/London
capacity:
  places: 3
timetable:
  eoi: {opens: 2012-04-01, closes: 2012-05-31}
  decision: {by: 2012-06-15}
stages:
  eoi:
    form:
      sections:
        - id: council
          title: Your council
          questions:
            - {id: lead_council, label: Council, type: council, required: true}
            - {id: opt_in, label: Will your council take part, type: yes_no, required: true}
    sift:
      - id: opted-in
        description: The council takes part
        check: {question: opt_in, equals: true}
        on_fail: fail
"""
OPT_IN_CLOSE = london(2012, 6, 1)


def opt_in_round(
    source: str, submissions: list[tuple[str, bool, datetime]]
) -> tuple[str, dict[str, str]]:
    slug = launch(source)
    references = {}
    for council, opts_in, at in submissions:
        references[council] = submit_eoi(slug, {"lead_council": council, "opt_in": opts_in}, at)
    with session_scope() as session:
        sift.close_eoi(
            session, round_=rounds.get_round(session, slug), actor=STAFF, now=OPT_IN_CLOSE
        )
    return slug, references


def test_opt_in_round_selects_sift_passes_in_submission_order(cbflow_env: Settings) -> None:
    day = london(2012, 4, 2, 9, 0)
    slug, refs = opt_in_round(
        OPT_IN,
        [
            ("WSM", True, day + timedelta(days=3)),
            ("BIR", True, day + timedelta(days=5)),
            ("CAM", True, day),
            ("DEV", False, day - timedelta(days=1)),  # opts out: fails the sift
            ("BOL", True, day + timedelta(days=1)),
            ("BRD", True, day + timedelta(days=4)),
        ],
    )

    decisions = decide(slug)

    assert {c: d.outcome.value for c, d in decisions.items()} == {
        "CAM": "selected",
        "BOL": "selected",
        "WSM": "selected",
        "BRD": "reserve",
        "BIR": "reserve",
    }
    assert [outcome_of(refs[c])[1] for c in ("BRD", "BIR")] == [1, 2]
    assert app(refs["DEV"]).state == AppState.SIFT_FAIL
    assert round_state(slug) == RoundState.DECIDED


def test_opt_in_round_without_places_selects_every_pass(cbflow_env: Settings) -> None:
    day = london(2012, 4, 2, 9, 0)
    source = edit(OPT_IN, ("capacity:\n  places: 3\n", ""))
    slug, refs = opt_in_round(
        source, [(c, True, day + timedelta(hours=n)) for n, c in enumerate(COUNCILS[:5])]
    )

    decide(slug)

    assert states(list(refs.values())) == ["selected"] * 5


def test_opt_in_round_decide_refused_while_referrals_open(cbflow_env: Settings) -> None:
    day = london(2012, 4, 2, 9, 0)
    source = edit(OPT_IN, ("on_fail: fail", "on_fail: refer"))
    slug, refs = opt_in_round(source, [("BIR", True, day), ("BOL", False, day)])

    with pytest.raises(CbflowError, match="review the referred EOIs"):
        decide(slug)

    assert states([refs["BIR"], refs["BOL"]]) == ["sift_pass", "sift_refer"]
    assert round_state(slug) == RoundState.EOI_CLOSED
