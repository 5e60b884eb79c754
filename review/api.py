"""JSON API under /api/v1; bearer-token authentication; errors as {"error", "message"}.

Every view declares its contract with ``@operation`` (review/openapi.py): roles, query
parameters, request body and responses. The same declaration is enforced on each request and
published as the OpenAPI document at ``/api/v1/openapi.json``.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, g, jsonify, render_template, request, url_for
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from expert_pool import operations as pool_ops
from expert_pool import pool, quality
from expert_pool.models import Assignment, Expert, Notification, QualitySample
from review import api_schemas as S
from review import dashboard, downloads, ledger, lists, paging, videos
from review import operations as ops
from review.api_schemas import array_of, ref
from review.audit import AuditEvent, record_event
from review.auth import user_for_token
from review.db import db, utcnow
from review.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from review.lifecycle import ItemState
from review.models import Item, Role, User
from review.openapi import Param, Response, build_document, is_public, operation
from review.reauth import confirm_password
from review.search import search_items
from review.web import (
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
    signer,
)

bp = Blueprint("api", __name__, url_prefix="/api/v1")

EDITOR = (Role.editor,)
EXPERT = (Role.expert,)
OVERSIGHT = (Role.auditor, Role.admin)
ADMIN = (Role.admin,)

ITEMS, REVIEWS, OWN, POOL, AUDIT, DOCS = S.TAGS
ITEM_ID = {"item_id": "稿件编号"}
ASSIGNMENT_ID = {"assignment_id": "审核任务编号"}
STATE_PARAM = Param("state", S.STATE, "只列出处于该状态的稿件")
TIME_TEXT = {"type": "string", "description": "ISO 日期或时间；不带时区按北京时间"}
AUDIT_FILTERS = (
    Param("action", {"type": "string", "maxLength": 100}, "动作前缀，如 item. 或 review.decided"),
    Param("actor", {"type": "string", "maxLength": 200}, "操作者"),
    Param("item", {"type": "string", "maxLength": 20}, "稿件编号"),
    Param("from", TIME_TEXT, "起始时间（含）"),
    Param("to", TIME_TEXT, "结束时间（不含）"),
)
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@bp.before_request
def _authenticate() -> None:
    if is_public(request.endpoint):
        return
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    user = user_for_token(token.strip()) if scheme.lower() == "bearer" and token.strip() else None
    if user is None:
        raise Unauthorized("缺少或无效的 API 令牌（Authorization: Bearer <token>）")
    g.api_user = user


def _user() -> User:
    return g.api_user  # type: ignore[no-any-return]


def _commit() -> None:
    db.session.commit()


# --- the description itself -------------------------------------------------------------------


@bp.get("/openapi.json")
@operation(
    summary="本接口的 OpenAPI 3.1 描述",
    tag=DOCS,
    public=True,
    description="由代码中每个接口的声明生成。",
    responses={200: Response("OpenAPI 文档", {"type": "object"})},
)
def openapi_document() -> Any:
    """The OpenAPI document, built from the routes and their declared operations."""
    return jsonify(build_document(current_app))


@bp.get("/docs")
@operation(
    summary="交互式接口文档（网页）",
    tag=DOCS,
    public=True,
    description="列出每个接口、参数和数据结构，可填入令牌直接试用。",
    query=(Param("lang", {"type": "string", "enum": ["zh", "en"]}, "界面语言"),),
    responses={200: Response("HTML 页面", {"type": "string"}, media_type="text/html")},
)
def docs_page(query: dict[str, Any]) -> Any:
    """The interactive documentation page (its script reads openapi.json)."""
    return render_template("api_docs.html")


# --- items ------------------------------------------------------------------------------------


@bp.post("/items")
@operation(
    summary="新建稿件（文章用 JSON，视频用 multipart 上传）",
    tag=ITEMS,
    roles=EDITOR,
    description="文章：JSON，submit=true 时创建后立即提交审查。视频：multipart/form-data，"
    "字段 file 为视频（MP4/WebM/MOV），subtitles 为字幕文件（SRT/WebVTT/ASS，可多个）。",
    body=S.NEW_ARTICLE,
    form=S.NEW_VIDEO,
    body_required=True,
    body_example={
        "title": "秋季流感疫苗接种提示",
        "body": "流感疫苗需要每年接种。",
        "submit": True,
    },
    responses={
        201: Response(
            "已创建；视频另给出视频文件的 SHA-256",
            S.obj({"id": S.INT, "state": S.STATE}, {"video": S.SHA256}),
        )
    },
)
def create_item(body: dict[str, Any]) -> Any:
    """Create an article (optionally submitting it at once)."""
    user = _user()
    if request.mimetype == "multipart/form-data":
        return _create_video(user, body)
    item = ops.create_item(
        title=body.get("title"),
        body=body.get("body", ""),
        kind=str(body.get("kind", "article")),
        actor=user,
        submit=body.get("submit", False),
    )
    _commit()
    return jsonify({"id": item.id, "state": item.state.value}), 201


def _create_video(user: User, form: dict[str, Any]) -> Any:
    """A video item from multipart/form-data: kind=video, title, description, submit, file,
    optional subtitles (SRT, WebVTT or ASS; several allowed)."""
    title, description = form.get("title"), form.get("description") or ""
    # Title, description and the files are all checked before any file is kept.
    asset, subtitles = accept_video_upload(
        parse_upload(), actor=user, title=title, description=description
    )
    item = videos.create_video_item(
        title=title,
        description=description,
        asset=asset,
        subtitles=subtitles,
        actor=user,
        submit=form.get("submit", "false") in ("true", "1"),
    )
    _commit()
    return jsonify({"id": item.id, "state": item.state.value, "video": asset.sha256}), 201


@bp.get("/items")
@operation(
    summary="列出调用者可见的稿件（分页：每页 limit 篇，响应头给出总数和下一页）",
    description=(
        "按 sort 排序（默认 newest：最新建立在前），每页至多 limit 篇（默认 50，最多 500）。"
        "响应头 X-Total-Count 是筛选后的总数；还有下一页时，Link 头给出 rel=\"next\" 的地址"
        "（带 cursor 参数），一直跟到没有 Link 头即为最后一页。"
    ),
    tag=ITEMS,
    query=(
        STATE_PARAM,
        Param("domain", S.DOMAIN, "只列出当前版本初筛识别出该领域的稿件"),
        Param("sort", {"type": "string", "enum": list(lists.ITEM_SORTS)}, "排序"),
        Param("limit", {"type": "integer", "minimum": 1, "maximum": paging.MAX_LIMIT}, "每页篇数"),
        Param("cursor", {"type": "string", "maxLength": 2000}, "上一页 Link 头给出的位置"),
    ),
    responses={200: Response("稿件列表（一页）", array_of(ref("Item")))},
)
def list_items(query: dict[str, Any]) -> Any:
    """The caller's visible items, one keyset page; the total and the next page in headers."""
    sort = query.get("sort", "newest")
    try:
        page = lists.item_page(
            _user(),
            state=ItemState(query["state"]) if "state" in query else None,
            domain=query.get("domain"),
            sort=sort,
            cursor=query.get("cursor"),
            limit=query.get("limit", paging.DEFAULT_LIMIT),
        )
    except paging.CursorError as exc:
        raise InvalidInput("分页位置无效，请从第一页重新列出", field="cursor") from exc
    response = jsonify([item_to_dict(i) for i in page.rows])
    response.headers["X-Total-Count"] = str(page.total)
    if page.next_cursor:
        args = {k: v for k, v in request.args.items() if k != "cursor"}
        next_url = url_for("api.list_items", **args, cursor=page.next_cursor, _external=True)
        response.headers["Link"] = f'<{next_url}>; rel="next"'
    return response


