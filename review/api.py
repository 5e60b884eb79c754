"""JSON API under /api/v1; bearer-token authentication; errors as {"error", "message"}."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, g, jsonify, request
from sqlalchemy import select

from expert_pool import operations as pool_ops
from expert_pool import pool, quality
from expert_pool.models import Assignment, Expert, Notification, QualitySample
from review import dashboard, downloads, ledger, videos
from review import operations as ops
from review.audit import AuditEvent, record_event
from review.auth import check_password, user_for_token
from review.db import db, utcnow
from review.errors import Forbidden, InvalidInput, NotFound, TooLarge, Unauthorized
from review.inputs import parse_json
from review.models import Item, Role, User
from review.search import search_items
from review.web import (
    MAX_DB_INT,
    accept_video_upload,
    deadlines,
    expert_to_dict,
    item_to_dict,
    latest_publication,
    load_assignment,
    load_item,
    notification_to_dict,
    parse_time,
    parse_upload,
    queue_overview,
    require_role,
    signer,
)

bp = Blueprint("api", __name__, url_prefix="/api/v1")


@bp.before_request
def _authenticate() -> None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    user = user_for_token(token.strip()) if scheme.lower() == "bearer" and token.strip() else None
    if user is None:
        raise Unauthorized("缺少或无效的 API 令牌（Authorization: Bearer <token>）")
    g.api_user = user


def _user() -> User:
    return g.api_user  # type: ignore[no-any-return]


def _json_body() -> dict[str, Any]:
    cached = request.environ.get("kepu.json")  # the stream can be read once per request
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    limit = int(current_app.config["MAX_JSON_BYTES"])
    too_large = TooLarge(f"JSON 请求体超过上限 {limit} 字节")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    raw = request.stream.read(limit + 1)  # bounded even without a Content-Length (chunked)
    if len(raw) > limit:
        raise too_large
    data: Any = parse_json(raw, content_type=request.content_type) if raw.strip() else {}
    if not isinstance(data, dict):
        raise InvalidInput("请求体必须是 JSON 对象", code="invalid_json")
    request.environ["kepu.json"] = data
    return data


def _commit() -> None:
    db.session.commit()


@bp.post("/items")
def create_item() -> Any:
    """Create an article (optionally submitting it at once)."""
    user = _user()
    require_role(user, Role.editor)
    if request.mimetype == "multipart/form-data":
        return _create_video(user)
    data = _json_body()
    submit = data.get("submit", False)
    if not isinstance(submit, bool):
        raise InvalidInput("submit 必须是布尔值", field="submit")
    item = ops.create_item(
        title=data.get("title"),
        body=data.get("body", ""),
        kind=str(data.get("kind", "article")),
        actor=user,
        submit=submit,
    )
    _commit()
    return jsonify({"id": item.id, "state": item.state.value}), 201


def _create_video(user: User) -> Any:
    """A video item from multipart/form-data: kind=video, title, description, submit, file,
    optional subtitles (SRT, WebVTT or ASS; several allowed)."""
    files = parse_upload()
    form = request.form
    if form.get("kind", "video") != "video":
        raise InvalidInput("multipart 上传只用于视频稿件（kind=video）", field="kind")
    submit_raw = form.get("submit", "false").strip().lower()
    if submit_raw not in ("true", "false", "1", "0", ""):
        raise InvalidInput("submit 必须是 true 或 false", field="submit")
    title, description = form.get("title"), form.get("description", "")
    asset, subtitles = accept_video_upload(files, actor=user, title=title, description=description)
    item = videos.create_video_item(
        title=title,
        description=description,
        asset=asset,
        subtitles=subtitles,
        actor=user,
        submit=submit_raw in ("true", "1"),
    )
    _commit()
    return jsonify({"id": item.id, "state": item.state.value, "video": asset.sha256}), 201


@bp.get("/items")
def list_items() -> Any:
    """The caller's visible items, newest first."""
    user = _user()
    query = downloads.visible_items(user).order_by(Item.id.desc())
    state = request.args.get("state")
    if state:
        query = query.where(Item.state == downloads.item_state(state))
    return jsonify([item_to_dict(i) for i in db.session.scalars(query.limit(500))])


