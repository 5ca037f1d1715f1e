"""The prospectus file format, version 1: pydantic models, the loader and its error reports.

A prospectus is data written by programme staff. Every fault is reported with the file, the line
and the key path, so that the person who wrote the file can mend it without reading code.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    ScalarEvent,
)
from ruamel.yaml.reader import ReaderError

from cbflow.errors import ProspectusError
from cbflow.formatting import long_date

SLUG = r"^[a-z0-9]+(-[a-z0-9]+)*$"
IDENT = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"

Money = Annotated[Decimal, Field(max_digits=14, decimal_places=2)]


class LocatedError(ValueError):
    """A fault found by a cross-check, with the key path (relative to the model checked)."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        self.loc = loc
        super().__init__(message)


class Strict(BaseModel):
    """Unknown keys are an error: a typo in a prospectus must not pass silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------------------------------------
# Questions


class ShowIf(Strict):
    question: str
    equals: Any


class QuestionBase(Strict):
    id: Annotated[str, Field(pattern=IDENT)]
    label: str
    hint: str | None = None
    required: bool = False
    show_if: ShowIf | None = None

    @model_validator(mode="after")
    def _ranges_ordered(self) -> QuestionBase:
        """No question may ask for the impossible: a minimum above its maximum."""
        for low, high in (
            ("min", "max"),
            ("min_rows", "max_rows"),
            ("min_selected", "max_selected"),
        ):
            least, most = getattr(self, low, None), getattr(self, high, None)
            if least is not None and most is not None and least > most:
                raise LocatedError((low,), f"{low} ({least}) is above {high} ({most})")
        return self


class TextQuestion(QuestionBase):
    type: Literal["text"]
    max_chars: Annotated[int, Field(gt=0)] | None = None


class TextareaQuestion(QuestionBase):
    type: Literal["textarea"]
    max_words: Annotated[int, Field(gt=0)] | None = None
    max_chars: Annotated[int, Field(gt=0)] | None = None


class NumberQuestion(QuestionBase):
    type: Literal["number"]
    min: Decimal | None = None
    max: Decimal | None = None
    step: Annotated[Decimal, Field(gt=0)] | None = None


class MoneyQuestion(QuestionBase):
    type: Literal["money"]
    min: Money | None = None
    max: Money | None = None


class DateQuestion(QuestionBase):
    type: Literal["date"]
    min: date | None = None
    max: date | None = None


class YesNoQuestion(QuestionBase):
    type: Literal["yes_no"]


class ChoiceQuestion(QuestionBase):
    type: Literal["choice"]
    options: Annotated[list[str], Field(min_length=1)]


class MultichoiceQuestion(QuestionBase):
    type: Literal["multichoice"]
    options: Annotated[list[str], Field(min_length=1)]
    min_selected: Annotated[int, Field(ge=0)] | None = None
    max_selected: Annotated[int, Field(gt=0)] | None = None


class EmailQuestion(QuestionBase):
    type: Literal["email"]


class CouncilQuestion(QuestionBase):
    type: Literal["council"]
    council_types: list[str] | None = None


class FileQuestion(QuestionBase):
    type: Literal["file"]
    accept: list[str] | None = None
    max_mb: Annotated[Decimal, Field(gt=0)] | None = None


ScalarQuestion = Annotated[
    TextQuestion
    | TextareaQuestion
    | NumberQuestion
    | MoneyQuestion
    | DateQuestion
    | YesNoQuestion
    | ChoiceQuestion
    | MultichoiceQuestion
    | EmailQuestion
    | CouncilQuestion
    | FileQuestion,
    Field(discriminator="type"),
]


class TableQuestion(QuestionBase):
    type: Literal["table"]
    columns: Annotated[list[ScalarQuestion], Field(min_length=1)]
    min_rows: Annotated[int, Field(ge=0)] | None = None
    max_rows: Annotated[int, Field(gt=0)] | None = None

    @model_validator(mode="after")
    def _columns_unique(self) -> TableQuestion:
        seen: set[str] = set()
        for i, column in enumerate(self.columns):
            if column.id in seen:
                raise LocatedError(("columns", i, "id"), f"column id {column.id!r} is used twice")
            if column.show_if and column.show_if.question not in seen:
                raise LocatedError(
                    ("columns", i, "show_if", "question"),
                    f"{column.show_if.question!r} is not a column before this one",
                )
            seen.add(column.id)
        return self


Question = Annotated[
    TextQuestion
    | TextareaQuestion
    | NumberQuestion
    | MoneyQuestion
    | DateQuestion
    | YesNoQuestion
    | ChoiceQuestion
    | MultichoiceQuestion
    | EmailQuestion
    | CouncilQuestion
    | FileQuestion
    | TableQuestion,
    Field(discriminator="type"),
]


class Section(Strict):
    id: Annotated[str, Field(pattern=IDENT)]
    title: str
    hint: str | None = None
    questions: Annotated[list[Question], Field(min_length=1)]


class Form(Strict):
    sections: Annotated[list[Section], Field(min_length=1)]

    @model_validator(mode="after")
    def _ids_unique_and_conditions_known(self) -> Form:
        _unique([s.id for s in self.sections], "section id")
        seen: set[str] = set()
        for i, section in enumerate(self.sections):
            for j, question in enumerate(section.questions):
                here: tuple[str | int, ...] = ("sections", i, "questions", j)
                if question.id in seen:
                    raise LocatedError(
                        (*here, "id"), f"question id {question.id!r} is used twice in this form"
                    )
                if question.show_if and question.show_if.question not in seen:
                    raise LocatedError(
                        (*here, "show_if", "question"),
                        f"{question.show_if.question!r} is not a question asked before this one",
                    )
                seen.add(question.id)
        return self

    def questions(self) -> list[Question]:
        return [q for section in self.sections for q in section.questions]

    def question(self, question_id: str) -> Question | None:
        return next((q for q in self.questions() if q.id == question_id), None)


# ---------------------------------------------------------------------------------------------
# Timetable


LocalMoment = date | datetime | str


def _parse_moment(value: LocalMoment) -> date | datetime:
    if isinstance(value, datetime | date):
        return value
    try:
        return (
            datetime.fromisoformat(value)
            if "T" in value or " " in value
            else date.fromisoformat(value)
        )
    except ValueError as exc:
        raise ValueError(
            f"{value!r} is not a date (YYYY-MM-DD) or date and time (YYYY-MM-DDTHH:MM)"
        ) from exc


def _at(value: date | datetime, zone: ZoneInfo, *, end_of_day: bool) -> datetime:
    """The instant a timetable entry names. A date alone opens at the start of that day and
    closes at the end of it (the next midnight, local time)."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=zone)
    day = value + timedelta(days=1) if end_of_day else value
    return datetime.combine(day, time(0, 0), tzinfo=zone)


