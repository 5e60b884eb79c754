"""State-changing operations on items: mutate, flush, write the audit event, never commit."""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update

from review.audit import SYSTEM, current_request_id, record_event
from review.db import db, utcnow
from review.errors import Conflict, Forbidden, InvalidInput
from review.lifecycle import Action, ItemState, next_state
from review.models import (
    CATEGORY_FOR_EXPERT,
    Decision,
    DecisionKind,
    Finding,
    Item,
    ItemKind,
    JobState,
    MediaJob,
    MediaStep,
    OutboxMessage,
    Publication,
    Role,
    ScreeningReport,
    SubtitleSource,
    Unit,
    User,
    Version,
)
from review.receipts import RECEIPT_VERSION, canonical_text, hash_scheme_of
from review.signing import Signer

log = logging.getLogger(__name__)

MAX_TITLE_CHARS = 500
MAX_BODY_CHARS = 1_000_000

SCREEN_TASK = "kepu.screen_version"
MEDIA_TASK = "kepu.process_media"


# --- input hygiene -----------------------------------------------------------------------------


def clean_text(
    value: object, field: str, label: str | None = None, *, max_chars: int, required: bool = False
) -> str:
    """Validate user text: a string, no NUL or lone surrogates, within length; stored as sent.

    ``field`` is the API's (and the form's) field name, which an error reports as ``field``;
    ``label`` is how the Chinese message names it (default: the field name).
    """
    name = label or field
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise InvalidInput(f"字段“{name}”必须是文本", code="invalid_field", field=field)
    if "\x00" in value:
        raise InvalidInput(f"字段“{name}”含有非法的空字符（NUL）", code="invalid_text", field=field)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(
            f"字段“{name}”含有无法编码的字符（孤立代理项）", code="invalid_text", field=field
        ) from None
    if len(value) > max_chars:
        raise InvalidInput(
            f"字段“{name}”过长：最多 {max_chars} 个字符", code="too_long", field=field
        )
    if required and not value.strip():
        raise InvalidInput(f"字段“{name}”不能为空", code="required", field=field)
    return value


def _title(value: object) -> str:
    title = clean_text(value, "title", "标题", max_chars=MAX_TITLE_CHARS, required=True)
    if any(unicodedata.category(ch) == "Cc" and ch not in "\t" for ch in title):
        raise InvalidInput("标题不能含有控制字符或换行", code="invalid_text", field="title")
    return title


def _body(value: object) -> str:
    return clean_text(value, "body", "正文", max_chars=MAX_BODY_CHARS)


# --- outbox ------------------------------------------------------------------------------------


def enqueue(task: str, *args: Any, delay: float = 0) -> OutboxMessage:
    """Queue a task through the outbox; the relay publishes it after this transaction commits."""
    msg = OutboxMessage(
        task=task,
        args=list(args),
        available_at=utcnow() + timedelta(seconds=delay),
        request_id=current_request_id.get(),
    )
    db.session.add(msg)
    db.session.flush()
    return msg


# --- transitions -------------------------------------------------------------------------------


def transition(
    item: Item, action: Action, *, actor: Any, data: Mapping[str, Any] | None = None
) -> None:
    """Move ``item`` along the transition table and write the audit event."""
    before = item.state
    after = next_state(before, action)
    item.state = after
    item.lock_version += 1
    item.state_changed_at = item.updated_at = utcnow()
    db.session.flush()
    record_event(
        f"item.{action.value}",
        actor=actor,
        subject_type="item",
        subject_id=item.id,
        data={"from": before.value, "to": after.value, **(data or {})},
    )


def _require_editor_of(item: Item, actor: User) -> None:
    if not item.can_edit(actor):
        raise Forbidden("只有本单位的媒体编辑可以执行此操作")


# --- editors -----------------------------------------------------------------------------------


