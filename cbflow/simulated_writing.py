"""What simulated councils write: answers that read as a council officer's, for any question.

Nothing here knows a prospectus. A question's label and hint say what it is about (its topics:
partnership, governance, savings ...); sentences are drawn from a bank kept per topic and filled
in with the council's own particulars: its name, area, region, neighbouring councils and the
public services that serve it (its police force, primary care trust, probation trust ...).
Stronger councils write fuller, more specific answers; weaker ones write less, and vaguer.
"""

from __future__ import annotations

import csv
import random
import re
from dataclasses import dataclass
from decimal import Decimal
from functools import cache

from cbflow.services.councils import REGISTER

# ---------------------------------------------------------------------------------------------
# The council and the public services around it


# the police forces of England in 2011, by the upper-tier councils they serve (a district is
# served by its county's force); the London boroughs are the Metropolitan Police's
POLICE = {
    "Avon and Somerset Constabulary": "BAS BST NSM SGC SOM",
    "Bedfordshire Police": "BDF CBF LUT",
    "Cambridgeshire Constabulary": "CAM PTE",
    "Cheshire Constabulary": "CHE CHW HAL WRT",
    "City of London Police": "LND",
    "Cleveland Police": "HPL MDB RCC STT",
    "Cumbria Constabulary": "CMA",
    "Derbyshire Constabulary": "DBY DER",
    "Devon and Cornwall Police": "DEV CON IOS PLY TOB",
    "Dorset Police": "DOR POL BMH",
    "Durham Constabulary": "DUR DAL",
    "Essex Police": "ESS SOS THR",
    "Gloucestershire Constabulary": "GLS",
    "Greater Manchester Police": "BOL BUR MAN OLD RCH SLF SKP TAM TRF WGN",
    "Hampshire Constabulary": "HAM IOW POR STH",
    "Hertfordshire Constabulary": "HRT",
    "Humberside Police": "ERY KHL NEL NLN",
    "Kent Police": "KEN MDW",
    "Lancashire Constabulary": "LAN BBD BPL",
    "Leicestershire Police": "LEC LCE RUT",
    "Lincolnshire Police": "LIN",
    "Merseyside Police": "KWL LIV SFT SHN WRL",
    "Norfolk Constabulary": "NFK",
    "Northamptonshire Police": "NTH",
    "Northumbria Police": "GAT NET NTY STY SND NBL",
    "North Yorkshire Police": "NYK YOR",
    "Nottinghamshire Police": "NTT NGM",
    "South Yorkshire Police": "BNS DNC ROT SHF",
    "Staffordshire Police": "STS STE",
    "Suffolk Constabulary": "SFK",
    "Surrey Police": "SRY",
    "Sussex Police": "ESX WSX BNH",
    "Thames Valley Police": "BKM OXF MIK BRC RDG SLG WBK WNM WOK",
    "Warwickshire Police": "WAR",
    "West Mercia Police": "WOR HEF SHR TFW",
    "West Midlands Police": "BIR COV DUD SAW SOL WLL WLV",
    "West Yorkshire Police": "BRD CLD KIR LDS WKF",
    "Wiltshire Police": "WIL SWD",
}
FORCE_OF = {code: force for force, codes in POLICE.items() for code in codes.split()}
LONDON_FORCE = "Metropolitan Police Service"


@dataclass(frozen=True)
class Registered:
    code: str
    name: str
    official_name: str
    type: str
    county: str | None
    region: str


@cache
def register() -> dict[str, Registered]:
    """The council register, read once: names, types, counties and regions by code."""
    with REGISTER.open(newline="", encoding="utf-8") as handle:
        return {
            row["local-authority-code"]: Registered(
                row["local-authority-code"],
                row["nice-name"],
                row["official-name"],
                row["local-authority-type"],
                row["county-la"] or None,
                row["region"],
            )
            for row in csv.DictReader(handle)
        }


def _plain(name: str) -> str:
    """A council's short name as an area is called: "Dorset County" is Dorset."""
    name = re.sub(r" County$", "", name)
    return re.sub(r"^City of (?!London)", "", name)