def _wall_clock_problem(value: LocalMoment, zone: ZoneInfo) -> str | None:
    """A local time the clocks skip (spring forward) or pass twice (fall back) is no deadline."""
    if not isinstance(value, datetime) or value.tzinfo is not None:
        return None
    first, second = value.replace(tzinfo=zone, fold=0), value.replace(tzinfo=zone, fold=1)
    if first.utcoffset() == second.utcoffset():
        return None
    if first.astimezone(ZoneInfo("UTC")).astimezone(zone).replace(tzinfo=None) != value:
        return (
            f"{value:%H:%M} on {long_date(value.date())} does not exist in {zone.key}: "
            "the clocks go forward"
        )
    return (
        f"{value:%H:%M} on {long_date(value.date())} happens twice in {zone.key} as the clocks "
        "go back: "
        f"give the offset, e.g. {value:%Y-%m-%dT%H:%M}+01:00"
    )


class Window(Strict):
    opens: LocalMoment
    closes: LocalMoment

    @field_validator("opens", "closes")
    @classmethod
    def _moment(cls, value: LocalMoment) -> date | datetime:
        return _parse_moment(value)

    def opens_at(self, zone: ZoneInfo) -> datetime:
        return _at(_parse_moment(self.opens), zone, end_of_day=False)

    def is_open(self, zone: ZoneInfo, now: datetime) -> bool:
        return self.opens_at(zone) <= now < self.closes_at(zone)

    def closes_at(self, zone: ZoneInfo) -> datetime:
        """The first instant at which the window is closed: a window is open for
        opens_at <= now < closes_at."""
        return _at(_parse_moment(self.closes), zone, end_of_day=True)


class Deadline(Strict):
    by: LocalMoment

    @field_validator("by")
    @classmethod
    def _moment(cls, value: LocalMoment) -> date | datetime:
        return _parse_moment(value)

    def by_at(self, zone: ZoneInfo) -> datetime:
        return _at(_parse_moment(self.by), zone, end_of_day=True)


class Period(Strict):
    starts: date
    ends: date

    @model_validator(mode="after")
    def _ordered(self) -> Period:
        if self.ends <= self.starts:
            raise ValueError("ends must be after starts")
        return self


class Timetable(Strict):
    eoi: Window
    bid: Window | None = None
    assessment: Window | None = None
    decision: Deadline | None = None
    implementation: Period | None = None


# ---------------------------------------------------------------------------------------------
# Stages