@bp.get("/items/<int:item_id>")
def get_item(item_id: int) -> Any:
    """One item with its screening, assignments, decisions and publication."""
    return jsonify(item_to_dict(load_item(_user(), item_id), detail=True))


@bp.post("/items/<int:item_id>/submit")
def submit_item(item_id: int) -> Any:
    """Submit a draft for screening."""
    user = _user()
    item = load_item(user, item_id)
    ops.submit_item(item, actor=user)
    _commit()
    return jsonify({"id": item.id, "state": item.state.value}), 202


@bp.post("/items/<int:item_id>/revise")
def revise_item(item_id: int) -> Any:
    """Edit the item: a draft in place; otherwise a new version that is screened again."""
    user = _user()
    item = load_item(user, item_id)
    data = _json_body()
    if item.state.value == "draft":
        ops.update_draft(
            item, title=data.get("title", item.title), body=data.get("body", item.body), actor=user
        )
    else:
        ops.revise_item(
            item, title=data.get("title", item.title), body=data.get("body", item.body), actor=user
        )
    _commit()
    return jsonify(item_to_dict(item)), 200


@bp.post("/items/<int:item_id>/withdraw")
def withdraw_item(item_id: int) -> Any:
    """Withdraw an unpublished item."""
    user = _user()
    item = load_item(user, item_id)
    ops.withdraw_item(item, actor=user, reason=str(_json_body().get("reason", "")))
    _commit()
    return jsonify({"id": item.id, "state": item.state.value})


@bp.post("/items/<int:item_id>/publish")
def publish_item(item_id: int) -> Any:
    """Publish a cleared or approved version; returns the signed receipt."""
    user = _user()
    item = load_item(user, item_id)
    data = _json_body()
    pub = ops.publish_item(
        item, actor=user, signer=signer(), content_sha256=data.get("content_sha256")
    )
    _commit()
    return jsonify({"receipt": pub.receipt})


@bp.get("/items/<int:item_id>/receipt")
def get_receipt(item_id: int) -> Any:
    """The signed publication receipt and the public key to check it."""
    item = load_item(_user(), item_id)
    pub = latest_publication(item)
    if pub is None:
        raise NotFound("该稿件尚未发布", code="not_published")
    return jsonify({"receipt": pub.receipt, "public_key": signer().public_pem()})


@bp.get("/assignments")
def list_assignments() -> Any:
    """The caller's assignments (experts), newest first."""
    user = _user()
    require_role(user, Role.expert)
    expert = Expert.for_user(user)
    if expert is None:
        return jsonify([])
    rows = db.session.scalars(
        select(Assignment).where(Assignment.expert_id == expert.id).order_by(Assignment.id.desc())
    )
    return jsonify([a.to_dict() for a in rows])


@bp.post("/assignments/<int:assignment_id>/accept")
def accept_assignment(assignment_id: int) -> Any:
    """Accept an offered review."""
    user = _user()
    require_role(user, Role.expert)
    assignment = load_assignment(user, assignment_id)
    pool_ops.accept_assignment(assignment, actor=user, deadlines=deadlines())
    _commit()
    return jsonify(assignment.to_dict())


@bp.post("/assignments/<int:assignment_id>/decline")
def decline_assignment(assignment_id: int) -> Any:
    """Decline an offer with a reason; the version goes to the next eligible expert."""
    user = _user()
    require_role(user, Role.expert)
    assignment = load_assignment(user, assignment_id)
    pool_ops.decline_assignment(
        assignment, actor=user, reason=_json_body().get("reason"), deadlines=deadlines()
    )
    _commit()
    return jsonify(assignment.to_dict())


