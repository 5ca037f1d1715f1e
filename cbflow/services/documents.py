"""Which documents each stage issues, their contexts (plain data) and their records.

A document is identified by its key; a key is issued once. A stage asks for its pending
documents (those whose key has no record yet), renders them, then records them: a run that
crashed between rendering and recording renders the same files again and records each once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from markupsafe import Markup
from sqlmodel import Session, col, select

from cbflow import store
from cbflow.charts import assessor_charts, bar_chart, frontier_chart, line_chart
from cbflow.formatting import (
    date_filter,
    local_deadline,
    local_time,
    long_date,
    long_deadline,
    long_moment,
    money,
    pounds,
)
from cbflow.forms import display_answer, is_shown
from cbflow.models import (
    Application,
    Assignment,
    Council,
    Document,
    ModerationTask,
    PublishedModel,
    ReturnRecord,
    Round,
    Score,
    User,
)
from cbflow.prospectus import Form, Prospectus, Question, TableQuestion
from cbflow.render import RenderJob
from cbflow.services import deadlines, offers, reopening
from cbflow.services.applications import Stage, all_answers, form_of
from cbflow.services.assessment import ApplicationResult, assessor_profiles, moderation_tasks
from cbflow.services.contributions import PooledView, pooled_view
from cbflow.services.implementation import milestones_of, returns_of
from cbflow.services.partnerships import Place, on_behalf_of, place_label, place_of
from cbflow.services.rounds import prospectus_of
from cbflow.services.selection import frontier
from cbflow.settings import get_settings
from cbflow.wording import body_in_prose, council_in_prose, plural

DOCUMENT_TITLES = {
    "prospectus": "Prospectus",
    "eoi_receipt": "Expression of interest: receipt",
    "invitation": "Invitation to submit a full bid",
    "regret": "Outcome of your expression of interest",
    "bid_receipt": "Full bid: receipt",
    "assessment_summary": "Assessment summary",
    "moderation_pack": "Moderation pack",
    "decision": "Decision on your application",
    "grant_offer": "Grant offer",
    "chaser": "Reminder: return overdue",
    "progress_report": "Implementation progress report",
    "replication_pack": "Replication pack",
}


@dataclass(frozen=True)
class Pending:
    key: str
    kind: str
    title: str
    round_id: int
    application_id: int | None
    job: RenderJob
    prospectus_version: int = 1  # the round's prospectus version in force when it was issued


@dataclass(frozen=True)
class Amendment:
    """A version of a round's prospectus after the first, as its document prints it."""

    version: int
    published_at: datetime
    changes: Sequence[str]


def _doc(prospectus: Prospectus, kind: str, reference: str, now: datetime) -> dict[str, Any]:
    return {
        "title": DOCUMENT_TITLES[kind],
        "reference": reference,
        "issued_by": prospectus.issued_by,
        "round_title": prospectus.title,
        "round_id": prospectus.id,
        # the day of issue, as a letter is dated: the hour a stage ran tells the reader nothing
        "generated_at": long_date(now, prospectus.zone),
        "lang": "en-GB",
    }


def _council(council: Council) -> dict[str, str]:
    return {
        "code": council.code,
        "name": council.name,
        "official_name": council.official_name,
        "type_name": council.type_name,
        "region": council.region,
    }


def letter_of(
    prospectus: Prospectus, council: Council, on_behalf: str | None = None
) -> dict[str, Any]:
    """Who a letter is to and from: the council's chief executive, by role, at the council's
    official name (the lead's, for a partnership, with the place it writes for); signed by the
    prospectus's contact, or in the issuing body's name."""
    contact = prospectus.contact
    body = prospectus.issued_by
    return {
        "addressee": ["The Chief Executive", council.official_name],
        "on_behalf": on_behalf,
        "council_in_prose": council_in_prose(council.official_name),
        "salutation": "Dear Chief Executive",
        "issuer": body,
        "issuer_in_prose": body_in_prose(body),
        "issuer_to_start": body_in_prose(body, start=True),
        "signatory": {"name": contact.name, "role": contact.role} if contact else None,
        "contact": contact.model_dump() if contact else None,
        "portal": get_settings().resolved_portal_base_url,
    }


