"""Receipts by e-mail: who a newly issued receipt goes to, and the message that carries it.

A receipt goes to the person who submitted (the actor of the submission's audit event). A
submission made for the council by the system (a flow, an import) goes to every applicant
account of the council instead.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import Session, col, select

from cbflow import notify
from cbflow.models import Application, AuditEvent, User
from cbflow.services.documents import Pending
from cbflow.settings import Settings

STAGES = {"eoi_receipt": "eoi", "bid_receipt": "bid"}
STAGE_NAMES = {"eoi": "Expression of interest", "bid": "Bid"}


def receipt_messages(
    session: Session, pendings: Sequence[Pending], settings: Settings
) -> list[notify.Message]:
    """One message per recipient of each receipt among `pendings`, the PDF attached."""
    receipts = [p for p in pendings if p.kind in STAGES and p.application_id is not None]
    if not receipts:
        return []
    ids = [p.application_id for p in receipts]
    applications = {
        a.id: a for a in session.exec(select(Application).where(col(Application.id).in_(ids)))
    }
    submitters: dict[tuple[int, str], str] = {}  # (application, state reached): who did it
    for event in session.exec(
        select(AuditEvent)
        .where(
            AuditEvent.entity == "application",
            col(AuditEvent.entity_id).in_(ids),
            AuditEvent.action == "transition",
            col(AuditEvent.to_state).in_([f"{stage}_submitted" for stage in STAGE_NAMES]),
        )
        .order_by(col(AuditEvent.id))
    ):
        assert event.to_state is not None
        submitters[(event.entity_id, event.to_state)] = event.actor
    councils = {a.council_code for a in applications.values()}
    applicants = list(
        session.exec(
            select(User)
            .where(User.role == "applicant", col(User.council_code).in_(councils))
            .order_by(col(User.id))
        )
    )
    base_url = settings.resolved_portal_base_url
    messages = []
    for pending in receipts:
        application = applications[pending.application_id]
        stage = STAGES[pending.kind]
        ours = [u for u in applicants if u.council_code == application.council_code]
        actor = submitters.get((pending.application_id or 0, f"{stage}_submitted"))
        recipients = [u for u in ours if u.email == actor] or ours
        context = pending.job.context
        version = context.get("version", 1)
        numbered = f"-v{version}" if version > 1 else ""
        attachment = notify.Attachment(
            filename=f"{application.reference.replace('/', '-')}-{stage}-receipt{numbered}.pdf",
            path=pending.job.out_path,
        )
        for user in recipients:
            messages.append(
                notify.compose(
                    settings.templates_dir,
                    "receipt",
                    to=user.email,
                    attachments=[attachment],
                    name=user.name,
                    stage_name=STAGE_NAMES[stage],
                    reference=application.reference,
                    council=context["council"]["name"],
                    round_title=context["doc"]["round_title"],
                    submitted_at=context["submitted_at"],
                    version=version,
                    replaces=context.get("replaces"),
                    on_time=context.get("on_time", ""),
                    link=f"{base_url}/applications/{application.id}/{stage}/submitted",
                )
            )
    return messages
