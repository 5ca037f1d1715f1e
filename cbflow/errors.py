"""Errors a user can act on. Each carries a message that says what to do."""


class CbflowError(Exception):
    """Base class for every error cbflow reports to a user."""


class ProspectusError(CbflowError):
    """A prospectus file is unreadable or breaks the format.

    `problems` holds one line per fault, each naming the file, the line and the key path.
    """

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(f"{path}: {len(problems)} problem(s)\n" + "\n".join(problems))


class IllegalTransition(CbflowError):
    """A state change that the transition table does not allow. Nothing was changed."""


class OutsideWindow(CbflowError):
    """An action outside the time it is allowed in. Nothing was changed."""


class DeadlinePassed(OutsideWindow):
    """An action came after its window closed. Nothing was changed."""


class NotYet(OutsideWindow):
    """An action came before its time: a window not yet open, or a deadline not yet reached
    by the run that acts on it. Nothing was changed."""


class ValidationFailed(CbflowError):
    """Answers to a form did not validate. `errors` maps a question id to its message."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{key}: {msg}" for key, msg in errors.items()))


class NotFound(CbflowError):
    """A round, council, application or model that does not exist."""