@bp.get("/items/<int:item_id>")
@operation(
    summary="读取一篇稿件：状态、机器筛查发现、审核任务、专家结论和发布回执",
    tag=ITEMS,
    path_params=ITEM_ID,
    responses={200: Response("稿件详情", ref("ItemDetail"))},
)
def get_item(item_id: int) -> Any:
    """One item with its screening, assignments, decisions and publication."""
    return jsonify(item_to_dict(load_item(_user(), item_id), detail=True))


@bp.post("/items/<int:item_id>/submit")
@operation(
    summary="提交草稿进入机器筛查",
    tag=ITEMS,
    roles=EDITOR,
    path_params=ITEM_ID,
    errors=(409,),
    responses={202: Response("已提交，等待筛查", ref("StateChange"))},
)
def submit_item(item_id: int) -> Any:
    """Submit a draft for screening."""
    user = _user()
    item = load_item(user, item_id)
    ops.submit_item(item, actor=user)
    _commit()
    return jsonify({"id": item.id, "state": item.state.value}), 202


@bp.post("/items/<int:item_id>/revise")
@operation(
    summary="修改稿件：草稿原地修改，其余状态生成新版本并重新筛查",
    tag=ITEMS,
    roles=EDITOR,
    path_params=ITEM_ID,
    body=S.REVISION,
    errors=(409,),
    responses={200: Response("修改后的稿件", ref("Item"))},
)
def revise_item(item_id: int, body: dict[str, Any]) -> Any:
    """Edit the item: a draft in place; otherwise a new version that is screened again."""
    user = _user()
    item = load_item(user, item_id)
    title, text = body.get("title", item.title), body.get("body", item.body)
    if item.state.value == "draft":
        ops.update_draft(item, title=title, body=text, actor=user)
    else:
        pool_ops.revise_item(item, title=title, body=text, actor=user)
    _commit()
    return jsonify(item_to_dict(item)), 200