def create_item(
    *, title: object, body: object, actor: User, kind: str = "article", submit: bool = False
) -> Item:
    """Create a draft article in the actor's unit, optionally submitting it at once."""
    if not actor.has_role(Role.editor) or actor.unit_id is None:
        raise Forbidden("只有隶属媒体单位的编辑可以创建稿件")
    try:
        item_kind = ItemKind(kind)
    except ValueError:
        raise InvalidInput(
            "稿件类型只能是 article 或 video", code="invalid_field", field="kind"
        ) from None
    if item_kind is not ItemKind.article:
        raise InvalidInput(
            "视频稿件请以 multipart/form-data 上传视频文件（字段 file）",
            code="unsupported_kind",
            field="kind",
        )
    item = Item(
        kind=item_kind,
        unit_id=actor.unit_id,
        created_by_id=actor.id,
        title=_title(title),
        body=_body(body),
        state=ItemState.draft,
    )
    db.session.add(item)
    db.session.flush()
    record_event(
        "item.created",
        actor=actor,
        subject_type="item",
        subject_id=item.id,
        data={"kind": item_kind.value, "title": item.title},
    )
    if submit:
        submit_item(item, actor=actor)
    return item


def update_draft(item: Item, *, title: object, body: object, actor: User) -> None:
    """Change the working copy of a draft (no version is frozen until submit)."""
    _require_editor_of(item, actor)
    if item.state is not ItemState.draft:
        raise Conflict("只有草稿可以直接编辑；已提交的稿件请使用“修改后重新提交”")
    item.title, item.body = _title(title), _body(body)
    item.updated_at = utcnow()
    db.session.flush()
    record_event("item.edited", actor=actor, subject_type="item", subject_id=item.id)


def _freeze_version(item: Item, actor: User) -> Version:
    # The frozen text is the canonical form the hash covers (review.receipts.canonical_text),
    # so what experts read, what is published and what a CMS recomputes are the same text.
    # Versions frozen earlier keep their stored text and hash (scheme kepu-version-v1).
    item.title, item.body = canonical_text(item.title), canonical_text(item.body)
    number = (
        db.session.scalar(select(func.max(Version.number)).where(Version.item_id == item.id)) or 0
    ) + 1
    supplied = working_subtitles(item) if item.kind is ItemKind.video else []
    media: list[str] = []
    if item.kind is ItemKind.video:
        if item.media_asset is None:
            raise InvalidInput("视频稿件缺少视频文件", code="missing_file", field="file")
        media = [f"video:{item.media_asset.sha256}"] + [f"subtitle:{s.sha256}" for s in supplied]
    version = Version(
        item_id=item.id,
        number=number,
        title=item.title,
        body=item.body,
        content_sha256=Version.compute_sha256(item.title, item.body, media),
        media_asset_id=item.media_asset_id,
        created_by_id=actor.id,
    )
    db.session.add(version)
    db.session.flush()
    for source in supplied:  # the frozen version keeps its own copy of every subtitle file
        db.session.add(
            SubtitleSource(
                item_id=item.id,
                version_id=version.id,
                kind=source.kind,
                label=source.label,
                format=source.format,
                encoding=source.encoding,
                sha256=source.sha256,
                cues=list(source.cues),
            )
        )
    item.current_version_id = version.id
    item.current_version = version
    item.screening_attempts = 0
    item.screening_failed = False
    item.needs_admin = False
    return version


def submit_item(item: Item, *, actor: User) -> Version:
    """Freeze the draft as version 1 (or next) and queue it for screening."""
    _require_editor_of(item, actor)
    next_state(item.state, Action.submit)  # refuse early, before freezing anything
    version = _freeze_version(item, actor)
    transition(
        item,
        Action.submit,
        actor=actor,
        data={"version": version.number, "content_sha256": version.content_sha256},
    )
    queue_processing(version)
    return version


def revise_item(item: Item, *, title: object, body: object, actor: User) -> Version:
    """Edit a submitted item: a new version is frozen and screened again."""
    _require_editor_of(item, actor)
    next_state(item.state, Action.revise)
    item.title, item.body = _title(title), _body(body)
    version = _freeze_version(item, actor)
    transition(
        item,
        Action.revise,
        actor=actor,
        data={"version": version.number, "content_sha256": version.content_sha256},
    )
    queue_processing(version)
    return version


def working_subtitles(item: Item) -> list[SubtitleSource]:
    """The subtitle files uploaded with a video item's working copy, in upload order."""
    return list(
        db.session.scalars(
            select(SubtitleSource)
            .where(SubtitleSource.item_id == item.id, SubtitleSource.version_id.is_(None))
            .order_by(SubtitleSource.id)
        )
    )