def _display(question: Question, value: Any, councils: dict[str, str]) -> str:
    """One answer as a document prints it: a written answer keeps its paragraphs; any other's
    several values (the options ticked, say) share one line."""
    shown = display_answer(question, value, councils)
    if question.type != "textarea":
        shown = shown.replace("\n", ", ")
    return shown or "Not answered"


LONG_ANSWER = 200  # characters: longer answers print under their question, not beside it


def answer_sections(
    form: Form, answers: dict[str, Any], councils: dict[str, str]
) -> list[dict[str, Any]]:
    """A form's answers as the sections and items documents print."""
    sections = []
    for section in form.sections:
        items: list[dict[str, Any]] = []
        for question in section.questions:
            if not is_shown(question, answers):
                continue
            value = answers.get(question.id)
            if isinstance(question, TableQuestion):
                rows = value or []
                items.append(
                    {
                        "label": question.label,
                        "table": {
                            "columns": [c.label for c in question.columns],
                            "rows": [
                                [_display(c, row.get(c.id), councils) for c in question.columns]
                                for row in rows
                            ],
                        },
                    }
                )
            else:
                shown = _display(question, value, councils)
                # a written answer prints under its question, at the page's full width: in a
                # table cell a long one left its question behind on the page before
                items.append(
                    {
                        "label": question.label,
                        "value": shown,
                        "long": question.type == "textarea" or len(shown) > LONG_ANSWER,
                    }
                )
        sections.append({"title": section.title, "items": items})
    return sections