@bp.post("/items/<int:item_id>/withdraw")
@operation(
    summary="撤回尚未发布的稿件",
    tag=ITEMS,
    roles=EDITOR,
    path_params=ITEM_ID,
    body=S.OPTIONAL_REASON,
    errors=(409,),
    responses={200: Response("已撤回", ref("StateChange"))},
)
def withdraw_item(item_id: int, body: dict[str, Any]) -> Any:
    """Withdraw an unpublished item."""
    user = _user()
    item = load_item(user, item_id)
    pool_ops.withdraw_item(item, actor=user, reason=body.get("reason", ""))
    _commit()
    return jsonify({"id": item.id, "state": item.state.value})


@bp.post("/items/<int:item_id>/publish")
@operation(
    summary="发布初筛通过或审核通过的版本，返回签名的发布回执",
    tag=ITEMS,
    roles=EDITOR,
    path_params=ITEM_ID,
    body=S.PUBLISH,
    errors=(409,),
    responses={200: Response("发布回执", S.obj({"receipt": ref("Receipt")}))},
)
def publish_item(item_id: int, body: dict[str, Any]) -> Any:
    """Publish a cleared or approved version; returns the signed receipt."""
    user = _user()
    item = load_item(user, item_id)
    key = request.headers.get("Idempotency-Key")
    if key is not None and not (0 < len(key) <= 100 and key.isprintable()):
        raise InvalidInput("Idempotency-Key 须为 1–100 个可打印字符", field="Idempotency-Key")
    if key and (done := ops.publication_for_key(item.id, key)) is not None:
        return _replayed(done)
    try:
        pub = ops.publish_item(
            item,
            actor=user,
            signer=signer(),
            content_sha256=body.get("content_sha256"),
            idempotency_key=key,
        )
        _commit()
    except (Conflict, IntegrityError):
        # A concurrent request with the same key may have won: answer as it did.
        db.session.rollback()
        done = ops.publication_for_key(item_id, key) if key else None
        if done is None:
            raise
        return _replayed(done)
    return jsonify({"receipt": pub.receipt})


def _replayed(pub: Any) -> Any:
    """The first answer to a publish, again (same Idempotency-Key)."""
    response = jsonify({"receipt": pub.receipt})
    response.headers["Idempotent-Replayed"] = "true"
    return response


@bp.get("/items/<int:item_id>/receipt")
@operation(
    summary="下载发布回执和核验签名用的公钥",
    tag=ITEMS,
    path_params=ITEM_ID,
    description="尚未发布的稿件返回 404（error=not_published）。",
    responses={
        200: Response(
            "回执（Ed25519 签名）与 PEM 公钥",
            S.obj({"receipt": ref("Receipt"), "public_key": S.STR}),
        )
    },
)
def get_receipt(item_id: int) -> Any:
    """The signed publication receipt and the public key to check it."""
    item = load_item(_user(), item_id)
    pub = latest_publication(item)
    if pub is None:
        raise NotFound("该稿件尚未发布", code="not_published")
    return jsonify({"receipt": pub.receipt, "public_key": signer().public_pem()})