@bp.post("/assignments/<int:assignment_id>/decision")
def decide(assignment_id: int) -> Any:
    """Sign a decision; the password must be entered again."""
    user = _user()
    require_role(user, Role.expert)
    assignment = load_assignment(user, assignment_id)
    data = _json_body()
    password = data.get("password")
    password_ok = isinstance(password, str) and check_password(user, password)
    if not password_ok:
        record_event(
            "review.signature_refused",
            actor=user,
            subject_type="item",
            subject_id=assignment.item_id,
            data={"assignment": assignment.id},
        )
        _commit()
        raise Forbidden(
            "密码确认失败：签署审核结论需要重新输入您的登录密码", code="password_required"
        )
    expected = data.get("lock_version")
    decision = pool_ops.decide(
        assignment,
        actor=user,
        decision=data.get("decision"),
        comment=data.get("comment", ""),
        references=data.get("references", []),
        finding_verdicts=data.get("finding_verdicts", {}),
        password_ok=True,
        signer=signer(),
        deadlines=deadlines(),
        expected_lock_version=expected if isinstance(expected, int) else None,
    )
    _commit()
    item = db.session.get(Item, assignment.item_id)
    return jsonify(
        {
            "id": decision.id,
            "decision": decision.decision.value,
            "item_state": item.state.value if item else None,
        }
    )


@bp.get("/audit/events")
def audit_events() -> Any:
    """Ledger events after ``after`` (auditors and admins)."""
    user = _user()
    require_role(user, Role.auditor, Role.admin)
    try:
        after = int(request.args.get("after", -1))
        limit = int(request.args.get("limit", 500))
    except ValueError:
        raise InvalidInput("after 和 limit 必须是整数") from None
    if not -1 <= after <= MAX_DB_INT:
        raise InvalidInput(f"after 须在 -1 到 {MAX_DB_INT} 之间", field="after")
    limit = max(1, min(limit, 5000))  # a negative LIMIT is "no limit" on SQLite, an error on PG
    rows = db.session.scalars(
        downloads.audit_query(request.args).where(AuditEvent.seq > after).limit(limit)
    )
    return jsonify(
        [
            {
                "seq": e.seq,
                "at": e.at.isoformat(),
                "actor": e.actor,
                "action": e.action,
                "subject": f"{e.subject_type}:{e.subject_id}",
                "data": e.data,
                "hash": e.hash,
            }
            for e in rows
        ]
    )


@bp.post("/items/<int:item_id>/appeal")
def appeal_item(item_id: int) -> Any:
    """Appeal a rejection once; different experts review it."""
    user = _user()
    require_role(user, Role.editor)
    item = load_item(user, item_id)
    pool_ops.appeal(item, actor=user, reason=_json_body().get("reason"), deadlines=deadlines())
    _commit()
    return jsonify(item_to_dict(item))


@bp.post("/assignments/claim")
def claim_next() -> Any:
    """Pull mode: take the oldest waiting version in the caller's domains."""
    user = _user()
    require_role(user, Role.expert)
    assignment = pool_ops.claim_next(user, deadlines=deadlines())
    _commit()
    if assignment is None:
        return jsonify({"assignment": None, "message": "暂无可认领的稿件"})
    return jsonify({"assignment": assignment.to_dict()}), 201


@bp.get("/notifications")
def list_notifications() -> Any:
    """The caller's notifications, newest first (``?unread=1`` for unread only)."""
    user = _user()
    query = select(Notification).where(Notification.user_id == user.id)
    if request.args.get("unread"):
        query = query.where(Notification.read_at.is_(None))
    rows = db.session.scalars(query.order_by(Notification.id.desc()).limit(200))
    return jsonify([notification_to_dict(n) for n in rows])


@bp.post("/notifications/<int:note_id>/read")
def read_notification(note_id: int) -> Any:
    """Mark one notification read."""
    user = _user()
    note = db.session.get(Notification, note_id)
    if note is None or note.user_id != user.id:
        raise NotFound("找不到该通知")
    if note.read_at is None:
        note.read_at = utcnow()
        _commit()
    return jsonify(notification_to_dict(note))