class Issuer:
    """Builds one round's pending documents, skipping keys already issued."""

    def __init__(self, session: Session, round_: Round, now: datetime) -> None:
        self.session, self.round, self.now = session, round_, now
        self.prospectus = prospectus_of(round_)
        self.issued = set(session.exec(select(Document.key).where(Document.round_id == round_.id)))
        self.councils = {c.code: c for c in session.exec(select(Council))}
        self.council_names = {code: c.name for code, c in self.councils.items()}
        self.folder = get_settings().documents_dir / round_.slug
        self._places: dict[int, Place] = {}

    def place(self, application: Application) -> Place:
        """The application's place (its lead and member councils), read once per issue."""
        assert application.id is not None
        if application.id not in self._places:
            self._places[application.id] = place_of(self.session, application)
        return self._places[application.id]

    def label(self, application: Application) -> str:
        """The application as the staff reports name it: its council, or its place."""
        return place_label(self.place(application))

    def pooled(self, application: Application) -> PooledView | None:
        """The partners and their confirmed pooled budget, where the round asks for partners."""
        return pooled_view(self.session, application, self.prospectus)

    def _addressed(self, application: Application) -> dict[str, Any]:
        """The lead council a document is addressed to and, for a partnership, the place."""
        council = self.councils[application.council_code]
        on_behalf = on_behalf_of(self.place(application), council)
        return {
            "council": _council(council) | {"on_behalf": on_behalf},
            "letter": letter_of(self.prospectus, council, on_behalf),
        }

    def _pending(
        self,
        kind: str,
        key: str,
        context: dict[str, Any],
        application: Application | None,
        filename: str,
    ) -> Pending | None:
        if key in self.issued:
            return None
        assert self.round.id is not None
        reference = application.reference if application else self.round.slug
        out = self.folder / kind / f"{filename}.pdf"
        return Pending(
            key=key,
            kind=kind,
            title=DOCUMENT_TITLES[kind],
            round_id=self.round.id,
            application_id=application.id if application else None,
            job=RenderJob(
                f"documents/{kind}.html",
                {"doc": _doc(self.prospectus, kind, reference, self.now), **context},
                out,
            ),
            prospectus_version=self.round.prospectus_version,
        )

    def _for_each(
        self,
        kind: str,
        applications: Iterable[Application],
        build: Callable[[Application], dict[str, Any]],
    ) -> list[Pending]:
        out = []
        for application in applications:
            key = f"{application.reference}/{kind}"
            if key in self.issued:
                continue
            context = {**self._addressed(application), **build(application)}
            filename = _file_stem(application)
            pending = self._pending(kind, key, context, application, filename)
            if pending:
                out.append(pending)
        return out

    # -- the documents of each stage --------------------------------------------------------

    def prospectus_document(self, amendment: Amendment | None = None) -> list[Pending]:
        """The prospectus in force. Version 1 is the prospectus as launched; a later version
        (`amendment`: its number, date and changes) is issued under a key of its own, with
        what changed in it, and every earlier version's document is kept."""
        p = self.prospectus
        timetable = []
        for stage in ("eoi", "bid", "assessment"):
            window = getattr(p.timetable, stage)
            if window is not None:
                timetable.append(
                    {
                        "stage": stage.upper() if stage == "eoi" else stage.capitalize(),
                        "opens": _opening(window.opens_at(p.zone), p),
                        "closes": local_deadline(window.closes_at(p.zone), p),
                    }
                )
        if p.timetable.decision:
            timetable.append(
                {
                    "stage": "Decisions",
                    "opens": "",
                    "closes": local_deadline(p.timetable.decision.by_at(p.zone), p),
                }
            )
        if p.timetable.implementation:
            timetable.append(
                {
                    "stage": "Implementation",
                    "opens": date_filter(p.timetable.implementation.starts),
                    "closes": "the end of " + date_filter(p.timetable.implementation.ends),
                }
            )
        forms = []
        for stage, form in p.forms().items():
            forms.append(
                {
                    "stage": stage,
                    "title": {
                        "eoi": "Expression of interest",
                        "bid": "Full bid",
                        "returns": "Implementation returns",
                    }[stage],
                    "sections": [
                        {
                            "title": s.title,
                            "questions": [
                                {
                                    "label": q.label,
                                    "hint": q.hint or "",
                                    "type": _question_kind(q),
                                    "required": q.required,
                                    "detail": _question_detail(q),
                                }
                                for q in s.questions
                            ],
                        }
                        for s in form.sections
                    ],
                }
            )
        assessment = p.stages.assessment
        type_names = {c.type: c.type_name for c in self.councils.values()}
        types = p.eligibility.council_types
        context: dict[str, Any] = {
            "prospectus": p.model_dump(mode="json"),
            # who may apply in words: "County council, Unitary authority", not "CTY, UA"
            "council_types": [type_names.get(t, t) for t in types] if types else [],
            "timetable": timetable,
            "forms": forms,
            "criteria": [
                {
                    "title": c.title,
                    "weight": str(c.weight),
                    "minimum": c.minimum,
                    "guidance": c.guidance or "",
                }
                for c in assessment.criteria
            ]
            if assessment
            else [],
            "scale": [
                {"value": v, "label": assessment.scale.labels.get(v, "")}
                for v in range(assessment.scale.min, assessment.scale.max + 1)
            ]
            if assessment
            else [],
        }
        key, filename = f"{self.round.slug}/prospectus", self.round.slug
        context["amendment"] = None
        if amendment is not None and amendment.version > 1:
            key += f"/v{amendment.version}"
            filename += f"-v{amendment.version}"
            context["amendment"] = {
                "version": amendment.version,
                "amended": long_date(amendment.published_at, p.zone),
                "changes": list(amendment.changes),
            }
        pending = self._pending("prospectus", key, context, None, filename)
        if pending is not None and context["amendment"]:
            amended = context["amendment"]
            pending.job.context["doc"]["title"] = (
                f"Prospectus: version {amended['version']}, amended {amended['amended']}"
            )
        return [pending] if pending else []

    def receipts(self, stage: Stage, applications: Iterable[Application]) -> list[Pending]:
        """A receipt for each submitted EOI (or bid), with the answers as they were sent: one
        per version (a form reopened and submitted again has a receipt of its own, saying which
        version it replaces), saying whether it arrived by the deadline that applied."""
        form = form_of(self.prospectus, stage)
        kind = f"{stage}_receipt"
        applications = list(applications)
        kept = reopening.latest_of(self.session, applications, stage)
        out = []
        for application in applications:
            assert application.id is not None
            versions = kept.get(application.id, [])
            version = versions[-1].version if versions else 1
            key = receipt_key(application.reference, stage, version)
            if key in self.issued:
                continue
            submitted = (
                application.eoi_submitted_at if stage == "eoi" else application.bid_submitted_at
            )
            assert submitted is not None, "a receipt is for a submission"
            answers = (
                versions[-1].answers
                if versions
                else (application.eoi_answers if stage == "eoi" else application.bid_answers)
            )
            before = versions[-2] if len(versions) > 1 else None
            context = {
                **self._addressed(application),
                "submitted_at": long_moment(submitted, self.prospectus.zone),
                "sections": answer_sections(form, answers, self.council_names),
                "version": version,
                "replaces": {
                    "version": before.version,
                    "submitted_at": long_moment(before.submitted_at, self.prospectus.zone),
                }
                if before
                else None,
                "on_time": self._on_time(application, stage, submitted),
            }
            stem = _file_stem(application) + (f"-v{version}" if version > 1 else "")
            pending = self._pending(kind, key, context, application, stem)
            if pending is not None and version > 1:
                title = f"{pending.title}, version {version}"
                pending.job.context["doc"]["title"] = title
                pending = replace(pending, title=title)
            if pending:
                out.append(pending)
        return out

    def _on_time(self, application: Application, stage: Stage, submitted: datetime) -> str:
        """Whether the form arrived by the deadline that applies to the application, as the
        receipt says it after the time it arrived."""
        standing = deadlines.standing(self.session, application, stage)
        deadline = long_deadline(standing.closes, self.prospectus.zone)
        if submitted >= standing.closes:
            return f"after the deadline, {deadline}"
        if standing.extension is not None and standing.own:
            return f"on time, within the extension to {deadline} given to your council"
        if standing.extension is not None:
            return f"on time, within the extension for everyone to {deadline}"
        return f"on time: the deadline is {deadline}"

    def invitations(self, applications: Iterable[Application]) -> list[Pending]:
        p = self.prospectus
        assert p.timetable.bid is not None and p.stages.bid is not None
        deadline = long_deadline(p.timetable.bid.closes_at(p.zone), p.zone)
        sections = [s.title for s in p.stages.bid.form.sections]
        return self._for_each(
            "invitation", applications, lambda a: {"deadline": deadline, "bid_sections": sections}
        )

    def regrets(self, applications: Iterable[Application]) -> list[Pending]:
        return self._for_each(
            "regret",
            applications,
            lambda a: {
                "reason": a.decision_reason
                or (
                    "Your expression of interest did not pass the sift."
                    if a.state == "sift_fail"
                    else "Your expression of interest was not among the places shortlisted."
                )
            },
        )

    def _assessor_charts(self) -> list[Markup]:
        """Each assessor's mean score, as given and after normalisation."""
        profiles, _ = assessor_profiles(self.session, self.round)
        rows = [(p.assessor.name, p.raw.mean, p.normalised_mean) for p in profiles]
        return assessor_charts(rows) if rows else []

    def assessment_documents(
        self, ranked: Sequence[ApplicationResult], assessors: Sequence[User]
    ) -> list[Pending]:
        applications = [
            {
                "rank": r.application.rank,
                "council": self.label(r.application),
                "total": f"{r.total}%",
                "criteria": [
                    {
                        "title": c.title,
                        "weight": str(c.weight),
                        "scores": c.scores,
                        "mean": str(c.mean),
                        "moderated": None if c.moderated is None else str(c.moderated),
                        "normalised": str(c.normalised_mean),
                        "final": str(c.final),
                    }
                    for c in r.criteria
                ],
                "gateway_failed": r.gateway_failed,
            }
            for r in ranked
        ]
        chart = bar_chart(
            "Total weighted score by application",
            [(self.label(r.application), r.total) for r in ranked],
            unit="%",
        )
        out = [
            self._pending(
                "assessment_summary",
                f"{self.round.slug}/assessment_summary",
                {
                    "applications": applications,
                    "assessors": [a.name for a in assessors],
                    "chart": chart,
                    "assessor_charts": self._assessor_charts(),
                    "frontier": frontier_chart(
                        frontier(self.session, self.round),
                        self.prospectus.capacity.places or len(ranked),
                    ),
                },
                None,
                "assessment-summary",
            )
        ]
        tasks = moderation_tasks(self.session, self.round)
        if tasks:
            out.append(
                self._pending(
                    "moderation_pack",
                    f"{self.round.slug}/moderation_pack",
                    {"items": self._moderation_items(tasks)},
                    None,
                    "moderation-pack",
                )
            )
        return [p for p in out if p]

    def _moderation_items(self, tasks: Sequence[ModerationTask]) -> list[dict[str, Any]]:
        assessment = self.prospectus.stages.assessment
        assert assessment is not None
        titles = {c.id: c.title for c in assessment.criteria}
        names = {u.id: u.name for u in self.session.exec(select(User))}
        items = []
        for task in tasks:
            application = self.session.get(Application, task.application_id)
            assert application is not None
            rows = self.session.exec(
                select(Assignment.assessor_id, Score.score, Score.justification)
                .join(Score, col(Score.assignment_id) == Assignment.id)
                .where(
                    Assignment.application_id == task.application_id,
                    Score.criterion_id == task.criterion_id,
                )
            )
            items.append(
                {
                    "council": self.label(application),
                    "criterion": titles.get(task.criterion_id, task.criterion_id),
                    "spread": task.spread,
                    "scores": [
                        {"assessor": names.get(a, str(a)), "score": s, "justification": j}
                        for a, s, j in rows
                    ],
                }
            )
        return items

    def decisions(self, applications: Iterable[Application]) -> list[Pending]:
        applications = list(applications)
        ranked = sum(1 for a in applications if a.rank is not None)
        noun = "bid" if self.prospectus.stages.bid else "application"
        return self._for_each(
            "decision",
            applications,
            lambda a: {
                "noun": noun,
                "outcome": a.state if a.state in ("reserve", "unsuccessful") else "selected",
                "rank": f"{_ordinal(a.rank)} of {ranked}" if a.rank is not None else None,
                "total": f"{a.total_score}%" if a.total_score else None,
                "reason": a.decision_reason or "",
                "reserve_position": a.reserve_position,
                "pooled": self.pooled(a) if a.state != "unsuccessful" else None,
            },
        )

    def grant_offers(self, applications: Iterable[Application]) -> list[Pending]:
        p = self.prospectus
        stage = p.stages.implementation
        milestones = [
            {"title": m.title, "due": long_date(m.due)} for m in (stage.milestones if stage else [])
        ]
        payments = [
            {
                "description": pay.description,
                "amount": pounds(pay.amount_gbp),
            }
            for pay in (stage.payments if stage else [])
        ]
        returns = stage.returns if stage else None
        period = p.timetable.implementation
        conditions = list(p.grant_offer.conditions or default_conditions(p))
        accept_by = long_deadline(offers.accept_by(p, self.now), p.zone)
        return self._for_each(
            "grant_offer",
            applications,
            lambda a: {
                "amount": money(a.support_requested_pence),
                "period": (
                    {"starts": long_date(period.starts), "ends": long_date(period.ends)}
                    if period
                    else None
                ),
                "milestones": milestones,
                "returns": (
                    {
                        "every": returns.every,
                        "due_within": plural(returns.due_within_days, "day"),
                    }
                    if returns
                    else None
                ),
                "payments": payments,
                "conditions": conditions,
                "accept_by": accept_by,
                "accept_address": f"{get_settings().resolved_portal_base_url}"
                f"/applications/{a.id}/offer",
                "pooled": self.pooled(a),
            },
        )

    def chasers(self, records: Iterable[ReturnRecord]) -> list[Pending]:
        out = []
        for record_ in records:
            application = self.session.get(Application, record_.application_id)
            assert application is not None
            key = f"{application.reference}/chaser/{record_.period}"
            context = {
                **self._addressed(application),
                "period": f"{long_date(record_.period_start)} to {long_date(record_.period_end)}",
                "due": long_deadline(record_.due, self.prospectus.zone),
                "returns_address": f"{get_settings().resolved_portal_base_url}"
                f"/applications/{application.id}/returns",
            }
            name = f"{_file_stem(application)}-period-{record_.period}"
            pending = self._pending("chaser", key, context, application, name)
            if pending:
                out.append(pending)
        return out

    def progress_reports(self, applications: Iterable[Application]) -> list[Pending]:
        """One report per place per number of returns made: a later cycle issues a new one."""
        out = []
        p = self.prospectus
        returns_form = p.forms().get("returns")
        support = p.support_question()
        today = self.now.astimezone(p.zone).date()
        for application in applications:
            records = returns_of(self.session, application)
            made = [r for r in records if r.submitted_at is not None]
            key = f"{application.reference}/progress_report/{len(made)}"
            if key in self.issued:
                continue
            answers = all_answers(application)
            budget = _budget_table(p)
            pooled = _pooled_budget_rows(budget, answers) if budget else []
            charts = []
            if budget and pooled:
                by_org: dict[str, Decimal] = {}
                for row in pooled:
                    by_org[row["organisation"]] = (
                        by_org.get(row["organisation"], Decimal(0)) + row["value"]
                    )
                charts.append(bar_chart(budget.label, list(by_org.items()), unit="£"))
            if made and returns_form:
                # one chart per kind of figure: pounds and counts do not share an axis; each
                # period is named by its last day, as the returns table names it
                for kind, unit, title in (
                    ("money", "£", "Returns over time: money, at the end of each period"),
                    ("number", "", "Returns over time: counts, at the end of each period"),
                ):
                    questions = [q for q in returns_form.questions() if q.type == kind][:3]
                    if questions:
                        series = {
                            q.label: [
                                (date_filter(r.period_end), Decimal(str(r.answers.get(q.id) or 0)))
                                for r in made
                            ]
                            for q in questions
                        }
                        charts.append(line_chart(title, series, unit=unit))
            milestones = milestones_of(self.session, application)
            overdue = [r for r in records if r.submitted_at is None and self.now >= r.due]
            implementation = p.timetable.implementation
            context = {
                "council": self._addressed(application)["council"],
                "implementation": {"starts": implementation.starts, "ends": implementation.ends}
                if implementation
                else None,
                "milestones": [
                    {
                        "title": m.title,
                        "due": m.due,
                        "met_on": m.met_on,
                        "status": "met" if m.met_on else ("overdue" if m.due < today else "due"),
                        "behind": not m.met_on and m.due < today,
                    }
                    for m in milestones
                ],
                "milestones_met": sum(1 for m in milestones if m.met_on),
                "returns": [
                    {
                        "starts": r.period_start,
                        "ends": r.period_end,
                        "due": local_deadline(r.due, p),
                        "submitted_at": local_time(r.submitted_at, p) if r.submitted_at else None,
                        "status": _return_status(r, self.now),
                        "behind": _return_behind(r, self.now),
                        "values": _return_values(returns_form, r.answers, self.council_names),
                    }
                    for r in records
                ],
                "returns_made": len(made),
                "returns_overdue": len(overdue),
                "pooled_budget": [
                    {
                        "organisation": row["organisation"],
                        "year": row["year"],
                        "amount": pounds(row["value"]),
                    }
                    for row in pooled
                ],
                "pooled_budget_title": budget.label if budget else "Budget",
                "pooled_budget_columns": budget.columns if budget else ["", "", ""],
                "charts": charts,
                "confirmed_pooled": self.pooled(application),
                "grant": money(application.support_requested_pence) if support else None,
                "payments_total": money(sum(r.payment_pence or 0 for r in made))
                if p.stages.implementation and p.stages.implementation.payments
                else None,
            }
            name = f"{_file_stem(application)}-{len(made)}-returns"
            pending = self._pending("progress_report", key, context, application, name)
            if pending:
                out.append(pending)
        return out

    def replication_packs(self, models: Iterable[PublishedModel]) -> list[Pending]:
        out = []
        p = self.prospectus
        forms = p.applicant_forms()
        for model in models:
            application = self.session.get(Application, model.application_id)
            assert application is not None
            key = f"{application.reference}/replication_pack/v{model.version}"
            bundle = model.bundle
            sections = [
                s
                for form in forms
                for s in answer_sections(
                    _only(form, bundle["answers"]), bundle["answers"], self.council_names
                )
                if s["items"]
            ]
            adopters = self.session.exec(
                select(Application).where(Application.adopted_from_model_id == model.id)
            )
            context = {
                "council": _council(self.councils[application.council_code]),
                "model": {
                    "council": bundle["council"]["name"],
                    "version": model.version,
                    "published_at": _opening(model.published_at, p),
                    "changes": model.changes,
                    "milestone": next(
                        (m["title"] for m in bundle["milestones"] if m["id"] == model.milestone_id),
                        "None: the plan as selected" if model.version == 1 else "None",
                    ),
                    "round_title": p.title,
                },
                "sections": sections,
                "milestones": [
                    {
                        "title": m["title"],
                        "due": date.fromisoformat(m["due"]),
                        "met_on": date.fromisoformat(m["met_on"]) if m["met_on"] else None,
                    }
                    for m in bundle["milestones"]
                ],
                "documents": [
                    {"title": d["title"], "kind": d["kind"]} for d in bundle["documents"]
                ],
                "adopters": [
                    {
                        "council": self.council_names[a.council_code],
                        "started_at": _opening(a.created_at, p),
                    }
                    for a in adopters
                ],
            }
            name = f"{application.council_code}-v{model.version}"
            pending = self._pending("replication_pack", key, context, application, name)
            if pending:
                out.append(pending)
        return out