class SiftCheck(Strict):
    """One automatic check on an expression of interest. Give the question and one condition,
    or `confirmed_pooled_min` alone: the partners' confirmed contributions to the pooled budget,
    over all years, at least this many pounds (where the partners are asked at the EOI)."""

    question: str | None = None
    min_rows: Annotated[int, Field(ge=0)] | None = None
    max_rows: Annotated[int, Field(ge=0)] | None = None
    answered: bool | None = None
    equals: Any = None
    min: Decimal | None = None
    max: Decimal | None = None
    min_words: Annotated[int, Field(ge=0)] | None = None
    confirmed_pooled_min: Annotated[Money, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _one_condition(self) -> SiftCheck:
        conditions = [k for k in self.model_fields_set if k != "question"]
        if not conditions:
            raise ValueError(
                "a check needs a condition besides question: one of min_rows, max_rows, "
                "answered, equals, min, max, min_words, confirmed_pooled_min"
            )
        if "confirmed_pooled_min" in conditions:
            if len(conditions) > 1 or self.question is not None:
                raise ValueError(
                    "confirmed_pooled_min is a check of its own: give it without question or "
                    "another condition"
                )
        elif self.question is None:
            raise ValueError("a check needs the question it reads")
        return self


class SiftRule(Strict):
    id: Annotated[str, Field(pattern=IDENT)]
    description: str
    check: SiftCheck
    on_fail: Literal["fail", "refer"] = "fail"


class EoiStage(Strict):
    form: Form
    sift: list[SiftRule] = []
    shortlist: Annotated[int, Field(gt=0)] | None = None


class BidStage(Strict):
    form: Form


class Scale(Strict):
    min: int
    max: int
    labels: dict[int, str] = {}

    @model_validator(mode="after")
    def _ordered(self) -> Scale:
        if self.max <= self.min:
            raise ValueError("scale max must be above min")
        outside = [k for k in self.labels if not self.min <= k <= self.max]
        if outside:
            raise ValueError(f"labels {outside} lie outside the scale {self.min}..{self.max}")
        return self


class Moderation(Strict):
    spread_at_least: Annotated[int, Field(gt=0)]


class Criterion(Strict):
    id: Annotated[str, Field(pattern=IDENT)]
    title: str
    weight: Annotated[Decimal, Field(gt=0)]
    guidance: str | None = None
    minimum: int | None = None
    evidence: list[str] = []


class AssessmentStage(Strict):
    assessors_per_application: Annotated[int, Field(gt=0)] = 2
    scale: Scale
    justification_required: bool = True
    moderation: Moderation | None = None
    criteria: Annotated[list[Criterion], Field(min_length=1)]
    # no assessor on an application from a council of their own region
    exclude_own_region: bool = False
    # rank by scores normalised per assessor (harsh and lenient assessors evened out)
    normalise: bool = False

    @model_validator(mode="after")
    def _criteria(self) -> AssessmentStage:
        _unique([c.id for c in self.criteria], "criterion id")
        for criterion in self.criteria:
            if criterion.minimum is not None and not (
                self.scale.min <= criterion.minimum <= self.scale.max
            ):
                raise ValueError(
                    f"criterion {criterion.id!r}: minimum {criterion.minimum} lies outside the "
                    f"scale {self.scale.min}..{self.scale.max}"
                )
        return self


class Milestone(Strict):
    id: Annotated[str, Field(pattern=IDENT)]
    title: str
    due: date


class Payment(Strict):
    id: Annotated[str, Field(pattern=IDENT)]
    description: str
    per: str
    amount_gbp: Money


class Returns(Strict):
    every: Literal["month", "quarter", "half-year"]
    due_within_days: Annotated[int, Field(ge=0)] = 14  # after each period ends
    form: Form


class ImplementationStage(Strict):
    returns: Returns | None = None
    milestones: list[Milestone] = []
    payments: list[Payment] = []

    @model_validator(mode="after")
    def _payments_per_number(self) -> ImplementationStage:
        _unique([m.id for m in self.milestones], "milestone id")
        for i, payment in enumerate(self.payments):
            question = self.returns.form.question(payment.per) if self.returns else None
            if question is None or question.type != "number":
                raise LocatedError(
                    ("payments", i, "per"),
                    f"{payment.per!r} is not a number question of the returns form",
                )
        return self


class ReplicationStage(Strict):
    open_to: Literal["all", "eligible"] = "all"
    carry_over: list[str] = []
    # who may follow a selected place while it implements: any council, or those eligible
    follow: Literal["all", "eligible"] = "all"
    # followers are sent what is new every so many days (a scheduled run)
    digest_every_days: Annotated[int, Field(ge=1, le=92)] = 7
    # the rolling adoption route, apart from the competitive windows: "open" from `opens` until
    # `closes`, when a council may adopt a model at any time with a light form staff approve
    route: Literal["open", "none"] = "none"
    opens: LocalMoment | None = None
    closes: LocalMoment | None = None

    @field_validator("opens", "closes")
    @classmethod
    def _moment(cls, value: LocalMoment | None) -> date | datetime | None:
        return None if value is None else _parse_moment(value)

    @model_validator(mode="after")
    def _route_dates(self) -> ReplicationStage:
        if self.route == "open":
            if self.opens is None or self.closes is None:
                raise ValueError("an open adoption route needs the dates it opens and closes")
            window = Window(opens=self.opens, closes=self.closes)
            utc = ZoneInfo("UTC")
            if window.closes_at(utc) <= window.opens_at(utc):
                raise LocatedError(("closes",), "the adoption route must close after it opens")
        elif self.opens is not None or self.closes is not None:
            raise ValueError("opens and closes are the adoption route's: set route: open")
        return self

    @property
    def route_window(self) -> Window | None:
        """The adoption route's window, None where the prospectus opens no route."""
        if self.route != "open" or self.opens is None or self.closes is None:
            return None
        return Window(opens=self.opens, closes=self.closes)


class Stages(Strict):
    eoi: EoiStage
    bid: BidStage | None = None
    assessment: AssessmentStage | None = None
    implementation: ImplementationStage | None = None
    replication: ReplicationStage | None = None


class Eligibility(Strict):
    council_types: list[str] | None = None


class Partnership(Strict):
    """A place made of several councils applying together: a lead council starts the
    application and names the others, who each confirm their membership in the portal."""

    min_councils: Annotated[int, Field(ge=2)] = 2  # the lead included
    max_councils: Annotated[int, Field(ge=2)] | None = None
    # the types of council that may be members; omitted: those eligible to apply
    council_types: list[str] | None = None

    @model_validator(mode="after")
    def _in_order(self) -> Partnership:
        if self.max_councils is not None and self.max_councils < self.min_councils:
            raise ValueError("max_councils must be at least min_councils")
        return self


PARTNER_TYPES = {
    "police": "Police",
    "health": "Health",
    "fire_and_rescue": "Fire and rescue",
    "jobcentre_plus": "Jobcentre Plus",
    "housing": "Housing",
    "voluntary_sector": "Voluntary sector",
    "probation": "Probation",
    "other": "Other",
}
FINANCIAL_YEAR = re.compile(r"^(\d{4})-(\d{2})$")


def partner_type_name(partner_type: str) -> str:
    """A partner type in words: `fire_and_rescue` is "Fire and rescue"."""
    return PARTNER_TYPES.get(partner_type, partner_type.replace("_", " ").capitalize())


class Partners(Strict):
    """The public services of the place (police, health, fire and rescue ...) and what each puts
    into the pooled budget per financial year, asked of the council at one stage; each partner's
    named contact confirms or declines their contribution through a single-use link."""

    stage: Literal["eoi", "bid"] = "bid"
    types: Annotated[
        list[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=40)]],
        Field(min_length=1),
    ] = list(PARTNER_TYPES)
    # financial years, "2012-13", in order and one after another
    years: Annotated[list[str], Field(min_length=1, max_length=20)]
    # every contribution confirmed before the stage's form can be submitted
    require_confirmed: bool = False
    min_partners: Annotated[int, Field(ge=0, le=100)] = 0

    @model_validator(mode="after")
    def _years_and_types(self) -> Partners:
        for i, year in enumerate(self.years):
            match = FINANCIAL_YEAR.match(year)
            if match is None or (int(match.group(1)) + 1) % 100 != int(match.group(2)):
                raise LocatedError(
                    ("years", i), f"{year!r} is not a financial year written like 2012-13"
                )
            if i and int(year[:4]) != int(self.years[i - 1][:4]) + 1:
                raise LocatedError(
                    ("years", i),
                    f"{year!r} does not follow {self.years[i - 1]!r}: give the years in order, "
                    "one after another",
                )
        if len(set(self.types)) != len(self.types):
            raise LocatedError(("types",), "each partner type may be listed once")
        return self