def media_jobs(version: Version) -> list[MediaJob]:
    """A version's media steps in their running order."""
    order = list(MediaStep)
    jobs = db.session.scalars(select(MediaJob).where(MediaJob.version_id == version.id)).all()
    return sorted(jobs, key=lambda j: order.index(j.step))


def queue_processing(version: Version) -> None:
    """Articles go to screening; videos first to the media worker, which hands them on."""
    if version.media_asset_id is None:
        enqueue(SCREEN_TASK, version.id)
        return
    for step in MediaStep:
        db.session.add(MediaJob(version_id=version.id, step=step, state=JobState.pending))
    db.session.flush()
    enqueue(MEDIA_TASK, version.id)


def media_pending(version: Version) -> bool:
    """True while a video version still has media steps to finish before screening."""
    if version.media_asset_id is None:
        return False
    return any(j.state is not JobState.done for j in media_jobs(version))


def withdraw_item(item: Item, *, actor: User, reason: str = "") -> None:
    """Take an item out of the workflow before publication."""
    _require_editor_of(item, actor)
    transition(
        item,
        Action.withdraw,
        actor=actor,
        data={"reason": clean_text(reason, "reason", "原因", max_chars=2000)},
    )


# --- screening (called by the worker) ----------------------------------------------------------


def begin_screening(version: Version, *, max_attempts: int) -> str:
    """Count an attempt at the task's start; returns 'screen', 'done' or 'failed' (gave up)."""
    item = version.item
    if item.current_version_id != version.id:
        return "done"  # superseded by a newer version; nothing to do
    if db.session.scalar(
        select(func.count())
        .select_from(ScreeningReport)
        .where(ScreeningReport.version_id == version.id)
    ):
        return "done"
    if item.state not in (ItemState.submitted, ItemState.screening):
        return "done"
    if media_pending(version):
        return "media"  # the media worker enqueues screening when its steps are done
    if item.state is ItemState.submitted:
        transition(item, Action.start_screening, actor=SYSTEM, data={"version": version.number})
    item.screening_attempts += 1
    db.session.flush()
    if item.screening_attempts > max_attempts:
        fail_screening(version, error=f"初筛连续失败 {max_attempts} 次")
        return "failed"
    return "screen"


def fail_screening(version: Version, *, error: str) -> ScreeningReport:
    """Give up on automatic screening: the version goes to experts as flagged."""
    report = ScreeningReport(
        version_id=version.id,
        ruleset_version="failed",
        risk_score=0,
        risk_level="high",
        domains=[],
        is_flagged=True,
        is_failed=True,
        error=error,
    )
    db.session.add(report)
    version.item.screening_failed = True
    db.session.flush()
    transition(
        version.item, Action.flag, actor=SYSTEM, data={"reason": "screening_failed", "error": error}
    )
    return report


def record_screening(
    version: Version, report: Mapping[str, Any], *, flagged: bool
) -> ScreeningReport:
    """Store a screening report with its findings and route the item to cleared or flagged."""
    row = ScreeningReport(
        version_id=version.id,
        ruleset_version=str(report["ruleset_version"]),
        risk_score=float(report["risk_score"]),
        risk_level=str(report["risk_level"]),
        domains=list(report.get("domains", [])),
        is_flagged=flagged,
    )
    db.session.add(row)
    db.session.flush()
    for f in report.get("findings", []):
        db.session.add(
            Finding(
                report_id=row.id,
                version_id=version.id,
                rule_id=f["rule_id"],
                rule_version=f.get("rule_version"),
                category=f["category"],
                severity=f["severity"],
                segment=f.get("segment_kind", "body"),
                start=f["start"],
                end=f["end"],
                text=f["text"],
                explanation=f.get("explanation", ""),
                context=f.get("context"),
                score=float(f.get("score", 0)),
                start_time=f.get("start_time"),
                end_time=f.get("end_time"),
            )
        )
    db.session.flush()
    # A version made after experts objected goes back to them whatever the rules say: the
    # report keeps the rules' verdict, the item is routed like a flagged one.
    to_experts = flagged or experts_objected(version.item)
    data: dict[str, Any] = {
        "version": version.number,
        "risk_level": row.risk_level,
        "risk_score": row.risk_score,
        "ruleset_version": row.ruleset_version,
        "findings": len(report.get("findings", [])),
    }
    if to_experts and not flagged:
        data["reason"] = "experts_objected"
    transition(version.item, Action.flag if to_experts else Action.clear, actor=SYSTEM, data=data)
    return row