@bp.post("/items/<int:item_id>/appeal")
@operation(
    summary="对驳回提出申诉（一次），由未参与过的专家重审",
    tag=ITEMS,
    roles=EDITOR,
    path_params=ITEM_ID,
    body=S.WITH_REASON,
    body_required=True,
    errors=(409,),
    responses={200: Response("申诉后的稿件", ref("Item"))},
)
def appeal_item(item_id: int, body: dict[str, Any]) -> Any:
    """Appeal a rejection once; different experts review it."""
    user = _user()
    item = load_item(user, item_id)
    pool_ops.appeal(item, actor=user, reason=body.get("reason"), deadlines=deadlines())
    _commit()
    return jsonify(item_to_dict(item))


@bp.post("/items/<int:item_id>/request-review")
@operation(
    summary="请专家审核初筛通过的稿件（发布前），按疑似问题稿件的方式分配专家",
    tag=ITEMS,
    roles=EDITOR,
    path_params=ITEM_ID,
    body=S.OPTIONAL_REASON,
    description=(
        "只适用于初筛通过（cleared）的稿件，其他状态返回 409；之后须经专家审核通过才能发布。"
    ),
    errors=(409,),
    responses={200: Response("转交专家审核后的稿件", ref("Item"))},
)
def request_review(item_id: int, body: dict[str, Any]) -> Any:
    """Ask experts to review a cleared item before publishing it."""
    user = _user()
    item = load_item(user, item_id)
    pool_ops.request_expert_review(
        item, actor=user, reason=body.get("reason", ""), deadlines=deadlines()
    )
    _commit()
    return jsonify(item_to_dict(item))


# --- experts' reviews -------------------------------------------------------------------------


@bp.get("/assignments")
@operation(
    summary="我的审核任务（专家，最新在前）",
    tag=REVIEWS,
    roles=EXPERT,
    responses={200: Response("审核任务列表", array_of(ref("Assignment")))},
)
def list_assignments() -> Any:
    """The caller's assignments (experts), newest first."""
    expert = Expert.for_user(_user())
    if expert is None:
        return jsonify([])
    rows = db.session.scalars(
        select(Assignment).where(Assignment.expert_id == expert.id).order_by(Assignment.id.desc())
    )
    return jsonify([a.to_dict() for a in rows])


@bp.post("/assignments/<int:assignment_id>/accept")
@operation(
    summary="接受审核邀请",
    tag=REVIEWS,
    roles=EXPERT,
    path_params=ASSIGNMENT_ID,
    errors=(409,),
    responses={200: Response("审核任务", ref("Assignment"))},
)
def accept_assignment(assignment_id: int) -> Any:
    """Accept an offered review (inside its deadline)."""
    user = _user()
    assignment = load_assignment(user, assignment_id, to_read=False)
    try:
        pool_ops.accept_assignment(assignment, actor=user, deadlines=deadlines())
    except pool_ops.AssignmentEnded:
        _commit()  # the expiry (and the reassignment) stand; the expert gets 409
        raise
    _commit()
    return jsonify(assignment.to_dict())


@bp.post("/assignments/<int:assignment_id>/decline")
@operation(
    summary="谢绝审核邀请（须写原因），稿件转给下一位合适的专家",
    tag=REVIEWS,
    roles=EXPERT,
    path_params=ASSIGNMENT_ID,
    body=S.WITH_REASON,
    body_required=True,
    errors=(409,),
    responses={200: Response("审核任务", ref("Assignment"))},
)
def decline_assignment(assignment_id: int, body: dict[str, Any]) -> Any:
    """Decline an offer with a reason; the version goes to the next eligible expert."""
    user = _user()
    assignment = load_assignment(user, assignment_id, to_read=False)
    pool_ops.decline_assignment(
        assignment, actor=user, reason=body.get("reason"), deadlines=deadlines()
    )
    _commit()
    return jsonify(assignment.to_dict())