@bp.get("/experts")
def list_experts() -> Any:
    """The pool with load (admins and auditors)."""
    user = _user()
    require_role(user, Role.admin, Role.auditor)
    loads = pool.expert_loads()
    rows = db.session.scalars(select(Expert).order_by(Expert.id))
    return jsonify([expert_to_dict(e, loads.get(e.id, 0)) for e in rows])


@bp.patch("/experts/<int:expert_id>")
def patch_expert(expert_id: int) -> Any:
    """Change an expert's pool fields (admins)."""
    user = _user()
    require_role(user, Role.admin)
    expert = pool_ops.get_expert(expert_id)
    data = _json_body()
    for key in ("leave_from", "leave_until"):
        if data.get(key):
            data[key] = parse_time(data[key], key)
    pool.update_expert(expert, data, actor=user)
    _commit()
    return jsonify(expert_to_dict(expert, pool.expert_loads().get(expert.id, 0)))


@bp.post("/items/<int:item_id>/assign")
def admin_assign(item_id: int) -> Any:
    """An admin hands a waiting version to a chosen expert."""
    user = _user()
    require_role(user, Role.admin)
    item = load_item(user, item_id)
    expert_id = _json_body().get("expert_id")
    if not isinstance(expert_id, int) or isinstance(expert_id, bool):
        raise InvalidInput("expert_id 必须是整数", field="expert_id")
    if not 0 < expert_id <= MAX_DB_INT:
        raise NotFound("找不到该专家")
    assignment = pool_ops.admin_assign(
        item, pool_ops.get_expert(expert_id), actor=user, deadlines=deadlines()
    )
    _commit()
    return jsonify(assignment.to_dict()), 201


@bp.get("/queue")
def queue() -> Any:
    """Waiting versions with waiting time and who was refused why; overdue assignments (admins)."""
    user = _user()
    require_role(user, Role.admin, Role.auditor)
    return jsonify(queue_overview())


@bp.get("/audit/checkpoints")
def list_checkpoints() -> Any:
    """Signed checkpoints, newest first (auditors and admins keep copies outside the system)."""
    user = _user()
    require_role(user, Role.auditor, Role.admin)
    rows = db.session.scalars(
        select(ledger.AuditCheckpoint).order_by(ledger.AuditCheckpoint.tree_size.desc()).limit(500)
    )
    return jsonify(
        [
            {
                "tree_size": c.tree_size,
                "root_hash": c.root_hash,
                "created_at": c.created_at.isoformat(),
                "key_id": c.key_id,
                "note": c.note,
            }
            for c in rows
        ]
    )


@bp.post("/audit/checkpoints")
def make_checkpoint() -> Any:
    """Sign a checkpoint now (auditors and admins)."""
    user = _user()
    require_role(user, Role.auditor, Role.admin)
    row = ledger.create_checkpoint(
        signer=signer(), origin=str(current_app.config["LEDGER_ORIGIN"]), actor=user
    )
    _commit()
    return jsonify({"tree_size": row.tree_size, "root_hash": row.root_hash, "note": row.note}), 201


@bp.get("/audit/public-key")
def public_key() -> Any:
    """The Ed25519 public key that signs checkpoints, decisions and receipts."""
    require_role(_user(), Role.auditor, Role.admin)
    return current_app.response_class(signer().public_pem(), mimetype="application/x-pem-file")


@bp.post("/items/<int:item_id>/rereview")
def rereview_item(item_id: int) -> Any:
    """Auditors and admins: ask experts not involved before to review the decision again."""
    user = _user()
    require_role(user, Role.auditor, Role.admin)
    item = load_item(user, item_id)
    pool_ops.request_rereview(
        item, actor=user, reason=_json_body().get("reason"), deadlines=deadlines()
    )
    _commit()
    return jsonify(item_to_dict(item))


@bp.post("/items/<int:item_id>/recall")
def recall_item(item_id: int) -> Any:
    """Auditors and admins: take a published item down (下架) with a reason."""
    user = _user()
    require_role(user, Role.auditor, Role.admin)
    item = load_item(user, item_id)
    pool_ops.recall_item(item, actor=user, reason=_json_body().get("reason"))
    _commit()
    return jsonify(item_to_dict(item))