def _opening(moment: datetime, prospectus: Prospectus) -> str:
    """When something opens or happens, as people say it: the day alone at the start of the day
    ('17 October 2011', not '00:00 on 17 October 2011'), else the time and the day."""
    local = moment.astimezone(prospectus.zone)
    if (local.hour, local.minute, local.second) == (0, 0, 0):
        return date_filter(local.date())
    return local_time(moment, prospectus)


def _file_stem(application: Application) -> str:
    """A file name for an application's document: its reference less the round ("ESS",
    "CHI-adopts-1"); the round's folder holds it."""
    return application.reference.split("/", 1)[1].replace("/", "-")


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def default_conditions(prospectus: Prospectus) -> list[str]:
    """The grant's conditions when the prospectus states none, drawn from its implementation
    stage."""
    body = body_in_prose(prospectus.issued_by)
    stage = prospectus.stages.implementation
    out = [
        f"The grant is to be spent on the proposal set out in your application to "
        f"{prospectus.title}, and on nothing else.",
    ]
    if stage and stage.returns:
        every = {"month": "month", "quarter": "quarter", "half-year": "six months"}[
            stage.returns.every
        ]
        out.append(
            f"You make a monitoring return through the portal for every {every}, within "
            f"{plural(stage.returns.due_within_days, 'day')} of its end. Payments that depend "
            "on a return are held until it arrives."
        )
    if stage and stage.milestones:
        out.append(
            f"You meet the milestones below by their dates, and tell {body} at once if one is "
            "at risk."
        )
    if stage and stage.payments:
        out.append(
            "Payments are made by results: at the rates below, on the figures in each return, "
            "which may be checked against your records."
        )
    out.append(
        f"You tell {body} at once of any change that puts the proposal at risk, and keep "
        "records of how the grant is spent for inspection."
    )
    return out