#: Expert decisions that object to an item. After one, no version of the item is published on
#: the rules' word: only the experts' approval of that version's exact content hash publishes it.
OBJECTIONS = (DecisionKind.request_changes, DecisionKind.reject)


def experts_objected(item: Item) -> bool:
    """True once an expert asked for changes to, or rejected, any version of ``item``
    (DESIGN.md: a version made after that goes back to the experts, whatever its screening)."""
    return bool(
        db.session.scalar(
            select(func.count())
            .select_from(Decision)
            .where(Decision.item_id == item.id, Decision.decision.in_(OBJECTIONS))
        )
    )


def approved_by_experts(version: Version) -> bool:
    """True when an expert signed an approval of exactly this version's content hash."""
    return bool(
        db.session.scalar(
            select(func.count())
            .select_from(Decision)
            .where(
                Decision.version_id == version.id,
                Decision.decision == DecisionKind.approve,
                Decision.content_sha256 == version.content_sha256,
            )
        )
    )


def needs_expert_signoff(item: Item) -> bool:
    """True when the current version may only be published with the experts' signed approval
    of its hash and has not got it yet (the page and the API say so instead of 发布)."""
    version = item.current_version
    if version is None or not experts_objected(item):
        return False
    return item.state is not ItemState.approved or not approved_by_experts(version)


def stuck_versions(*, older_than: timedelta) -> Sequence[Version]:
    """Current versions of items waiting in submitted/screening for longer than ``older_than``."""
    cutoff = utcnow() - older_than
    return db.session.scalars(
        select(Version)
        .join(Item, Item.current_version_id == Version.id)
        .where(Item.state.in_([ItemState.submitted, ItemState.screening]))
        .where(Item.state_changed_at < cutoff)
    ).all()


def requeue_stuck(*, older_than: timedelta, media_older_than: timedelta = timedelta(0)) -> int:
    """Re-enqueue screening for stuck versions (the broker lost the message, or the worker died
    with it); a video's media step only after ``media_older_than`` too (OCR runs long)."""
    count = 0
    media_cutoff = utcnow() - max(older_than, media_older_than)
    for version in stuck_versions(older_than=older_than):
        item = version.item
        task = SCREEN_TASK
        if media_pending(version):
            if any(j.state is JobState.failed for j in media_jobs(version)):
                continue  # waits for the editor to retry the failed step (they see why)
            if item.state_changed_at >= media_cutoff:
                continue  # a long video may still be in OCR: never run it twice at once
            task = MEDIA_TASK
        item.state_changed_at = utcnow()  # so the next sweep waits again
        enqueue(task, version.id)
        record_event(
            "item.screening_requeued",
            actor=SYSTEM,
            subject_type="item",
            subject_id=item.id,
            data={"version": version.number, "state": item.state.value, "task": task},
        )
        count += 1
    return count


# --- decisions, publication --------------------------------------------------------------------


def decision_payload(decision: Decision) -> dict[str, Any]:
    """What an expert's signature covers."""
    return {
        "item_id": decision.item_id,
        "version_id": decision.version_id,
        "content_sha256": decision.content_sha256,
        "expert": decision.expert_user_id,
        "decision": decision.decision.value,
        "comment": decision.comment,
        "references": list(decision.references),
        "finding_verdicts": dict(decision.finding_verdicts),
        "signed_at": decision.signed_at.isoformat(),
    }


def conclude_review(
    item: Item, outcome: DecisionKind, *, actor: Any, data: Mapping[str, Any]
) -> None:
    """Apply the combined outcome of the reviewers to the item."""
    action = {
        DecisionKind.approve: Action.approve,
        DecisionKind.request_changes: Action.request_changes,
        DecisionKind.reject: Action.reject,
    }[outcome]
    transition(item, action, actor=actor, data=data)


def publication_for_key(item_id: int, key: str) -> Publication | None:
    """The publication an earlier request with this Idempotency-Key made, if any."""
    return db.session.scalar(
        select(Publication).where(
            Publication.item_id == item_id, Publication.idempotency_key == key
        )
    )