@bp.post("/assignments/<int:assignment_id>/decision")
@operation(
    summary="签署审核结论（须重新输入登录密码）",
    tag=REVIEWS,
    roles=EXPERT,
    path_params=ASSIGNMENT_ID,
    description="驳回和要求修改须填写 comment，驳回至少一条 references。"
    "密码错误返回 403（error=password_required）；与登录一样按账号和地址计数，"
    "错误过多返回 429（error=too_many_attempts，带 Retry-After）。",
    body=S.DECISION,
    body_required=True,
    errors=(409, 429),
    responses={
        200: Response(
            "已签署",
            S.obj(
                {
                    "id": S.INT,
                    "decision": S.COMPONENTS["Decision"]["properties"]["decision"],
                    "item_state": S.nullable(S.STATE),
                }
            ),
        )
    },
)
def decide(assignment_id: int, body: dict[str, Any]) -> Any:
    """Sign a decision on an accepted, live assignment; the password must be entered again."""
    user = _user()
    assignment = load_assignment(user, assignment_id, to_read=False)
    if not confirm_password(user, body["password"], purpose="decision"):
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
    try:
        decision = pool_ops.decide(
            assignment,
            actor=user,
            decision=body["decision"],
            comment=body.get("comment", ""),
            references=body.get("references", []),
            finding_verdicts=body.get("finding_verdicts", {}),
            password_ok=True,
            signer=signer(),
            deadlines=deadlines(),
            expected_lock_version=body.get("lock_version"),
        )
    except pool_ops.AssignmentEnded:
        _commit()  # the expiry (and the reassignment) stand; the expert gets 409
        raise
    _commit()
    item = db.session.get(Item, assignment.item_id)
    return jsonify(
        {
            "id": decision.id,
            "decision": decision.decision.value,
            "item_state": item.state.value if item else None,
        }
    )


@bp.post("/assignments/claim")
@operation(
    summary="认领模式：领取本人领域里等待最久的稿件",
    tag=REVIEWS,
    roles=EXPERT,
    responses={
        200: Response(
            "暂无可认领的稿件", S.obj({"assignment": {"type": "null"}, "message": S.STR})
        ),
        201: Response("已认领", S.obj({"assignment": ref("Assignment")})),
    },
)
def claim_next() -> Any:
    """Pull mode: take the oldest waiting version in the caller's domains."""
    assignment = pool_ops.claim_next(_user(), deadlines=deadlines())
    _commit()
    if assignment is None:
        return jsonify({"assignment": None, "message": "暂无可认领的稿件"})
    return jsonify({"assignment": assignment.to_dict()}), 201


# --- notifications ----------------------------------------------------------------------------


@bp.get("/notifications")
@operation(
    summary="我的通知（最新在前，最多 200 条）",
    tag=OWN,
    query=(Param("unread", S.BOOL, "true：只列未读"),),
    responses={200: Response("通知列表", array_of(ref("Notification")))},
)
def list_notifications(query: dict[str, Any]) -> Any:
    """The caller's notifications, newest first (``?unread=1`` for unread only)."""
    rows = select(Notification).where(Notification.user_id == _user().id)
    if query.get("unread"):
        rows = rows.where(Notification.read_at.is_(None))
    notes = db.session.scalars(rows.order_by(Notification.id.desc()).limit(200))
    return jsonify([notification_to_dict(n) for n in notes])


@bp.post("/notifications/<int:note_id>/read")
@operation(
    summary="把一条通知标为已读",
    tag=OWN,
    path_params={"note_id": "通知编号"},
    responses={200: Response("通知", ref("Notification"))},
)
def read_notification(note_id: int) -> Any:
    """Mark one notification read."""
    note = db.session.get(Notification, note_id)
    if note is None or note.user_id != _user().id:
        raise NotFound("找不到该通知")
    if note.read_at is None:
        note.read_at = utcnow()
        _commit()
    return jsonify(notification_to_dict(note))


# --- expert pool and queue --------------------------------------------------------------------


@bp.get("/experts")
@operation(
    summary="专家库及每位专家当前的审核负荷",
    tag=POOL,
    roles=OVERSIGHT,
    responses={200: Response("专家列表", array_of(ref("Expert")))},
)
def list_experts() -> Any:
    """The pool with load (admins and auditors)."""
    loads = pool.expert_loads()
    rows = db.session.scalars(select(Expert).order_by(Expert.id))
    return jsonify([expert_to_dict(e, loads.get(e.id, 0)) for e in rows])


