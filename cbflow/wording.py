"""Words for letters and reasons: counts and ranks in words, lists, and the names of bodies as
sentences use them. Plain string functions, light enough for the services to import."""

from __future__ import annotations

from collections.abc import Sequence

_NUMBERS = (
    "no",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
)
_ORDINALS = (
    "",
    "first",
    "second",
    "third",
    "fourth",
    "fifth",
    "sixth",
    "seventh",
    "eighth",
    "ninth",
    "tenth",
)


def ordinal(n: int) -> str:
    """`1st`, `2nd`, `11th`, `23rd`."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def number_word(n: int) -> str:
    """Counts up to ten in words, as prose writes them (`six places`); larger ones in figures."""
    return _NUMBERS[n] if 0 <= n < len(_NUMBERS) else f"{n:,}"


def ordinal_word(n: int) -> str:
    """`first` to `tenth` in words; after that `11th`."""
    return _ORDINALS[n] if 1 <= n < len(_ORDINALS) else ordinal(n)


def plural(n: int, one: str, many: str | None = None) -> str:
    """`one place`, `four places`."""
    return f"{number_word(n)} {one if n == 1 else (many or one + 's')}"


def and_list(items: Sequence[str]) -> str:
    """`a`, `a and b`, `a, b and c`."""
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} and {items[-1]}"


def opening(text: str) -> str:
    """`text` starting a sentence: its first letter alone made a capital (unlike str.capitalize
    and Jinja's filter, which lower every letter after it: "Kensington and chelsea")."""
    return text[:1].upper() + text[1:]


def sentence(text: str) -> str:
    """`text` as a sentence: a capital first letter and a full stop at the end."""
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


# The first words of bodies whose names are not proper nouns on their own ("the Department for
# Education", "the Cabinet Office"); the last words of bodies that take no article ("Homes
# England", "Innovate UK"); and the first words of titles that never take one ("HM Treasury").
_NO_ARTICLE_ENDINGS = ("England", "Scotland", "Wales", "Northern Ireland", "UK")
_NO_ARTICLE_STARTS = ("HM ", "His Majesty's ", "Her Majesty's ", "The ", "the ")
_ARTICLE_NOUNS = frozenset(
    {
        "Agency",
        "Authority",
        "Assembly",
        "Association",
        "Board",
        "Cabinet",
        "Commission",
        "Committee",
        "Corporation",
        "Council",
        "Department",
        "Directorate",
        "Executive",
        "Foundation",
        "Fund",
        "Government",
        "Institute",
        "Ministry",
        "Office",
        "Partnership",
        "Secretariat",
        "Service",
        "Society",
        "Treasury",
        "Trust",
        "Unit",
    }
)


def body_in_prose(name: str, *, start: bool = False) -> str:
    """An organisation's name as a sentence uses it: `the Department for Communities and Local
    Government`, `the Cabinet Office`, but `HM Treasury`, `Homes England`, `DCLG`. `start`: the
    name opens a sentence (`The Department ...`)."""
    name = " ".join(name.split())
    words = name.split(" ")
    takes_article = (
        bool(name)
        and not name.startswith(_NO_ARTICLE_STARTS)
        and not name.endswith(_NO_ARTICLE_ENDINGS)
        and not (len(words) == 1 and name.isupper())  # an acronym: "DCLG"
        and any(word.strip(",") in _ARTICLE_NOUNS for word in words)
    )
    if takes_article:
        return f"{'The' if start else 'the'} {name}"
    if start and name.startswith("the "):
        return "T" + name[1:]
    return name


_COUNCIL_ARTICLE_STARTS = (
    "City of ",
    "London Borough of ",
    "Royal Borough of ",
    "Borough of ",
    "County of ",
    "Council of ",
    "Corporation of ",
)


def council_in_prose(official_name: str) -> str:
    """A council's official name as a sentence uses it: `Devon County Council`, but `the City of
    Westminster`, `the London Borough of Camden`."""
    name = " ".join(official_name.split())
    return f"the {name}" if name.startswith(_COUNCIL_ARTICLE_STARTS) else name