def publish_item(
    item: Item,
    *,
    actor: User,
    signer: Signer,
    content_sha256: str | None = None,
    idempotency_key: str | None = None,
) -> Publication:
    """Publish the current version if it is cleared or approved; returns the signed receipt."""
    _require_editor_of(item, actor)
    version = item.current_version
    if version is None:
        raise Conflict("稿件还没有提交过任何版本")
    if content_sha256 is not None and content_sha256 != version.content_sha256:
        raise Conflict("要发布的版本与当前版本的内容哈希不一致", code="hash_mismatch")
    if item.state is ItemState.published:
        raise Conflict("该版本已经发布", code="already_published")
    if item.state in (ItemState.cleared, ItemState.approved) and needs_expert_signoff(item):
        # Also a version left cleared by an earlier release after experts had asked for changes.
        raise Conflict(
            "专家曾要求修改或驳回此稿件：这一版本须经专家审核通过（签署其内容哈希）后才能发布",
            code="expert_signoff_required",
        )
    outcome = "cleared" if item.state is ItemState.cleared else "approved"
    decisions: list[Decision] = []
    if item.state is ItemState.approved:
        decisions = list(
            db.session.scalars(
                select(Decision).where(
                    Decision.version_id == version.id, Decision.decision == DecisionKind.approve
                )
            )
        )
        if not decisions or any(d.content_sha256 != version.content_sha256 for d in decisions):
            raise Conflict("审核通过的版本与当前版本不一致，不能发布", code="hash_mismatch")
    before_state = item.state
    # Conditional update: of two concurrent publishes exactly one moves the row.
    moved = db.session.execute(
        update(Item)
        .where(
            Item.id == item.id, Item.state == before_state, Item.lock_version == item.lock_version
        )
        .values(lock_version=Item.lock_version + 1)
        .execution_options(synchronize_session=False)
    ).rowcount
    if moved != 1:
        raise Conflict("稿件状态已被其他操作改变，请刷新后重试", code="conflict")
    item.lock_version += 1
    transition(item, Action.publish, actor=actor, data={"version": version.number})
    now = utcnow()
    receipt = build_receipt(
        item, version, outcome=outcome, decisions=decisions, published_at=now, signer=signer
    )
    pub = Publication(
        item_id=item.id,
        version_id=version.id,
        content_sha256=version.content_sha256,
        published_by_id=actor.id,
        published_at=now,
        receipt=receipt,
        idempotency_key=idempotency_key,
    )
    db.session.add(pub)
    db.session.flush()
    record_event(
        "publication.issued",
        actor=actor,
        subject_type="item",
        subject_id=item.id,
        data={
            "version": version.number,
            "content_sha256": version.content_sha256,
            "key_id": signer.key_id,
        },
    )
    return pub


def version_media(version: Version) -> list[str]:
    """The media names a version's content hash covers, in the order it was frozen."""
    if version.media_asset is None:
        return []
    subtitles = db.session.scalars(
        select(SubtitleSource.sha256)
        .where(SubtitleSource.version_id == version.id)
        .order_by(SubtitleSource.id)
    ).all()
    return [f"video:{version.media_asset.sha256}"] + [f"subtitle:{sha}" for sha in subtitles]


def build_receipt(
    item: Item,
    version: Version,
    *,
    outcome: str,
    decisions: Sequence[Decision],
    published_at: Any,
    signer: Signer,
) -> dict[str, Any]:
    """The signed publication receipt (version 2, see review.receipts): content hash, how it is
    computed, the outcome and each expert's signed decision, the time, the key."""
    media = version_media(version)
    scheme = hash_scheme_of(version.title, version.body, media, version.content_sha256)
    if scheme is None:
        # Never issue a receipt whose hash a verifier could not recompute.
        raise Conflict("版本内容与其内容哈希不一致，不能签发回执", code="hash_mismatch")
    ordered = sorted(decisions, key=lambda d: (d.signed_at, d.id))
    receipt: dict[str, Any] = {
        "receipt_version": RECEIPT_VERSION,
        "item_id": item.id,
        "kind": item.kind.value,
        "title": version.title,
        "version": version.number,
        "hash_scheme": scheme,
        "content_sha256": version.content_sha256,
        "media": media,
        "decision": outcome,
        "decisions": [
            {
                "expert_id": d.expert_user_id,
                "expert": d.expert_user.display_name,
                "decision": d.decision.value,
                "signed_at": d.signed_at.isoformat(),
                "signature": d.signature,
            }
            for d in ordered
        ],
        "experts": sorted({d.expert_user.display_name for d in decisions}),
        "published_at": published_at.isoformat(),
        "key_id": signer.key_id,
    }
    if item.kind is ItemKind.video:
        receipt["description"] = version.body  # hashed, so a verifier needs it with the file
    receipt["signature"] = signer.sign(receipt)
    return receipt