class Applicants(Strict):
    """Who may apply: a council on its own, a partnership of councils, or either."""

    single_council: bool = True
    partnership: Partnership | None = None

    @model_validator(mode="after")
    def _someone(self) -> Applicants:
        if not self.single_council and self.partnership is None:
            raise ValueError("with single_council: false, describe the partnership that may apply")
        return self


class SignOff(Strict):
    """Submissions approved by a named officer of the council (its certifier) rather than by
    whoever fills in the form: the prospectus names the role it asks for."""

    role: Annotated[
        str, Field(min_length=1, max_length=120)
    ]  # "Chief executive or section 151 officer"
    # "clarification": a council's answer to a clarification request is approved by the
    # certifier too, before the assessors see it
    stages: Annotated[list[Literal["eoi", "bid", "clarification"]], Field(min_length=1)] = [
        "eoi",
        "bid",
    ]


class Reminders(Strict):
    """When reminders go, in working days before each deadline (weekends and England's bank
    holidays are not working days): to councils with an unsubmitted draft (and their certifier,
    where sign-off is awaited) before the EOI and bid deadlines, and to assessors with scores
    unsubmitted before the assessment closes. An empty list sends none."""

    before_deadline: Annotated[list[Annotated[int, Field(ge=1, le=60)]], Field(max_length=10)] = [
        10,
        3,
        1,
    ]

    @field_validator("before_deadline")
    @classmethod
    def _distinct(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value):
            raise ValueError("each number of working days once")
        return sorted(value, reverse=True)


class Reopening(Strict):
    """A council may reopen its own submitted EOI or bid before the deadline, change it and
    submit it again; reopened, it counts only if submitted again by the deadline."""

    stages: Annotated[list[Literal["eoi", "bid"]], Field(min_length=1)] = ["eoi", "bid"]


DURATION = re.compile(r"^\s*(\d{1,4})\s*(minute|hour|day)s?\s*$")


