"""A stage's steps as Prefect task runs: what the Prefect UI shows of a stage, step by step.

`TaskSteps` runs each step of a stage event (see cbflow.steps) as a task run named for what it
does ("close EOI and sift", "receipts 101-200 of 353", "mail"), with its state and duration in
the UI. Only the steps whose work is I/O that can fail for a moment are retried, with backoff
(`CBFLOW_STEP_RETRY_SECONDS`): a batch of documents (rendering, the disk) and the mail (the mail
server). A domain step is never retried: it either commits or changes nothing, and a failure there
is for a person to read.

Each finished step is recorded with its result against the flow run (cbflow.services.checkpoints).
Prefect retries a failed or crashed run as the same run, on whichever worker takes it: the retry
finds what was finished and creates no task run for it, so the UI shows the retry doing only what
was left (a batch of documents not yet issued, the mail still unsent). The work of a step is safe
to do twice anyway (see cbflow.steps), which covers the moment between a step committing and its
record being written.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any, TypeVar, cast

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture

from cbflow.services import checkpoints
from cbflow.services.mail import Delivery
from cbflow.settings import Settings
from cbflow.steps import Steps

T = TypeVar("T")
P = TypeVar("P")

BATCH = 100  # documents per task run: a task run costs little, a document's bookkeeping a lot
IN_FLIGHT = 2  # batches rendering at once


class MailUnreachable(RuntimeError):
    """The mail server could not be reached: the messages wait in the queue, and the mail task
    is tried again."""


@task(name="domain step", cache_policy=NO_CACHE, persist_result=False)
def _domain(work: Callable[[], Any]) -> Any:
    return work()


@task(name="documents", cache_policy=NO_CACHE, persist_result=False)
def _documents(issue: Callable[[Sequence[Any]], list[str]], batch: Sequence[Any]) -> list[str]:
    return issue(batch)


@task(name="mail", cache_policy=NO_CACHE, persist_result=False)
def _mail(send: Callable[[], Delivery], sent: list[int]) -> Delivery:
    delivery = send()
    sent.append(delivery.sent)
    if delivery.unreachable:
        raise MailUnreachable(
            f"{delivery.waiting} messages wait to be sent: the mail server could not be reached "
            f"({delivery.unreachable})"
        )
    return delivery


def retry_delays(settings: Settings) -> list[float]:
    """The waits before each retry of an I/O step, from CBFLOW_STEP_RETRY_SECONDS ("10,60,300":
    three retries; empty: none)."""
    text = settings.step_retry_seconds.strip()
    try:
        delays = [float(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise SystemExit(
            f"CBFLOW_STEP_RETRY_SECONDS={text!r} is not a list of seconds such as '10,60,300'"
        ) from exc
    if any(delay < 0 for delay in delays) or len(delays) > 10:
        raise SystemExit("CBFLOW_STEP_RETRY_SECONDS: at most 10 waits, none negative")
    return delays


class TaskSteps(Steps):
    """The steps of one flow run (`run`: its id) as task runs, resumed on a retry of the run."""

    def __init__(self, run: str, settings: Settings) -> None:
        self.run = run
        self.delays = retry_delays(settings)

    def _io(self) -> dict[str, Any]:
        return {"retries": len(self.delays), "retry_delay_seconds": self.delays or 0}

    def _earlier(self, name: str) -> tuple[bool, Any]:
        done, result = checkpoints.finished(self.run, name)
        if done:
            get_run_logger().info("%s: finished by an earlier attempt of this run", name)
        return done, result

    def domain(self, name: str, work: Callable[[], T]) -> T:
        done, earlier = self._earlier(name)
        if done:
            return cast(T, earlier)
        result: T = cast(T, _domain.with_options(task_run_name=name)(work))
        checkpoints.record(self.run, name, result)
        return result

    def documents(
        self,
        name: str,
        plan: Callable[[], Sequence[P]],
        issue: Callable[[Sequence[P]], list[str]],
    ) -> list[str]:
        """Batches of BATCH documents, one task run each, two in flight at a time: the
        rendering processes start on the next batch while one is being recorded, rather than
        fall idle at the end of every batch. On a retry the batches finished before are not
        planned again (their documents are recorded) and count towards the numbering; their
        paths come from the record, for the run's artifact."""
        earlier = checkpoints.finished_like(self.run, f"{name} · ")
        paths: list[str] = [path for _, found in earlier for path in found]
        if earlier:
            get_run_logger().info(
                "%s: %d documents issued by an earlier attempt of this run", name, len(paths)
            )
        pending = list(plan())
        total = len(paths) + len(pending)
        numbered = len(paths)
        in_flight: deque[tuple[str, PrefectFuture[list[str]]]] = deque()

        def finish() -> None:
            label, future = in_flight.popleft()
            issued = future.result()
            checkpoints.record(self.run, label, issued)
            paths.extend(issued)

        try:
            for start in range(0, len(pending), BATCH):
                batch = pending[start : start + BATCH]
                label = f"{name} · {numbered + 1}-{numbered + len(batch)} of {total}"
                numbered += len(batch)
                task = _documents.with_options(task_run_name=label, **self._io())
                in_flight.append((label, task.submit(issue, batch)))
                if len(in_flight) == IN_FLIGHT:
                    finish()
            while in_flight:
                finish()
        except BaseException:
            # the batch still in flight finishes (or fails) before the step fails, and is
            # recorded if it finished: a retry then neither redoes nor loses it
            for label, future in in_flight:
                if future.wait() is None and future.state.is_completed():
                    checkpoints.record(self.run, label, future.result())
            raise
        return paths

    def mail(self, name: str, send: Callable[[], Delivery]) -> Delivery:
        done, result = self._earlier(name)
        if done:
            return Delivery(**result)
        sent: list[int] = []  # what each attempt sent, retries included
        delivery = _mail.with_options(task_run_name=name, **self._io())(send, sent)
        delivery.sent = sum(sent)
        checkpoints.record(self.run, name, asdict(delivery))
        return delivery