def _only(form: Form, answers: dict[str, Any]) -> Form:
    """The form cut down to the questions that have answers (a model carries some over)."""
    sections = []
    for section in form.sections:
        questions = [q for q in section.questions if q.id in answers]
        if questions:
            sections.append(section.model_copy(update={"questions": questions}))
    return form.model_copy(update={"sections": sections})


ANSWER_KINDS = {
    "text": "a short text",
    "textarea": "a written answer",
    "number": "a number",
    "money": "an amount in pounds",
    "date": "a date",
    "yes_no": "yes or no",
    "choice": "one of",
    "multichoice": "one or more of",
    "email": "an e-mail address",
    "council": "a council in England",
    "file": "a file",
    "table": "a table",
}


def _question_kind(question: Question) -> str:
    """What kind of answer a question takes, in words: 'A written answer'."""
    kind = ANSWER_KINDS.get(question.type, question.type).capitalize()
    options = getattr(question, "options", None)
    return f"{kind}: {', '.join(options)}" if options else kind


def _question_detail(question: Question) -> str:
    """A question's limits in words, dates long form: 'at most 500 words', 'from 17 October
    2011 to 10 November 2011'."""

    def limit(value: Any) -> str:
        if isinstance(value, date):
            return date_filter(value)
        number = Decimal(str(value))
        text = f"{number:,.2f}" if number != number.to_integral_value() else f"{number:,.0f}"
        return f"£{text}" if question.type == "money" else text

    parts = []
    low, high = getattr(question, "min", None), getattr(question, "max", None)
    if low is not None and high is not None:
        parts.append(f"from {limit(low)} to {limit(high)}")
    elif low is not None:
        parts.append(f"{'no earlier than' if question.type == 'date' else 'at least'} {limit(low)}")
    elif high is not None:
        parts.append(f"{'no later than' if question.type == 'date' else 'at most'} {limit(high)}")
    for key, unit in (
        ("max_words", "words"),
        ("max_chars", "characters"),
        ("max_mb", "MB"),
    ):
        value = getattr(question, key, None)
        if value is not None:
            parts.append(f"at most {limit(value)} {unit}")
    rows = getattr(question, "min_rows", None), getattr(question, "max_rows", None)
    if rows[0] is not None:
        parts.append(f"at least {rows[0]} {'row' if rows[0] == 1 else 'rows'}")
    if rows[1] is not None:
        parts.append(f"at most {rows[1]} rows")
    if isinstance(question, TableQuestion):
        parts.append("columns: " + ", ".join(c.label for c in question.columns))
    return "; ".join(parts)