def parse_duration(value: str) -> timedelta:
    """'30 minutes', '48 hours', '2 days' as a timedelta; anything else is refused."""
    match = DURATION.match(value)
    if match is None:
        raise ValueError(f"{value!r} is not a duration such as '30 minutes', '48 hours', '2 days'")
    number, unit = int(match.group(1)), match.group(2)
    return timedelta(**{f"{unit}s": number})


class ExtendIfDegraded(Strict):
    """The deadline run extends a window for everyone, rather than closing it, when the portal
    was degraded (minutes with no portal running, or with a tenth or more of its requests
    failing or slow) for at least `minutes_degraded` minutes in the `within_hours` hours before
    the deadline."""

    within_hours: Annotated[Decimal, Field(gt=0, le=168)]
    minutes_degraded: Annotated[int, Field(ge=1, le=10080)]
    extend_by: str  # "24 hours", "2 days", "30 minutes"

    @field_validator("extend_by")
    @classmethod
    def _duration(cls, value: str) -> str:
        length = parse_duration(value)
        if not timedelta(minutes=1) <= length <= timedelta(days=14):
            raise ValueError("extend_by is between 1 minute and 14 days")
        return value

    @property
    def extension(self) -> timedelta:
        return parse_duration(self.extend_by)

    @property
    def looks_back(self) -> timedelta:
        return timedelta(hours=float(self.within_hours))


class Capacity(Strict):
    places: Annotated[int, Field(gt=0)] | None = None
    budget_gbp: Annotated[Money, Field(gt=0)] | None = None
    # the money question whose answer is the support an application asks for; may be left out
    # when the EOI and bid forms have exactly one money question outside tables
    requested_by: str | None = None


class GroupRule(Strict):
    """A limit on the places chosen per region or per council type: at most so many from any
    one (`at_most`), or at least so many from each that has an application in the running
    (`at_least`)."""

    per: Literal["region", "council_type"]
    at_most: Annotated[int, Field(gt=0)] | None = None
    at_least: Annotated[int, Field(gt=0)] | None = None

    @model_validator(mode="after")
    def _one_limit(self) -> GroupRule:
        if (self.at_most is None) == (self.at_least is None):
            raise ValueError("give either at_most or at_least")
        return self


class Selection(Strict):
    constraints: list[GroupRule] = []


class OpenData(Strict):
    """How the round is identified when it is published as open data (`cbflow export`)."""

    # the org-id.guide identifier of the body issuing the prospectus, e.g. GB-GOVUK-<its slug>
    funder_id: Annotated[str, Field(pattern=r"^[A-Z]{2}-[A-Z0-9]+-\S+$")]
    # the publisher's 360Giving prefix: every grant identifier starts with it
    grant_prefix: Annotated[str, Field(pattern=r"^360G-[A-Za-z0-9-]+$")]
    # the publisher's OCDS prefix (ocds- and six characters): the round's ocid starts with it
    ocid_prefix: Annotated[str, Field(pattern=r"^ocds-[a-z0-9]{6}$")]


PHONE = r"^\+?[0-9][0-9 ()-]{4,28}[0-9]$"


class Contact(Strict):
    """The person who signs the round's letters and answers questions about them."""

    name: Annotated[str, Field(min_length=1, max_length=120)]
    role: Annotated[str, Field(min_length=1, max_length=120)]
    email: Annotated[str, Field(max_length=254)]
    phone: Annotated[str, Field(pattern=PHONE)] | None = None

    @field_validator("name", "role")
    @classmethod
    def _one_line(cls, value: str) -> str:
        value = " ".join(value.split())
        if not value:
            raise ValueError("must not be blank")
        return value

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        from cbflow.forms import is_email  # forms imports this module

        value = value.strip()
        if not is_email(value):
            raise ValueError(f"{value!r} is not an email address, like name@example.gov.uk")
        return value


class GrantOffer(Strict):
    """The terms a grant offer letter states. Without `conditions` the letter gives the standard
    ones, drawn from the implementation stage (returns, milestones, payments)."""

    conditions: list[Annotated[str, Field(min_length=1, max_length=1000)]] | None = None
    accept_within_days: Annotated[int, Field(gt=0, le=365)] = 28


SUPPORT_STAGES = ("eoi", "bid", "implementation", "adoption")
# the council register's types of council (cbflow/data/english-councils-2011.csv)
COUNCIL_TYPES = ("CC", "CTY", "LBO", "MD", "NMD", "UA")