@bp.patch("/experts/<int:expert_id>")
@operation(
    summary="修改专家的库内信息（管理员）",
    tag=POOL,
    roles=ADMIN,
    path_params={"expert_id": "专家编号"},
    body=S.EXPERT_PATCH,
    responses={200: Response("修改后的专家", ref("Expert"))},
)
def patch_expert(expert_id: int, body: dict[str, Any]) -> Any:
    """Change an expert's pool fields (admins)."""
    user = _user()
    expert = pool_ops.get_expert(expert_id)
    for key in ("leave_from", "leave_until"):
        if body.get(key):
            body[key] = parse_time(body[key], key)
    pool.update_expert(expert, body, actor=user)
    _commit()
    return jsonify(expert_to_dict(expert, pool.expert_loads().get(expert.id, 0)))


@bp.post("/items/<int:item_id>/assign")
@operation(
    summary="管理员把等待中的版本指派给指定专家",
    tag=POOL,
    roles=ADMIN,
    path_params=ITEM_ID,
    body=S.ASSIGN,
    body_required=True,
    errors=(409,),
    responses={201: Response("新的审核任务", ref("Assignment"))},
)
def admin_assign(item_id: int, body: dict[str, Any]) -> Any:
    """An admin hands a waiting version to a chosen expert."""
    user = _user()
    item = load_item(user, item_id)
    assignment = pool_ops.admin_assign(
        item, pool_ops.get_expert(body["expert_id"]), actor=user, deadlines=deadlines()
    )
    _commit()
    return jsonify(assignment.to_dict()), 201


@bp.get("/queue")
@operation(
    summary="审核队列：等待中的版本、落选原因和逾期任务",
    tag=POOL,
    roles=OVERSIGHT,
    responses={200: Response("队列概况", ref("Queue"))},
)
def queue() -> Any:
    """Waiting versions with waiting time and who was refused why; overdue assignments (admins)."""
    return jsonify(queue_overview())


# --- audit and oversight ----------------------------------------------------------------------