@dataclass(frozen=True)
class BudgetTable:
    """The applicant table that holds money, found by its shape (a text column, an optional
    choice column, a money column), not by its id; its labels head the report's table."""

    question: TableQuestion
    name: Question
    period: Question | None
    amount: Question

    @property
    def label(self) -> str:
        return self.question.label

    @property
    def columns(self) -> list[str]:
        return [self.name.label, self.period.label if self.period else "", self.amount.label]


def _budget_table(prospectus: Prospectus) -> BudgetTable | None:
    for form in prospectus.applicant_forms():
        for question in form.questions():
            if not isinstance(question, TableQuestion):
                continue
            amounts = [c for c in question.columns if c.type == "money"]
            names = [c for c in question.columns if c.type in ("text", "council")]
            periods = [c for c in question.columns if c.type == "choice"]
            if amounts and names:
                return BudgetTable(question, names[0], periods[0] if periods else None, amounts[0])
    return None


def _pooled_budget_rows(table: BudgetTable, answers: dict[str, Any]) -> list[dict[str, Any]]:
    """The table's answered rows: organisation, year (or whatever its columns are), amount."""
    return [
        {
            "organisation": str(row.get(table.name.id, "")),
            "year": str(row.get(table.period.id, "")) if table.period else "",
            "value": Decimal(row[table.amount.id]),
        }
        for row in answers.get(table.question.id) or []
        if table.amount.id in row
    ]