class SupportOffer(Strict):
    """One offer of support to councils: who provides it, what it is, at which of a council's
    stages and for which kinds of council, whom to contact, and how many places it can take."""

    id: Annotated[str, Field(pattern=SLUG, max_length=80)]
    provider: Annotated[str, Field(min_length=1, max_length=120)]
    what: Annotated[str, Field(min_length=1, max_length=1000)]
    # offers of the same kind to one place overlap; by default an offer is a kind of its own
    kind: Annotated[str, Field(max_length=80)] = ""
    stages: Annotated[
        list[Literal["eoi", "bid", "implementation", "adoption"]], Field(min_length=1)
    ]
    # the council types it is for ("for" in the file); omitted: every council
    for_: list[str] | None = Field(default=None, alias="for")
    contact: Annotated[str, Field(max_length=254)]
    capacity: Annotated[int, Field(ge=1, le=10_000)]

    @field_validator("contact")
    @classmethod
    def _email(cls, value: str) -> str:
        from cbflow.forms import is_email  # forms imports this module

        value = value.strip()
        if not is_email(value):
            raise ValueError(f"{value!r} is not an email address, like name@example.gov.uk")
        return value

    @field_validator("for_")
    @classmethod
    def _council_types(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("list the council types it is for, or leave `for` out for every one")
        unknown = [t for t in value if t not in COUNCIL_TYPES]
        if unknown:
            raise ValueError(
                f"{unknown} are not council types of the register: use " + ", ".join(COUNCIL_TYPES)
            )
        return value

    @property
    def kind_name(self) -> str:
        return self.kind or self.id

    def is_for(self, council_type: str) -> bool:
        """Whether a council of this type may ask for it."""
        return self.for_ is None or council_type in self.for_


class Prospectus(Strict):
    format: Literal[1]
    id: Annotated[str, Field(pattern=SLUG, max_length=80)]
    title: str
    issued_by: str
    contact: Contact | None = None
    summary: str = ""
    timezone: str = "Europe/London"
    eligibility: Eligibility = Eligibility()
    applicants: Applicants = Applicants()
    sign_off: SignOff | None = None
    capacity: Capacity = Capacity()
    timetable: Timetable
    stages: Stages
    selection: Selection = Selection()
    open_data: OpenData | None = None
    grant_offer: GrantOffer = GrantOffer()
    partners: Partners | None = None
    reminders: Reminders = Reminders()
    reopening: Reopening | None = None
    extend_if_degraded: ExtendIfDegraded | None = None
    support: list[SupportOffer] = []

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"{value!r} is not a time zone name such as Europe/London") from exc
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Prospectus:
        stages, timetable = self.stages, self.timetable
        for name in ("eoi", "bid", "assessment"):
            window = getattr(timetable, name)
            if window is None:
                continue
            for key in ("opens", "closes"):
                problem = _wall_clock_problem(getattr(window, key), self.zone)
                if problem:
                    raise LocatedError(("timetable", name, key), problem)
            if window.opens_at(self.zone) >= window.closes_at(self.zone):
                raise LocatedError(("timetable", name, "closes"), "closes must be after opens")
        if timetable.decision:
            problem = _wall_clock_problem(timetable.decision.by, self.zone)
            if problem:
                raise LocatedError(("timetable", "decision", "by"), problem)
        if stages.bid and not timetable.bid:
            raise LocatedError(("timetable",), "stages.bid needs timetable.bid (its window)")
        if self.sign_off and "bid" in self.sign_off.stages and not stages.bid:
            raise LocatedError(("sign_off", "stages"), "there is no bid stage to sign off")
        if self.sign_off and "clarification" in self.sign_off.stages and not stages.assessment:
            raise LocatedError(
                ("sign_off", "stages"), "there is no assessment stage to ask clarifications in"
            )
        if self.reopening and "bid" in self.reopening.stages and not stages.bid:
            raise LocatedError(("reopening", "stages"), "there is no bid stage to reopen")
        if self.partners is not None and self.partners.stage == "bid" and stages.bid is None:
            raise LocatedError(
                ("partners", "stage"),
                "the round has no bid stage: ask for the partners at the eoi stage",
            )
        if timetable.bid and timetable.bid.opens_at(self.zone) < timetable.eoi.closes_at(self.zone):
            raise LocatedError(("timetable", "bid", "opens"), "bids must open after the EOI closes")
        for i, rule in enumerate(stages.eoi.sift):
            here = ("stages", "eoi", "sift", i, "check")
            if rule.check.confirmed_pooled_min is not None:
                if self.partners is None or self.partners.stage != "eoi":
                    raise LocatedError(
                        (*here, "confirmed_pooled_min"),
                        "confirmed_pooled_min needs partners asked at the expression of "
                        "interest (partners: {stage: eoi, ...})",
                    )
                continue
            assert rule.check.question is not None
            question = stages.eoi.form.question(rule.check.question)
            if question is None:
                raise LocatedError(
                    (*here, "question"),
                    f"{rule.check.question!r} is not a question of the EOI form",
                )
            if (rule.check.min_rows is not None or rule.check.max_rows is not None) and (
                question.type != "table"
            ):
                raise LocatedError(here, "min_rows and max_rows need a table question")
        known = {q.id for form in self.applicant_forms() for q in form.questions()}
        if stages.assessment:
            for i, criterion in enumerate(stages.assessment.criteria):
                unknown = [e for e in criterion.evidence if e not in known]
                if unknown:
                    raise LocatedError(
                        ("stages", "assessment", "criteria", i, "evidence"),
                        f"{unknown} are not questions of the EOI or bid forms",
                    )
        if self.capacity.budget_gbp is not None and self.support_question() is None:
            raise LocatedError(
                ("capacity", "budget_gbp"),
                "a budget needs a money question in the EOI or bid form for each application's "
                "request (name it with requested_by)",
            )
        if self.capacity.requested_by is not None:
            found = self.applicant_question(self.capacity.requested_by)
            if found is None or found[1].type != "money":
                raise LocatedError(
                    ("capacity", "requested_by"),
                    f"{self.capacity.requested_by!r} is not a money question "
                    "of the EOI or bid forms",
                )
        _unique([offer.id for offer in self.support], "support offer id")
        for i, offer in enumerate(self.support):
            missing = [
                stage
                for stage in offer.stages
                if (stage == "bid" and stages.bid is None)
                or (stage == "implementation" and stages.implementation is None)
                or (
                    stage == "adoption"
                    and (stages.replication is None or stages.replication.route != "open")
                )
            ]
            if missing:
                raise LocatedError(
                    ("support", i, "stages"),
                    f"{missing}: the round has no such stage (adoption needs "
                    "stages.replication.route: open)",
                )
        if stages.replication:
            unknown = [q for q in stages.replication.carry_over if q not in known]
            if unknown:
                raise LocatedError(
                    ("stages", "replication", "carry_over"),
                    f"{unknown} are not questions of the EOI or bid forms",
                )
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def forms(self) -> dict[str, Form]:
        """Each stage's form by stage name, in the order an applicant meets them."""
        forms = {"eoi": self.stages.eoi.form}
        if self.stages.bid:
            forms["bid"] = self.stages.bid.form
        if self.stages.implementation and self.stages.implementation.returns:
            forms["returns"] = self.stages.implementation.returns.form
        return forms

    def applicant_forms(self) -> list[Form]:
        """The forms a council fills in to apply: the EOI, then the bid if there is one."""
        return [self.stages.eoi.form] + ([self.stages.bid.form] if self.stages.bid else [])

    def support_question(self) -> str | None:
        """The id of the money question holding the support an application requests:
        `capacity.requested_by`, or else the first money question (outside tables) of the last
        applicant form that has one, since a request is made in the fullest form."""
        if self.capacity.requested_by:
            return self.capacity.requested_by
        for form in reversed(self.applicant_forms()):
            money = [q.id for q in form.questions() if q.type == "money"]
            if money:
                return money[0]
        return None

    def applicant_question(self, question_id: str) -> tuple[str, Question] | None:
        """Find a question of the EOI or bid form: (stage, question)."""
        for stage, form in zip(("eoi", "bid"), self.applicant_forms(), strict=False):
            question = form.question(question_id)
            if question is not None:
                return stage, question
        return None


