"""How a stage event's steps are run.

A stage event (`cbflow.stages`) is a few steps at the grain an administrator follows: the domain
step that changes the round in one transaction (close the window and sift, rank, decide), its
documents in batches (each rendered, then recorded in a transaction of its own), and the mail.
`Steps` runs them here, one after another, all documents in one batch: the domain's own way,
for the tests, the demo and the benchmark without Prefect. Under Prefect, `flows.steps` runs
each as a task run the Prefect UI shows, retries the documents and the mail (only those: I/O
that can fail for a moment), and remembers the steps a run finished so that a retried run
resumes after them. Whatever the runner, each step's work is safe to do again: a domain step
run twice changes nothing the second time, a document already issued is not planned again, and a
message already sent is not in the queue.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from cbflow.services.mail import Delivery

T = TypeVar("T")
P = TypeVar("P")


class Steps:
    """Each step now, in this thread."""

    def domain(self, name: str, work: Callable[[], T]) -> T:
        """A domain step: a change of state in one transaction; its result (plain data: lists,
        dicts, strings, numbers) is what the later steps need of it."""
        return work()

    def documents(
        self,
        name: str,
        plan: Callable[[], Sequence[P]],
        issue: Callable[[Sequence[P]], list[str]],
    ) -> list[str]:
        """The documents still to issue (`plan`: those not yet recorded), issued by `issue`
        (render and record a batch; the paths of those it issued)."""
        pending = plan()
        return issue(pending) if pending else []

    def mail(self, name: str, send: Callable[[], Delivery]) -> Delivery:
        """Send what the earlier steps queued. A server that cannot be reached leaves the
        messages waiting (`Delivery.waiting`): here that is reported, not raised."""
        return send()


DIRECT = Steps()