FIRST_NAMES = [
    "Sarah",
    "Helen",
    "Claire",
    "Joanne",
    "Rachel",
    "Fiona",
    "Alison",
    "Karen",
    "Ruth",
    "Louise",
    "Catherine",
    "Nicola",
    "Amanda",
    "Jane",
    "Emma",
    "David",
    "Andrew",
    "Paul",
    "Mark",
    "Richard",
    "Stephen",
    "Martin",
    "Simon",
    "Ian",
    "Graham",
    "Neil",
    "Peter",
    "Jonathan",
    "Michael",
    "Robert",
    "Anjali",
    "Imran",
    "Priya",
    "Tariq",
]
SURNAMES = [
    "Thompson",
    "Walker",
    "Roberts",
    "Clarke",
    "Harrison",
    "Patel",
    "Wright",
    "Hughes",
    "Edwards",
    "Green",
    "Hall",
    "Wood",
    "Jackson",
    "Turner",
    "Hill",
    "Moore",
    "Cooper",
    "Ward",
    "Morris",
    "Bennett",
    "Khan",
    "Shaw",
    "Lloyd",
    "Marshall",
    "Fletcher",
    "Barker",
    "Holmes",
    "Dixon",
    "Begum",
    "Ahmed",
    "Chapman",
    "Pearson",
    "Webb",
    "Lewis",
]