@bp.get("/dashboard")
def dashboard_figures() -> Any:
    """Dashboard figures (auditors, admins): ``from``, ``to``, optional ``domain`` and ``unit``."""
    user = _user()
    require_role(user, Role.auditor, Role.admin)
    start = parse_time(request.args["from"], "from") if request.args.get("from") else None
    end = parse_time(request.args["to"], "to") if request.args.get("to") else None
    unit = request.args.get("unit")
    if unit is not None and not unit.isdigit():
        raise InvalidInput("unit 必须是单位编号", field="unit")
    return jsonify(
        dashboard.figures(
            dashboard.Period(start, end),
            domain=request.args.get("domain") or None,
            unit_id=int(unit) if unit else None,
        )
    )


@bp.post("/quality/samples")
def draw_quality_sample() -> Any:
    """质检: draw decided versions at random for re-review (auditors and admins)."""
    user = _user()
    require_role(user, Role.auditor, Role.admin)
    data = _json_body()
    size = data.get("size", 10)
    if not isinstance(size, int):
        raise InvalidInput("size 必须是整数", field="size")
    start = parse_time(data["from"], "from") if data.get("from") else None
    end = parse_time(data["to"], "to") if data.get("to") else None
    domain = data.get("domain") or None
    if domain is not None and not isinstance(domain, str):
        raise InvalidInput("domain 必须是文本", field="domain")
    sample = quality.draw_sample(
        actor=user, size=size, start=start, end=end, domain=domain, deadlines=deadlines()
    )
    _commit()
    return jsonify(quality.sample_report(sample)), 201


@bp.get("/quality/samples")
def list_quality_samples() -> Any:
    """Every sample with its progress and overturn rate."""
    require_role(_user(), Role.auditor, Role.admin)
    rows = db.session.scalars(select(QualitySample).order_by(QualitySample.id.desc()).limit(200))
    return jsonify([quality.sample_report(s) for s in rows])


@bp.get("/quality/samples/<int:sample_id>")
def get_quality_sample(sample_id: int) -> Any:
    """One sample with every check."""
    require_role(_user(), Role.auditor, Role.admin)
    sample = db.session.get(QualitySample, sample_id)
    if sample is None:
        raise NotFound("找不到该质检抽样")
    return jsonify(quality.sample_report(sample))


@bp.get("/search")
def search() -> Any:
    """Full-text search (Chinese, jieba) over the caller's visible items and their decisions."""
    user = _user()
    query = request.args.get("q", "")
    if not query.strip():
        raise InvalidInput("请输入搜索词", field="q")
    ops.clean_text(query, "搜索词", max_chars=200)
    restrict = None
    if not user.has_role(Role.auditor, Role.admin):
        restrict = downloads.visible_items(user).with_only_columns(Item.id)
    ids = search_items(query, restrict=restrict)
    items = {i.id: i for i in db.session.scalars(select(Item).where(Item.id.in_(ids)))}
    state = request.args.get("state")
    rows = [items[i] for i in ids if i in items and (not state or items[i].state.value == state)]
    return jsonify([item_to_dict(i) for i in rows])


@bp.get("/export/<kind>.<fmt>")
def export(kind: str, fmt: str) -> Any:
    """Items (visible ones), audit log, dashboard workbook: CSV or XLSX; each download audited."""
    user = _user()
    if kind in ("audit", "dashboard"):
        require_role(user, Role.auditor, Role.admin)
    return downloads.send(
        downloads.build(kind, fmt, user, request.args), user=user, filters=request.args
    )


@bp.get("/audit/export.zip")
def export_ledger() -> Any:
    """The ledger bundle (events, checkpoints, public key) for offline `kepu audit verify`."""
    user = _user()
    require_role(user, Role.auditor, Role.admin)
    return downloads.send(downloads.build("ledger", "zip", user, {}), user=user, filters={})