# --- units and users ---------------------------------------------------------------------------


def get_or_create_unit(name: str, *, actor: Any, kind: str = "media") -> Unit:
    """The unit called ``name``, created when missing."""
    unit = db.session.scalar(select(Unit).where(Unit.name == name))
    if unit is None:
        unit = Unit(name=clean_text(name, "unit", "单位", max_chars=200, required=True), kind=kind)
        db.session.add(unit)
        db.session.flush()
        record_event(
            "unit.created",
            actor=actor,
            subject_type="unit",
            subject_id=unit.id,
            data={"name": name},
        )
    return unit


def source_offset(text: str, shown_index: int) -> int:
    """The offset into stored ``text`` of a code-point offset into the text as a page shows
    it, where every line break (``\r\n`` as forms post it, or ``\r``) is one ``\n``."""
    shown = 0
    i = 0
    while i < len(text) and shown < shown_index:
        i += 2 if text.startswith("\r\n", i) else 1
        shown += 1
    return i


#: Severities an expert may give a finding the rules missed.
EXPERT_SEVERITIES = ("low", "medium", "high", "critical")


def add_text_finding(
    version: Version,
    *,
    segment: object,
    start: object,
    end: object,
    note: object,
    severity: object,
    actor: User,
) -> Finding:
    """An expert marks a passage of the title or body as a finding the rules missed.

    Offsets are code points into the version's stored text (what the page shows); the
    finding keeps the marked text, so a later version does not change what was marked."""
    if segment not in ("title", "body"):
        raise InvalidInput("只能在标题或正文中标记", field="segment", code="invalid_segment")
    source = version.title if segment == "title" else version.body
    try:
        a, b = int(str(start)), int(str(end))
    except ValueError:
        raise InvalidInput(
            "请先在文中选中要标记的文字", field="start", code="no_selection"
        ) from None
    shown = source.replace("\r\n", "\n").replace("\r", "\n")
    if not 0 <= a < b <= len(shown):
        raise InvalidInput("选中的范围超出了文本", field="start", code="invalid_range")
    a, b = source_offset(source, a), source_offset(source, b)
    if not 0 <= a < b <= len(source):
        raise InvalidInput("选中的范围超出了文本", field="start", code="invalid_range")
    if not source[a:b].strip():
        raise InvalidInput("选中的只是空白，请重新选择", field="start", code="blank_selection")
    if severity not in EXPERT_SEVERITIES:
        raise InvalidInput("请选择严重度", field="severity", code="invalid_severity")
    return add_expert_finding(
        version,
        segment=str(segment),
        start=a,
        end=b,
        text=source[a:b],
        note=note,
        severity=str(severity),
        actor=actor,
        event={"segment": segment, "start": a, "end": b, "severity": severity},
    )


def add_expert_finding(
    version: Version,
    *,
    segment: str,
    start: int,
    end: int,
    text: str,
    note: object,
    severity: str,
    actor: User,
    start_time: float | None = None,
    end_time: float | None = None,
    event: Mapping[str, Any],
) -> Finding:
    """Store a finding an expert added (category 专家补充, no rule) and audit it."""
    explanation = clean_text(note, "note", "说明", max_chars=2000, required=True)
    report = version.report
    finding = Finding(
        report_id=report.id if report else None,
        version_id=version.id,
        rule_id=None,
        rule_version=None,
        category=CATEGORY_FOR_EXPERT,
        severity=severity,
        segment=segment,
        start=start,
        end=end,
        text=text or explanation,
        explanation=explanation,
        context=None,
        score=0.0,
        start_time=start_time,
        end_time=end_time,
        added_by_id=actor.id,
    )
    db.session.add(finding)
    db.session.flush()
    record_event(
        "finding.added",
        actor=actor,
        subject_type="item",
        subject_id=version.item_id,
        data={"version": version.number, "finding": finding.id, **event},
    )
    return finding