def _unique(ids: list[str], what: str) -> None:
    seen: set[str] = set()
    for ident in ids:
        if ident in seen:
            raise ValueError(f"{what} {ident!r} is used twice")
        seen.add(ident)


# ---------------------------------------------------------------------------------------------
# Loading


def _plain(node: Any) -> Any:
    """ruamel's round-trip containers as plain dicts and lists (anchors already resolved)."""
    if isinstance(node, dict):
        return {key: _plain(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_plain(value) for value in node]
    return node


def _line_of(tree: Any, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the deepest key of `loc` that exists in the YAML tree."""
    line: int | None = None
    node = tree
    for part in loc:
        if isinstance(node, CommentedMap) and part in node:
            line = node.lc.key(part)[0] + 1
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
            line = node.lc.item(part)[0] + 1
            node = node[part]
    return line


def _is_union_tag(node: Any, part: Any) -> bool:
    """pydantic names the chosen question type in an error's path; the file has no such key."""
    return isinstance(node, CommentedMap) and part not in node and node.get("type") == part


def _key_path(loc: tuple[Any, ...], tree: Any) -> str:
    parts: list[str] = []
    node = tree
    for part in loc:
        if _is_union_tag(node, part):
            continue
        if isinstance(node, CommentedSeq) and isinstance(part, int):
            parts.append(f"[{part}]")
            node = node[part] if part < len(node) else None
        elif isinstance(node, CommentedMap) and part in node:
            parts.append(("." if parts else "") + str(part))
            node = node[part]
        elif isinstance(node, CommentedMap) or node is None:
            parts.append(("." if parts else "") + str(part))
            node = None
    return "".join(parts) or "(top level)"


class _Constructor(RoundTripConstructor):
    """Dates stay text until pydantic reads them, so that an impossible date such as
    2011-11-31 is reported at its key and line like any other fault."""


_Constructor.add_constructor("tag:yaml.org,2002:timestamp", _Constructor.construct_yaml_str)


# A prospectus is read in bounded time and memory whatever it holds: its size, how deep it
# nests, how long its numbers are and how far its aliases multiply it are checked before YAML
# builds anything from it (5.7 KB of aliases of aliases took 89 s and 2.4 GB to check).
MAX_CHARACTERS = 512 * 1024
MAX_DEPTH = 40  # lists and mappings within each other; the format needs about ten
MAX_DIGITS = 30  # of a number written in the file
MAX_VALUES = 100_000  # values once every alias is replaced by what it names (a form: ~1,000)


def _too_deep_in_brackets(text: str) -> int | None:
    """The line where lists and mappings written in brackets first nest more than MAX_DEPTH
    deep, counted without reading the file as YAML, whose scanner takes seconds on a few
    thousand brackets. Brackets inside text count too: prose never opens forty."""
    depth = 0
    line = 1
    for char in text:
        if char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return line
        elif char in "]}":
            depth = max(0, depth - 1)
        elif char == "\n":
            line += 1
    return None


def _bounded(text: str, path: str) -> None:
    """Refuse, with file and line, what would make reading the file slow or huge."""

    def refuse(line: int | str, problem: str) -> ProspectusError:
        return ProspectusError(path, [f"{path}:{line}: {problem}"])

    if len(text) > MAX_CHARACTERS:
        raise ProspectusError(
            path, [f"{path}: the file is longer than {MAX_CHARACTERS // 1024} K characters"]
        )
    nested = f"lists and mappings are nested more than {MAX_DEPTH} deep"
    line = _too_deep_in_brackets(text)
    if line is not None:
        raise refuse(line, nested)
    # the values each open list or mapping holds so far, aliases counted as what they name
    open_: list[tuple[str | None, int]] = [(None, 0)]
    named: dict[str, int] = {}  # anchor: the values it names

    def add(values: int, line: int) -> None:
        anchor, held = open_[-1]
        open_[-1] = (anchor, held + values)
        if sum(held for _, held in open_) > MAX_VALUES:
            raise refuse(line, f"its aliases (*) repeat it to more than {MAX_VALUES:,} values")

    for event in YAML(typ="rt").parse(text):
        line = event.start_mark.line + 1
        if isinstance(event, AliasEvent):
            add(named.get(str(event.anchor), 1), line)
        elif isinstance(event, CollectionStartEvent):
            open_.append((event.anchor, 1))
            if len(open_) - 1 > MAX_DEPTH:
                raise refuse(line, nested)
        elif isinstance(event, CollectionEndEvent):
            anchor, held = open_.pop()
            if anchor:
                named[anchor] = held
            add(held, line)
        elif isinstance(event, ScalarEvent):
            if event.style is None and _long_number(event.value):
                raise refuse(line, f"a number of more than {MAX_DIGITS} digits")
            if event.anchor:
                named[event.anchor] = 1
            add(1, line)


def _long_number(value: str) -> bool:
    digits = sum(c.isdigit() for c in value[: MAX_DIGITS * 4])
    return digits > MAX_DIGITS and _NUMBER.match(value) is not None


_NUMBER = re.compile(r"[-+]?[0-9_]+(\.[0-9_]*)?([eE][-+]?[0-9]+)?$")


def parse(text: str, path: str = "<prospectus>") -> Prospectus:
    """Parse and validate prospectus text. Raises ProspectusError naming file, line and key."""
    yaml = YAML(typ="rt")
    yaml.Constructor = _Constructor
    try:
        _bounded(text, path)
        tree = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else "?"
        raise ProspectusError(path, [f"{path}:{line}: not valid YAML: {exc.problem}"]) from None
    except ReaderError as exc:  # a character YAML does not allow (a control character)
        line = text.count("\n", 0, max(exc.position, 0)) + 1
        problem = f"the character U+{exc.character:04X} is not allowed in a YAML file"
        raise ProspectusError(path, [f"{path}:{line}: {problem}"]) from None
    except (YAMLError, ValueError, RecursionError) as exc:  # what YAML could not make of it
        raise ProspectusError(path, [f"{path}: not valid YAML: {exc}"]) from None
    if not isinstance(tree, CommentedMap):
        raise ProspectusError(
            path, [f"{path}:1: a prospectus is a mapping of keys (format, id, ...)"]
        )
    try:
        return Prospectus.model_validate(_plain(tree))
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = tuple(error["loc"])
            cause = (error.get("ctx") or {}).get("error")
            if isinstance(cause, LocatedError):
                loc = (*loc, *cause.loc)
            if error["type"] == "union_tag_invalid":
                loc = (*loc, "type")
            line = _line_of(tree, loc) or 1
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = "unknown key (is it misspelt?)"
            elif error["type"] == "missing":
                message = "required key is missing"
            problems.append(f"{path}:{line}: {_key_path(loc, tree)}: {message}")
        raise ProspectusError(path, problems) from None


def load(path: Path | str) -> Prospectus:
    """Read and validate a prospectus file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProspectusError(str(path), [f"{path}: cannot read the file: {exc}"]) from None
    return parse(text, str(path))


def format_schema() -> dict[str, Any]:
    """JSON Schema of the prospectus file format."""
    schema = Prospectus.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "cbflow prospectus, format 1"
    return schema