def _return_status(record_: ReturnRecord, now: datetime) -> str:
    if record_.submitted_at is not None:
        return "late" if record_.submitted_at > record_.due else "on time"
    return "overdue" if now >= record_.due else "not yet due"


def _return_behind(record_: ReturnRecord, now: datetime) -> bool:
    """Whether a return was made late, or is overdue: the report marks it."""
    made = record_.submitted_at
    return made > record_.due if made is not None else now >= record_.due


def _return_values(
    form: Form | None, answers: dict[str, Any], councils: dict[str, str]
) -> list[dict[str, Any]]:
    if form is None or not answers:
        return []
    values = [
        (q, _display(q, answers.get(q.id), councils))
        for q in form.questions()
        if q.id in answers and not isinstance(q, TableQuestion)
    ]
    # `long`: written at length (a textarea, or any answer past a line or two), printed under
    # its question rather than in a table's cell
    return [
        {"label": q.label, "value": value, "long": q.type == "textarea" or len(value) > 120}
        for q, value in values
    ]


def receipt_key(reference: str, stage: Stage, version: int) -> str:
    """A receipt's key: version 1's is the key receipts always had, so that a round's receipts
    issued before versions were kept are still found; a later version's has its number."""
    key = f"{reference}/{stage}_receipt"
    return key if version == 1 else f"{key}/v{version}"