@bp.get("/audit/events")
@operation(
    summary="审计账本事件（按序号递增）",
    tag=AUDIT,
    roles=OVERSIGHT,
    query=(
        # Bound to the seq column's type (PostgreSQL INTEGER): a larger value is a 400, not a 500.
        Param(
            "after", {"type": "integer", "minimum": -1, "maximum": 2**31 - 1}, "只列序号大于它的"
        ),
        Param("limit", {"type": "integer", "minimum": 1, "maximum": 2**53}, "最多条数（≤5000）"),
        *AUDIT_FILTERS,
    ),
    responses={200: Response("事件列表", array_of(ref("AuditEvent")))},
)
def audit_events(query: dict[str, Any]) -> Any:
    """Ledger events after ``after`` (auditors and admins)."""
    after, limit = query.get("after", -1), min(query.get("limit", 500), 5000)
    rows = db.session.scalars(
        downloads.audit_query(query).where(AuditEvent.seq > after).limit(limit)
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


@bp.get("/audit/checkpoints")
@operation(
    summary="已签名的账本检查点（最新在前）；审计人员应在系统外保存副本",
    tag=AUDIT,
    roles=OVERSIGHT,
    responses={200: Response("检查点列表", array_of(ref("Checkpoint")))},
)
def list_checkpoints() -> Any:
    """Signed checkpoints, newest first (auditors and admins keep copies outside the system)."""
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
@operation(
    summary="立即签署一个账本检查点",
    tag=AUDIT,
    roles=OVERSIGHT,
    responses={
        201: Response("新检查点", S.obj({"tree_size": S.INT, "root_hash": S.STR, "note": S.STR}))
    },
)
def make_checkpoint() -> Any:
    """Sign a checkpoint now (auditors and admins)."""
    row = ledger.create_checkpoint(
        signer=signer(), origin=str(current_app.config["LEDGER_ORIGIN"]), actor=_user()
    )
    _commit()
    return jsonify({"tree_size": row.tree_size, "root_hash": row.root_hash, "note": row.note}), 201


@bp.get("/audit/public-key")
@operation(
    summary="签署检查点、审核结论和发布回执的 Ed25519 公钥（PEM）",
    tag=AUDIT,
    roles=OVERSIGHT,
    responses={200: Response("PEM 公钥", S.STR, media_type="application/x-pem-file")},
)
def public_key() -> Any:
    """The Ed25519 public key that signs checkpoints, decisions and receipts."""
    return current_app.response_class(signer().public_pem(), mimetype="application/x-pem-file")


@bp.post("/items/<int:item_id>/rereview")
@operation(
    summary="要求重新审核：由未参与过的专家再审一次",
    tag=AUDIT,
    roles=OVERSIGHT,
    path_params=ITEM_ID,
    body=S.WITH_REASON,
    body_required=True,
    errors=(409,),
    responses={200: Response("稿件", ref("Item"))},
)
def rereview_item(item_id: int, body: dict[str, Any]) -> Any:
    """Auditors and admins: ask experts not involved before to review the decision again."""
    user = _user()
    item = load_item(user, item_id)
    pool_ops.request_rereview(item, actor=user, reason=body.get("reason"), deadlines=deadlines())
    _commit()
    return jsonify(item_to_dict(item))


@bp.post("/items/<int:item_id>/recall")
@operation(
    summary="下架已发布的稿件（须写原因）",
    tag=AUDIT,
    roles=OVERSIGHT,
    path_params=ITEM_ID,
    body=S.WITH_REASON,
    body_required=True,
    errors=(409,),
    responses={200: Response("稿件", ref("Item"))},
)
def recall_item(item_id: int, body: dict[str, Any]) -> Any:
    """Auditors and admins: take a published item down (下架) with a reason."""
    user = _user()
    item = load_item(user, item_id)
    pool_ops.recall_item(item, actor=user, reason=body.get("reason"))
    _commit()
    return jsonify(item_to_dict(item))


@bp.get("/dashboard")
@operation(
    summary="仪表盘数字：量、标记率、结论、周转时间、按领域/单位/专家/规则",
    tag=AUDIT,
    roles=OVERSIGHT,
    query=(
        Param("from", TIME_TEXT, "起始时间"),
        Param("to", TIME_TEXT, "结束时间"),
        Param("domain", {"type": "string", "maxLength": 100}, "只看该领域"),
        Param("unit", {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}, "只看该单位编号"),
    ),
    responses={200: Response("仪表盘数字", ref("Dashboard"))},
)
def dashboard_figures(query: dict[str, Any]) -> Any:
    """Dashboard figures (auditors, admins): ``from``, ``to``, optional ``domain`` and ``unit``."""
    start = parse_time(query["from"], "from") if "from" in query else None
    end = parse_time(query["to"], "to") if "to" in query else None
    return jsonify(
        dashboard.figures(
            dashboard.Period(start, end), domain=query.get("domain"), unit_id=query.get("unit")
        )
    )


@bp.post("/quality/samples")
@operation(
    summary="质检：随机抽取已有结论的版本，交给未参与的专家复核",
    tag=AUDIT,
    roles=OVERSIGHT,
    body=S.QUALITY_SAMPLE,
    responses={201: Response("抽样", ref("QualitySample"))},
)
def draw_quality_sample(body: dict[str, Any]) -> Any:
    """质检: draw decided versions at random for re-review (auditors and admins)."""
    start = parse_time(body["from"], "from") if body.get("from") else None
    end = parse_time(body["to"], "to") if body.get("to") else None
    sample = quality.draw_sample(
        actor=_user(),
        size=body.get("size", 10),
        start=start,
        end=end,
        domain=body.get("domain") or None,
        deadlines=deadlines(),
    )
    _commit()
    return jsonify(quality.sample_report(sample)), 201


@bp.get("/quality/samples")
@operation(
    summary="所有质检抽样及其进度和推翻率",
    tag=AUDIT,
    roles=OVERSIGHT,
    responses={200: Response("抽样列表", array_of(ref("QualitySample")))},
)
def list_quality_samples() -> Any:
    """Every sample with its progress and overturn rate."""
    rows = db.session.scalars(select(QualitySample).order_by(QualitySample.id.desc()).limit(200))
    return jsonify([quality.sample_report(s) for s in rows])


@bp.get("/quality/samples/<int:sample_id>")
@operation(
    summary="一次质检抽样的每项复核",
    tag=AUDIT,
    roles=OVERSIGHT,
    path_params={"sample_id": "抽样编号"},
    responses={200: Response("抽样", ref("QualitySample"))},
)
def get_quality_sample(sample_id: int) -> Any:
    """One sample with every check."""
    sample = db.session.get(QualitySample, sample_id)
    if sample is None:
        raise NotFound("找不到该质检抽样")
    return jsonify(quality.sample_report(sample))


@bp.get("/search")
@operation(
    summary="全文检索（中文分词）调用者可见的稿件及其审核结论",
    tag=ITEMS,
    query=(
        Param("q", {"type": "string", "maxLength": 200}, "搜索词", required=True),
        STATE_PARAM,
    ),
    responses={200: Response("匹配的稿件", array_of(ref("Item")))},
)
def search(query: dict[str, Any]) -> Any:
    """Full-text search (Chinese, jieba) over the caller's visible items and their decisions."""
    user = _user()
    text = ops.clean_text(query["q"], "q", "搜索词", max_chars=200)
    if not text.strip():
        raise InvalidInput("请输入搜索词", field="q")
    restrict = None
    if not user.has_role(Role.auditor, Role.admin):
        restrict = downloads.visible_items(user).with_only_columns(Item.id)
    ids = search_items(text, restrict=restrict)
    items = {i.id: i for i in db.session.scalars(select(Item).where(Item.id.in_(ids)))}
    state = query.get("state")
    rows = [items[i] for i in ids if i in items and (not state or items[i].state.value == state)]
    return jsonify([item_to_dict(i) for i in rows])


# --- exports (each download is an audit event) ------------------------------------------------


def _send(kind: str, fmt: str, query: dict[str, Any]) -> Any:
    user = _user()
    filters = {k: str(v) for k, v in query.items()}
    return downloads.send(downloads.build(kind, fmt, user, filters), user=user, filters=filters)


@bp.get("/export/items.<any(csv, xlsx):fmt>")
@operation(
    summary="导出调用者可见的稿件（CSV 带 BOM，或 XLSX）",
    tag=AUDIT,
    path_params={"fmt": "文件格式"},
    query=(STATE_PARAM,),
    responses={200: Response("CSV 或 XLSX 文件", S.FILE, "text/csv")},
)
def export_items(fmt: str, query: dict[str, Any]) -> Any:
    """Visible items as CSV or XLSX; the download is audited."""
    return _send("items", fmt, query)


@bp.get("/export/audit.<any(csv, xlsx):fmt>")
@operation(
    summary="导出审计日志（CSV 或 XLSX）",
    tag=AUDIT,
    roles=OVERSIGHT,
    path_params={"fmt": "文件格式"},
    query=AUDIT_FILTERS,
    responses={200: Response("CSV 或 XLSX 文件", S.FILE, "text/csv")},
)
def export_audit(fmt: str, query: dict[str, Any]) -> Any:
    """The audit log as CSV or XLSX (filters as for /audit/events); audited."""
    return _send("audit", fmt, query)


@bp.get("/export/dashboard.xlsx")
@operation(
    summary="导出仪表盘工作簿（XLSX）",
    tag=AUDIT,
    roles=OVERSIGHT,
    query=(
        Param("from", TIME_TEXT, "起始时间"),
        Param("to", TIME_TEXT, "结束时间"),
        Param("domain", {"type": "string", "maxLength": 100}, "只看该领域"),
    ),
    responses={200: Response("XLSX 文件", S.FILE, XLSX)},
)
def export_dashboard(query: dict[str, Any]) -> Any:
    """The dashboard workbook; audited."""
    return _send("dashboard", "xlsx", query)


@bp.get("/audit/export.zip")
@operation(
    summary="账本导出包（事件、检查点、公钥），供离线 kepu audit verify 核验",
    tag=AUDIT,
    roles=OVERSIGHT,
    responses={200: Response("ZIP 文件", S.FILE, "application/zip")},
)
def export_ledger() -> Any:
    """The ledger bundle (events, checkpoints, public key) for offline `kepu audit verify`."""
    return _send("ledger", "zip", {})