@dataclass(frozen=True)
class Place:
    """A council as its officers write about it."""

    code: str
    name: str
    official_name: str
    type: str
    region: str
    area: str  # the county for a district, else the council's own area
    police: str
    neighbours: tuple[str, ...]  # official names of councils nearby (same county or region)
    contact: tuple[str, str]  # the officer who writes the application: first name, surname

    @property
    def domain(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-") + ".gov.uk"

    @property
    def force_area(self) -> str:
        """The area of its police force: "Devon and Cornwall", "Thames Valley"."""
        return re.sub(r" (Police|Constabulary)$", "", self.police)

    @property
    def fire(self) -> str:
        if self.police in (LONDON_FORCE, "City of London Police"):
            return "London Fire Brigade"
        return f"{self.force_area} Fire and Rescue Service"

    @property
    def nhs(self) -> str:
        return f"NHS {self.area}"

    @property
    def probation(self) -> str:
        if self.police in (LONDON_FORCE, "City of London Police"):
            return "London Probation Trust"
        return f"{self.force_area} Probation Trust"

    def neighbour(self, index: int = 0) -> str:
        if not self.neighbours:
            return f"the other councils of the {self.region}"
        return self.neighbours[index % len(self.neighbours)]


def _region_near(me: Registered, county: Registered | None, force: str) -> str:
    """The region of a council the register gives none (some abolished since): its county's,
    or that of another council its police force serves."""
    if county is not None and county.region:
        return county.region
    mates = [c.region for c in register().values() if FORCE_OF.get(c.code) == force and c.region]
    return mates[0] if mates else "England"


def place_of(code: str, name: str = "", region: str = "", type_: str = "") -> Place:
    """The council `code` with its area, police force and neighbours (from the register; a
    council missing from it is described from the name, region and type given)."""
    known = register()
    me = known.get(code) or Registered(code, name, f"{name} Council", type_, None, region)
    county = known.get(me.county) if me.county else None
    area = _plain(county.name if county else me.name)
    force = FORCE_OF.get(county.code if county else me.code)
    if force is None:
        force = LONDON_FORCE if me.type == "LBO" else f"{area} Police"
    region = me.region or _region_near(me, county, force)
    if county is not None:  # a district: its county first, then the county's other districts
        near = [county] + [c for c in known.values() if c.county == county.code and c != me]
    elif me.type == "CTY":
        near = [c for c in known.values() if c.county == me.code]
    else:
        near = [
            c
            for c in known.values()
            if c.region == me.region and c.code != me.code and c.type == me.type
        ] or [c for c in known.values() if c.region == me.region and c.type != "NMD" and c != me]
    rng = random.Random(code)
    if county is None:
        rng.shuffle(near)
    first = rng.choice(FIRST_NAMES)
    return Place(
        code=me.code,
        name=me.name,
        official_name=me.official_name,
        type=me.type,
        region=region,
        area=area,
        police=force,
        neighbours=tuple(c.official_name for c in near[:6]),
        contact=(first, rng.choice(SURNAMES)),
    )


# ---------------------------------------------------------------------------------------------
# Partner organisations, by sector


# sector -> words that name it in a question's options ("Fire and rescue", "Voluntary and
# community sector", "Jobcentre Plus" ...)
SECTOR_WORDS = {
    "police": ("police", "constabular"),
    "health": ("health", "nhs", "primary care", "clinical"),
    "fire": ("fire",),
    "jobcentre": ("jobcentre", "employment", "work and pensions", "dwp"),
    "probation": ("probation", "offend", "justice"),
    "voluntary": ("voluntary", "community sector", "charit", "third sector", "residents"),
    "business": ("business", "private", "employer"),
    "education": ("education", "school", "college"),
    "housing": ("housing", "landlord"),
    "council": ("council", "local authorit", "local government"),
}


@dataclass(frozen=True)
class Partner:
    name: str
    sector: str


def partners_of(place: Place, *, neighbourhood: bool = False) -> list[Partner]:
    """The organisations a council would name as partners, most important first."""
    partners = [
        Partner(place.police, "police"),
        Partner(place.nhs, "health"),
        Partner("Jobcentre Plus", "jobcentre"),
        Partner(place.probation, "probation"),
        Partner(place.fire, "fire"),
        Partner(f"{place.area} Council for Voluntary Service", "voluntary"),
        Partner(place.neighbour(0), "council"),
        Partner(f"{place.name} College", "education"),
        Partner(f"{place.name} Homes", "housing"),
        Partner(f"{place.area} Chamber of Commerce", "business"),
        Partner(place.neighbour(1), "council"),
        Partner(f"{place.name} Schools Forum", "education"),
    ]
    if neighbourhood:
        partners = [
            Partner(f"{place.name} Residents' Association", "voluntary"),
            Partner(f"{place.name} Homes", "housing"),
            partners[0],
            partners[1],
            Partner(f"{place.name} Schools Forum", "education"),
            Partner(f"{place.area} Council for Voluntary Service", "voluntary"),
            partners[2],
        ]
    return list(dict.fromkeys(partners))  # a council neighbouring itself twice is named once


def sector_option(sector: str, options: list[str]) -> str | None:
    """The option of a choice that names `sector` ("Police" for the police), if any."""
    words = SECTOR_WORDS.get(sector, ())
    return next((o for o in options if any(w in o.lower() for w in words)), None)


def is_sector_choice(options: list[str]) -> bool:
    """Whether a choice's options are sectors of partner organisations."""
    return sum(1 for s in SECTOR_WORDS if sector_option(s, options)) >= 2


ROLES = {
    "police": "Neighbourhood policing and joint work on anti-social behaviour and offending",
    "health": "Commissions community health services and joins up care with the council",
    "jobcentre": "Work coaches placed in the family teams; routes into employment",
    "probation": "Supervision of offenders and work with their families",
    "fire": "Home safety visits that reach vulnerable households",
    "voluntary": "Brings in local charities and community groups, and volunteers' time",
    "council": "Children's services, housing and adult social care for its area",
    "education": "Attendance, learning and skills for young people and adults",
    "housing": "Tenancy support, and early warning of families at risk of eviction",
    "business": "Apprenticeships and work placements with local employers",
}
SERVICES = {
    "police": "Neighbourhood policing",
    "health": "Community health services",
    "jobcentre": "Employment support",
    "probation": "Offender management",
    "fire": "Prevention and home safety",
    "voluntary": "Community grants",
    "council": "Family support and social care",
    "education": "Adult skills and attendance",
    "housing": "Tenancy sustainment",
    "business": "Apprenticeships",
}
# a partner's yearly contribution to a pooled budget, in thousands of pounds (low, high)
CONTRIBUTION = {
    "police": (150, 1200),
    "health": (400, 4000),
    "jobcentre": (100, 900),
    "probation": (80, 600),
    "fire": (50, 300),
    "voluntary": (20, 200),
    "council": (500, 5000),
    "education": (50, 500),
    "housing": (100, 800),
    "business": (10, 150),
}
SCALE = {"CTY": 1.6, "MD": 1.3, "UA": 1.0, "LBO": 1.0, "CC": 0.4, "NMD": 0.35}


UNIVERSITY_CITY = {
    "North East": "Newcastle",
    "North West": "Manchester",
    "Yorkshire and The Humber": "Leeds",
    "East Midlands": "Nottingham",
    "West Midlands": "Birmingham",
    "East of England": "East Anglia",
    "London": "London",
    "South East": "Sussex",
    "South West": "Exeter",
}


def person(rng: random.Random) -> str:
    return f"{rng.choice(FIRST_NAMES)} {rng.choice(SURNAMES)}"


# ---------------------------------------------------------------------------------------------
# Topics of a question, and the sentences written on each


TOPIC_WORDS = {
    "partnership": r"partner|partnership|together|organisations|agencies|collaborat|joint",
    "governance": r"governance|decision|decide|accountab|account for|board|sign.off",
    "leadership": r"\blead\b|leadership|resourc|capacity|drive|chief executive|political",
    "finance": r"saving|budget|pooled|money|spend|cost|financ|funding|pay for|value|support",
    "outcomes": r"outcome|measure|achieve|result|success|impact|difference|change",
    "data": r"\bdata\b|information|sharing|share",
    "families": r"famil|children|young people|parent|troubled",
    "employment": r"employment|\bwork\b|jobs|skills|worklessness|jobcentre",
    "health": r"health|care|well.being|nhs",
    "crime": r"crime|offend|safety|police|anti.social|justice|probation",
    "housing": r"housing|homes|homeless|tenan",
    "risks": r"risk|barrier|rules|condition|obstacle|remove|recover|delay|stop|go wrong|threat",
    "evidence": r"evidence|learn|experience|total place|pilot",
    "replication": r"replicat|other areas|other places|elsewhere|spread|adopt",
    "residents": r"resident|communit|involve|neighbourhood|people who live|volunteer",
    "timetable": r"\bwhen\b|timetable|milestone|start|months|next year",
    "progress": r"happened|this quarter|this period|this half.year|this month|progress",
    "ambition": r"^what would\b(?=.*\bchange)|ambition|vision|\baim|achieve|change",
}

# Placeholders: {name} the council's short name; {official} its official name; {area};
# {region}; {neighbour} {neighbour2} councils nearby; {police} {nhs} {probation} {fire};
# {scheme} what the round funds; {subject} what the question asks about; {period} the period a
# return reports on; {families}, {residents}, {pct}, {pct2}, {money}, {subject_money},
# {team_money}, {year}, {baseline_year}, {university}: figures and names of the council's own
SENTENCES: dict[str, list[str]] = {
    "partnership": [
        "{official}, {police}, {nhs}, {probation} and Jobcentre Plus have each agreed to take "
        "part, and their chief officers sit on the partnership board.",
        "We already commission several services jointly with {nhs}, and {scheme} "
        "builds on that working relationship.",
        "{neighbour} has agreed to work with us so that families who move across the boundary "
        "keep the same key worker.",
        "The voluntary and community sector is represented through {area} Council for "
        "Voluntary Service, which will help us reach families who do not come to statutory "
        "services.",
        "Each partner has named a senior officer who is accountable for its contribution and "
        "attends the monthly programme group.",
        "Partners signed a memorandum of understanding in the autumn that sets out what each "
        "of them will put in.",
        "{police} has seconded a chief inspector to the programme team for the first year.",
        "Our partnership is built on the existing local strategic partnership, which has met "
        "every quarter since 2008.",
    ],
    "governance": [
        "A partnership board chaired by the Leader of {official} will take the decisions on "
        "the pooled budget.",
        "The board includes the chief officers of {police}, {nhs} and {probation}, and a "
        "representative of the voluntary sector.",
        "Each partner keeps its own statutory responsibilities, and the board agrees "
        "delegations through a written partnership agreement.",
        "{official} will act as the accountable body, and its Section 151 officer will report "
        "on the pooled budget to the board every quarter.",
        "Spending decisions above £250,000 will go to the board; smaller decisions are "
        "delegated to the programme director.",
        "The council's audit committee and the partners' own audit arrangements will review "
        "the pooled budget every year.",
        "Decisions and papers of the board will be published on {name}'s website.",
    ],
    "leadership": [
        "The Leader and the Chief Executive of {official} have both signed this submission, "
        "and the programme reports directly to the Chief Executive.",
        "We will appoint a programme director for two years, supported by a team of four "
        "officers drawn from the partners.",
        "Cabinet members for children, health and community safety will act as political "
        "champions for the programme.",
        "The council has set aside £{team_money} of its own to fund the programme team and the "
        "analysis in the design year.",
        "Partners will second staff with skills in commissioning, finance and performance "
        "analysis.",
        "Senior managers from each partner will take part in a joint leadership programme "
        "during the first six months.",
    ],
    "finance": [
        "We estimate that some £{money} a year is spent across the partners on the services in "
        "scope.",
        "Our analysis suggests that joining up these services could save between {pct} and "
        "{pct2} per cent of that spending within three years.",
        "Savings will be shared between the partners in proportion to what each puts into the "
        "pooled budget.",
        "Part of the savings will be reinvested in early help, so that fewer families reach "
        "crisis point.",
        "The business case will be tested with the partners' finance directors before the "
        "budget is pooled.",
        "Support from government would pay for analysts, a programme manager and the cost of "
        "redesigning the first services.",
        "We will track cashable and non-cashable savings separately, and report both to the board.",
    ],
    "outcomes": [
        "We want fewer families in crisis, more adults in work and fewer young people "
        "offending by the end of {year}.",
        "Each outcome has a baseline taken from partners' data for {baseline_year}, and a "
        "target agreed by the board.",
        "We will measure school attendance, exclusions, youth offending and the number of "
        "adults claiming out-of-work benefits.",
        "Progress will be reported to the partnership board every quarter, using a single "
        "set of measures agreed by all partners.",
        "The University of {university} has agreed to evaluate the programme independently.",
        "We expect to work with {families} families in the first two years and to see "
        "measurable change for at least half of them.",
        "Residents' own views of their neighbourhood will be surveyed every year alongside "
        "the service measures.",
    ],
    "data": [
        "Partners have signed an information-sharing protocol that allows case-level data to "
        "be matched across the council, {police} and {nhs}.",
        "A shared analytical team will bring together data from children's services, health, "
        "the police and Jobcentre Plus.",
        "Data will be shared under a clear legal basis, and families will be told how their "
        "information is used.",
        "We have already matched data on {families} households, which showed that a small "
        "number of families account for a large share of spending.",
    ],
    "families": [
        "We have identified around {families} families in {name} with multiple and complex needs.",
        "Each family will have a single key worker who coordinates the help they get from "
        "every service.",
        "Our family intervention project has shown that persistent, practical support can "
        "turn families around.",
        "Children's centres and schools will refer families early, before problems become "
        "entrenched.",
        "Work with each family starts with a joint assessment agreed with the family themselves.",
    ],
    "employment": [
        "Jobcentre Plus will place work coaches in our family teams so that adults get help "
        "into work alongside other support.",
        "We will work with {name} College and local employers to offer training and "
        "apprenticeships.",
        "Getting adults into sustained work is one of the programme's main measures of success.",
        "The programme will link with the Work Programme providers operating in the {region}.",
    ],
    "health": [
        "{nhs} will join up community health services with the council's adult social care.",
        "Health visitors and school nurses will be part of the teams working with families.",
        "We will pool budgets for mental health and substance misuse services, where needs "
        "often overlap.",
        "The shadow health and well-being board will oversee the health outcomes of the programme.",
    ],
    "crime": [
        "{police} and the youth offending service will work with the families whose children "
        "are most at risk of offending.",
        "{probation} will bring its work with adult offenders into the family teams.",
        "We aim to reduce anti-social behaviour in the neighbourhoods where it is most "
        "concentrated.",
        "Neighbourhood policing teams will share information with the family teams every week.",
    ],
    "housing": [
        "Housing officers will flag families at risk of eviction so that help reaches them "
        "before they lose their home.",
        "{name} Homes will take part in the programme and provide tenancy support.",
        "We will align the council's homelessness prevention budget with the pooled budget.",
    ],
    "risks": [
        "The main risk is that partners' own budget pressures make it harder to keep money "
        "in the pool, and the partnership agreement sets out how any partner may leave.",
        "Ring-fenced grants and separate reporting requirements make it hard to pool money; "
        "we ask government to remove them for the services in scope.",
        "We would like government departments to agree to a single set of outcome measures "
        "instead of separate returns.",
        "A risk register is kept by the programme team and reviewed by the board every month.",
        "Where a workstream falls behind, the programme director agrees a recovery plan with "
        "the lead partner and reports it to the board.",
    ],
    "evidence": [
        "Our Total Place pilot showed how much is spent on the same families by different "
        "services, often without anyone knowing.",
        "We learned that a clear shared picture of spending is what persuades partners to "
        "pool budgets.",
        "The evaluation of our family intervention project showed falls in anti-social "
        "behaviour and school absence.",
        "We also learned that the work needs dedicated staff time: it cannot be done on top "
        "of the day job.",
    ],
    "replication": [
        "We will document the model as we go, including the partnership agreement, the "
        "business case and the measures, so that other councils can adopt it.",
        "{neighbour} has already asked to follow our approach once the first year is complete.",
        "We will share our learning through the {region} improvement network and with "
        "councils of a similar type.",
        "The approach does not depend on local circumstances: any council with willing "
        "partners could use it.",
        "Officers from other places will be welcome to visit the family teams and the "
        "programme board.",
    ],
    "residents": [
        "Residents have been involved through a series of open meetings and a survey that "
        "reached over {residents} households.",
        "A residents' panel will sit alongside the partnership board and have a say in how "
        "the money is spent.",
        "Local councillors and community groups have helped us identify the issues that "
        "matter most in the area.",
        "We will train volunteers from the community to take part in decisions on the "
        "neighbourhood budget.",
    ],
    "timetable": [
        "We can start as soon as the programme team is in place, which we expect to take "
        "about two months.",
        "The design work will take six months, followed by a phased start of the new services.",
        "Key milestones are agreed with partners and reported to the board every quarter.",
    ],
    "progress": [
        "During {period} the programme board met twice and agreed the next stage of the "
        "delivery plan.",
        "The joint team made good progress on redesigning services, and partners confirmed "
        "their contributions for the coming year.",
        "We started work with a further group of families, and early results are encouraging.",
        "Information sharing between the council and {police} is now working routinely.",
        "One workstream fell behind because of a delay in recruitment, which has since been "
        "resolved.",
    ],
    "ambition": [
        "Our ambition is to join up public spending in {name} around the needs of people and "
        "places, rather than around the structures of individual organisations.",
        "By working together, {official} and its partners want to deliver better services at "
        "lower cost.",
        "We want every family that needs help to get it early, from one team, with one plan.",
        "We aim to make {name} a place where fewer people depend on public services because "
        "they get the right help at the right time.",
        "{scheme} would let us shift money from crisis services to prevention.",
    ],
    "subject": [
        "Our approach to {subject} starts from what residents of {name} have told us they need.",
        "We will redesign {subject} with partners, so that services are planned together "
        "rather than separately.",
        "{official} already spends about £{subject_money} a year on {subject}, and we believe that "
        "money could go further.",
        "We will test the new approach to {subject} in two areas first, and extend it across "
        "{name} if it works.",
        "Partners including {police} and {nhs} have agreed to help shape {subject} in the "
        "{region}.",
    ],
    "generic": [
        "{official} and its partners have agreed this approach and are committed to it.",
        "We will build on work already under way in {name}, rather than starting from scratch.",
        "The programme team will report progress to the partnership board every quarter.",
        "We will involve residents and front-line staff in designing the new arrangements.",
        "Our plans have been discussed with {neighbour}, which supports them.",
    ],
}
# what a weaker council writes: true, but general, and the same for any council
VAGUE = [
    "We are committed to working with our partners.",
    "This will help local people and improve services.",
    "We have good relationships with partners in the area.",
    "We will make sure the work is properly managed.",
    "The council has experience of working in partnership.",
    "We will develop these plans further with partners.",
    "Details will be agreed at a later stage.",
    "This is a priority for the council.",
]
# related topics to draw on once a question's own are used up
RELATED = {
    "partnership": ["governance", "data"],
    "governance": ["partnership", "risks", "finance"],
    "leadership": ["governance", "partnership"],
    "finance": ["governance", "outcomes"],
    "outcomes": ["families", "employment", "data"],
    "ambition": ["families", "finance", "outcomes", "health", "crime"],
    "residents": ["partnership", "outcomes"],
    "progress": ["outcomes", "risks"],
    "risks": ["governance"],
    "replication": ["evidence", "outcomes"],
    "evidence": ["outcomes"],
    "subject": ["partnership", "outcomes"],
}

# short answers by topic, for a one-line question nothing more specific fits
PHRASES = {
    "families": "Whole-family support through a single key worker",
    "employment": "Employment and skills support for adults out of work",
    "health": "Joined-up health and social care",
    "crime": "Reducing offending and anti-social behaviour",
    "housing": "Tenancy support and homelessness prevention",
    "finance": "Pooled budget held by the lead council",
    "governance": "Partnership board chaired by the council's Leader",
    "partnership": "Joint commissioning with local partners",
    "outcomes": "Fewer families in crisis and more adults in work",
    "data": "Shared case-level data under an agreed protocol",
    "residents": "Residents' panel with a say over the budget",
}


def topics_of(label: str, hint: str | None = None) -> list[str]:
    """The topics a question asks about, the label's first, in a fixed order."""
    found: list[str] = []
    for text in (label.lower(), (hint or "").lower()):
        at = {}
        for topic, pattern in TOPIC_WORDS.items():
            match = re.search(pattern, text)
            if match and topic not in found:
                at[topic] = match.start()
        found += sorted(at, key=lambda topic: at[topic])  # in the order the question asks
    return found


SUBJECT = re.compile(
    r"(?:approach to|plans? for|proposals? for|work on|strategy for|arrangements for)\s+"
    r"([a-z][a-z ,'-]{2,60}?)\s*(?:[?.:]|$| in | for | over )",
    re.IGNORECASE,
)


def subject_of(label: str) -> str | None:
    """What a question asks about, when it says so: "your approach to rural transport"."""
    found = SUBJECT.search(label)
    if not found:
        return None
    subject = found.group(1).strip(" ,").lower()
    return re.sub(r"^(your|the|our)\s+", "", subject) or None


def _fill(template: str, values: dict[str, str]) -> str:
    text = template.format(**values)
    return text[0].upper() + text[1:]


def sentences_for(
    label: str,
    hint: str | None,
    place: Place,
    rng: random.Random,
    *,
    strength: float,
    values: dict[str, str],
    used: set[str] | None = None,
) -> list[str]:
    """Every sentence a council of this strength might write for a question, in the order it
    would write them: its topics' sentences first, then related topics', then general ones;
    weaker councils put vaguer sentences among them. Sentences in `used` (written already for
    the same form) are left out while others remain."""
    topics = topics_of(label, hint)
    subject = subject_of(label)
    if subject:
        topics.insert(0, "subject")
    values = {**values, "subject": subject or values["scheme"]}
    order: list[str] = list(topics)
    for topic in topics:
        order += [t for t in RELATED.get(topic, []) if t not in order]
    if "generic" not in order:
        order.append("generic")
    written: list[str] = []
    for topic in order:
        bank = list(SENTENCES[topic])
        if topic != order[0]:
            rng.shuffle(bank)
        written += [_fill(t, values) for t in bank]
    vague = list(VAGUE)
    rng.shuffle(vague)
    mixed: list[str] = []
    for sentence in written:
        if mixed and vague and rng.random() < (1 - strength) ** 2:
            mixed.append(vague.pop())
        mixed.append(sentence)
    fresh = [sentence for sentence in mixed if sentence not in (used or set())]
    return list(dict.fromkeys(fresh or mixed))  # nothing said twice in one form, if it can


def words(text: str) -> int:
    return len(text.split())


def compose(
    sentences: list[str], *, target_words: int, max_words: int | None, max_chars: int | None
) -> str:
    """Whole sentences up to `target_words`, never beyond the limits."""
    chosen: list[str] = []
    count = 0
    for sentence in sentences:
        n = words(sentence)
        if max_words is not None and count + n > max_words:
            continue
        candidate = _paragraphs([*chosen, sentence])
        if max_chars is not None and len(candidate) > max_chars:
            continue
        chosen.append(sentence)
        count += n
        if count >= target_words:
            break
    if not chosen:  # not even one sentence fits: the shortest, cut at a word, as a sentence
        shortest = min(sentences, key=len)
        limit = min(max_chars or len(shortest), len(shortest))
        cut = shortest[:limit].rsplit(" ", 1)[0] if limit < len(shortest) else shortest
        cut = cut.rstrip(" ,;.")
        if max_words is not None:
            cut = " ".join(cut.split()[:max_words]).rstrip(" ,;.")
        return (cut + ".")[: max_chars or None] if cut else "Yes."
    return _paragraphs(chosen)


def _paragraphs(sentences: list[str]) -> str:
    # one paragraph: the documents show an answer's line breaks as commas
    return " ".join(sentences)


def money_words(amount: Decimal) -> str:
    """£ figures as a council writes them in prose: 2.4 million, 350,000."""
    if amount >= 1_000_000:
        return f"{amount / 1_000_000:.1f} million".replace(".0 ", " ")
    return f"{amount:,.0f}"


def sentence_pattern(template: str) -> re.Pattern[str]:
    """A template as a pattern that matches any sentence written from it."""
    parts = re.split(r"\{[a-z_0-9]+\}", template)
    body = ".+?".join(re.escape(p) for p in parts)
    return re.compile(f"^{body}$", re.IGNORECASE | re.DOTALL)


def all_templates() -> list[str]:
    return [t for bank in SENTENCES.values() for t in bank] + VAGUE


# ---------------------------------------------------------------------------------------------
# What the panel and programme staff write


JUDGED = {
    "high": [
        "{council} makes a convincing case on {criterion}: the commitments are specific, "
        "named partners have signed up to them and the evidence supports the claims made.",
        "{council} gives a full account of {criterion}: it sets out clear plans with "
        "figures, and the partners' own commitments are evident.",
        "The evidence on {criterion} is thorough. {council} explains what will change, who "
        "is responsible and how progress will be checked.",
    ],
    "middle": [
        "{council} addresses {criterion} adequately. The main elements are in place, but some "
        "of the detail on delivery is still to be worked out.",
        "A reasonable account of {criterion}. The plans from {council} are credible, though "
        "the partners' commitments are described in general terms.",
        "{council} meets the guidance on {criterion} in most respects; the evidence would be "
        "stronger with firmer figures and dates.",
    ],
    "low": [
        "The bid from {council} says little about {criterion}. The statements are general and "
        "few are backed by evidence or by partners' commitments.",
        "Limited evidence on {criterion}. {council} describes its intentions, but not how they "
        "will be delivered or who will be responsible.",
        "{council} does not yet show enough on {criterion}: key questions in the guidance are "
        "left unanswered.",
    ],
}


def justification(
    criterion: str, place: Place, standing: float, label: str | None, turn: int
) -> str:
    """An assessor's reasons for a score, as a panel member would write them. `standing` is the
    score's place on the scale, 0 (lowest) to 1 (highest); assessors of one application take
    different `turn`s, so that no two of them write alike."""
    band = "high" if standing >= 0.7 else "middle" if standing >= 0.4 else "low"
    bank = JUDGED[band]
    text = bank[turn % len(bank)].format(council=place.name, criterion=criterion.lower())
    text = text[0].upper() + text[1:]
    return f"{label}. {text}" if label else text


def _listed(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def referral_reason(rules: list[str], council: str, *, passed: bool) -> str:
    """Programme staff's reason for their decision on a referred expression of interest."""
    quoted = _listed([f"\u201c{rule.rstrip('.')}\u201d" for rule in rules] or ["the sift"])
    rule_word = "rule" if len(rules) == 1 else "rules"
    if passed:
        return (
            f"{council} supplied further evidence on request, and the expression of interest "
            f"now meets the {rule_word} {quoted}. It passes the sift."
        )
    return (
        f"The expression of interest does not meet the {rule_word} {quoted}, and the evidence "
        f"{council} supplied on request does not change that. It does not pass the sift."
    )


def moderation_reason(score: int, given: list[int]) -> str:
    """The moderation panel's reason for the score it agreed."""
    scores = _listed([str(s) for s in sorted(given)])
    return (
        f"The moderation panel discussed the assessors' scores of {scores} and agreed {score}, "
        "the middle view, having read the evidence again."
    )