def record_rendered(session: Session, pendings: Sequence[Pending], now: datetime) -> list[Pending]:
    """Record documents whose files now exist; a key already recorded is skipped. Returns the
    ones recorded now (issued for the first time), each under the prospectus version it was made
    under. Each file is kept in the store (cbflow.store) as it is recorded, so that a portal or
    a worker on another host reaches it."""
    root = get_settings().documents_dir
    kept = store.get_store()
    known = set(
        session.exec(select(Document.key).where(col(Document.key).in_([p.key for p in pendings])))
    )
    added = []
    for pending in pendings:
        if pending.key in known or not pending.job.out_path.exists():
            continue
        relative = _relative(pending.job.out_path, root)
        if not relative.is_absolute():  # every host reaches it: kept with its record
            kept.keep("documents", relative.as_posix(), pending.job.out_path, session)
        session.add(
            Document(
                key=pending.key,
                round_id=pending.round_id,
                application_id=pending.application_id,
                kind=pending.kind,
                title=pending.title,
                path=str(relative),
                created_at=now,
                prospectus_version=pending.prospectus_version,
            )
        )
        known.add(pending.key)
        added.append(pending)
    session.flush()
    return added


def _relative(path: Path, root: Path) -> Path:
    try:
        return path.resolve().relative_to(root.resolve())
    except ValueError:
        return path


def documents_of(session: Session, round_: Round) -> list[Document]:
    return list(
        session.exec(
            select(Document).where(Document.round_id == round_.id).order_by(col(Document.id))
        )
    )
