"""Server-rendered pages for editors, experts, auditors and admins (Chinese, or English)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext
from flask_login import current_user, login_required, login_user, logout_user
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError

import rules
from expert_pool import operations as pool_ops
from expert_pool import pool, quality
from expert_pool.models import Assignment, AssignmentState, Expert, Notification, QualitySample
from expert_pool.notifications import unread_count
from review import (
    dashboard,
    downloads,
    feed,
    ledger,
    lists,
    paging,
    policy,
    ratelimit,
    rulepacks,
    videos,
)
from review import operations as ops
from review.app import login_manager
from review.audit import AuditEvent, record_event
from review.auth import (
    authenticate,
    change_password,
    create_user,
    end_login_session,
    record_failed_login,
    record_limited_login,
    reset_password,
    set_active,
    start_login_session,
    touch_login_session,
    user_for_session,
)
from review.db import db, utcnow
from review.diffing import diff_html
from review.errors import (
    Conflict,
    DomainError,
    Forbidden,
    InvalidInput,
    NotFound,
    TooManyAttempts,
)
from review.i18n import (
    CONTEXT_LABELS,
    N_,
    VERDICT_LABELS,
    chosen_language,
    risk_label,
    translate,
)
from review.lifecycle import ItemState
from review.models import CATEGORY_FOR_EXPERT, Decision, Item, ItemKind, Role, Unit, User, Version
from review.reauth import confirm_password
from review.rendering import field_text, render_markdown, shown_passages, textarea_offset
from review.search import search_items
from review.web import (
    LOCAL_TZ,
    MAX_DB_INT,
    WAITING_STATES,
    accept_video_upload,
    can_see_item,
    db_id,
    deadlines,
    item_assignments,
    item_decisions,
    item_status,
    latest_publication,
    latest_screened_version,
    load_assignment,
    load_item,
    parse_time,
    parse_upload,
    queue_overview,
    require_role,
    roles_required,
    signer,
    text_findings,
    video_asset,
)
from rules import CATEGORIES, DOMAINS, LEVELS, load_default_ruleset

#: The item list's sort orders as people name them (review.lists.ITEM_SORTS).
ITEM_SORT_LABELS = {
    "updated": N_("最近更新在前"),
    "newest": N_("最新建立在前"),
    "oldest": N_("最早建立在前"),
    "title": N_("按标题"),
}

bp = Blueprint("web", __name__)

login_manager.login_view = "web.login"
login_manager.login_message = N_("请先登录")  # shown through localize_callback
login_manager.localize_callback = gettext


@login_manager.user_loader
def _load_user(session_id: str) -> User | None:
    cfg = current_app.config
    return user_for_session(
        session_id,
        idle_timeout=cfg["SESSION_IDLE_TIMEOUT"],
        lifetime=cfg["PERMANENT_SESSION_LIFETIME"],
    )


@bp.before_request
def _touch_sign_in() -> None:
    """Keep an active sign-in alive (idle timeout), before the view does anything."""
    if current_user.is_authenticated and touch_login_session(current_user.login_session_id):
        db.session.commit()


@login_manager.unauthorized_handler
def _unauthorized() -> Any:
    if request.path.startswith("/api/") or request.is_json or request.path.endswith(".json"):
        return jsonify({"error": "unauthorized", "message": gettext("请先登录")}), 401
    return redirect(
        url_for("web.login", next=request.full_path if request.method == "GET" else None)
    )


def _fresh_session() -> None:
    """Start a new session (no fixation), keeping only the chosen language."""
    lang = session.get("lang")
    session.clear()
    if lang:
        session["lang"] = lang


def _safe_next(target: str | None) -> str | None:
    if target and target.startswith("/") and not target.startswith("//"):
        return target
    return None


# --- the public record (no login) --------------------------------------------------------------


def _named(entries: list[Any]) -> list[Any]:
    ids = {uid for e in entries for uid in e.reviewer_ids}
    feed.name_reviewers(entries, pool.public_reviewers(ids))
    return entries


@bp.get("/published")
def published() -> Any:
    """Published items with the 经专家审核 badge and the experts who agreed to be named."""
    entries = _named(feed.published_entries())
    return render_template("published.html", entries=entries, local_time=_local_time)


@bp.get("/published/<int:item_id>")
def published_item(item_id: int) -> Any:
    """One published item's text for the public (404 once recalled)."""
    entry = feed.published_entry(item_id)
    if entry is None:
        raise NotFound(gettext("该稿件未发布或已下架"))
    _named([entry])
    body = render_markdown(entry.body) if entry.kind == ItemKind.article.value else None
    return render_template("published_item.html", e=entry, body=body, local_time=_local_time)


@bp.get("/feed.atom")
def feed_atom() -> Any:
    """The same list as an Atom 1.0 feed."""
    entries = _named(feed.published_entries(limit=50))
    base = str(current_app.config["BASE_URL"]).rstrip("/")
    document = feed.atom_feed(
        entries,
        feed_id=f"{base}/feed.atom",
        title=gettext("科普信息科学性审查平台 · 已发布稿件"),
        self_url=f"{base}{url_for('web.feed_atom')}",
        page_url=f"{base}{url_for('web.published')}",
        entry_url={
            e.item_id: f"{base}{url_for('web.published_item', item_id=e.item_id)}" for e in entries
        },
        author=gettext("科普信息科学性审查平台"),
        reviewed_label=gettext("经专家审核"),
        screened_label=gettext("经规则初筛"),
        reviewers_label=gettext("审核专家："),
        name_title=gettext("%(name)s（%(title)s）", name="%(name)s", title="%(title)s"),
        separator=gettext("、"),
    )
    return Response(document, mimetype="application/atom+xml")


def _local_time(value: Any) -> str:
    return value.astimezone(LOCAL_TZ).strftime("%Y-%m-%d %H:%M")


# --- health, sign-in ---------------------------------------------------------------------------


@bp.get("/healthz")
def healthz() -> Any:
    """Liveness and database check for load balancers."""
    db.session.execute(text("SELECT 1"))
    return jsonify({"status": "ok"})


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    """Sign in with username and password."""
    if request.method == "POST":
        username = request.form.get("username", "").strip()
        password = request.form.get("password", "")
        ip = request.remote_addr or "-"
        cfg = current_app.config
        limiter = ratelimit.for_app(current_app)
        account_key = f"login:account:{username[:80]}:{ip}"
        keys = [
            (account_key, int(cfg["LOGIN_MAX_FAILURES"])),
            (f"login:ip:{ip}", int(cfg["LOGIN_MAX_FAILURES_PER_IP"])),
        ]
        wait = limiter.blocked(keys)
        if wait:
            # Refused before the password is even checked: the right one waits too.
            record_limited_login(username, ip=ip, retry_after=wait)
            db.session.commit()
            flash(gettext("登录失败次数过多，请 %(seconds)s 秒后再试", seconds=wait), "error")
            response = make_response(render_template("login.html", username=username), 429)
            response.headers["Retry-After"] = str(wait)
            return response
        user = authenticate(username, password)
        if user is None:
            limiter.hit([key for key, _ in keys], int(cfg["LOGIN_WINDOW"]))
            record_failed_login(username, ip=ip)
            db.session.commit()
            flash(gettext("用户名或密码错误，或账号已停用"), "error")
            return render_template("login.html", username=username), 401
        limiter.reset(account_key)
        _fresh_session()
        start_login_session(user)
        login_user(user)
        db.session.commit()
        return redirect(_safe_next(request.args.get("next")) or url_for("web.home"))
    return render_template("login.html", username="")


@bp.post("/logout")
@login_required
def logout() -> Any:
    """Sign out and revoke this sign-in on the server."""
    end_login_session(current_user)
    db.session.commit()
    logout_user()
    _fresh_session()
    flash(gettext("您已退出登录"), "info")
    return redirect(url_for("web.login"))


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def account_password() -> Any:
    """Change one's own password; every other sign-in of the account ends."""
    if request.method == "POST":
        user = current_user._get_current_object()
        current = request.form.get("current_password", "")
        try:
            current_ok = confirm_password(user, current, purpose="password_change")
        except TooManyAttempts as exc:
            flash(exc.message, "error")
            response = make_response(render_template("account_password.html"), 429)
            response.headers["Retry-After"] = str(exc.extra["retry_after"])
            return response
        if not current_ok:
            record_event(
                "auth.password_change_refused",
                actor=user,
                subject_type="user",
                subject_id=user.id,
            )
            db.session.commit()
            flash(gettext("当前密码不正确"), "error")
            return render_template("account_password.html"), 400
        try:
            change_password(
                user,
                current=current,
                new=request.form.get("new_password", ""),
                confirm=request.form.get("confirm", ""),
            )
        except InvalidInput as exc:
            db.session.rollback()
            flash(exc.message, "error")
            return render_template("account_password.html"), 400
        # This browser carries on with a new sign-in (and a new session id).
        _fresh_session()
        login_user(user)
        db.session.commit()
        flash(gettext("密码已修改，其他设备上的登录已全部退出"), "info")
        return redirect(url_for("web.home"))
    return render_template("account_password.html")


@bp.get("/")
@login_required
def home() -> Any:
    """Each role's start page."""
    target = {
        Role.editor: "web.items",
        Role.expert: "web.assignments",
        Role.auditor: "web.audit_log",
        Role.admin: "web.admin_users",
    }[current_user.role]
    return redirect(url_for(target))


# --- editors -----------------------------------------------------------------------------------


@bp.get("/items")
@login_required
@roles_required(Role.editor, Role.auditor, Role.admin)
def items() -> Any:
    """Items visible to the user, with their state: filtered, sorted and paged."""
    state = request.args.get("state", "")
    domain = request.args.get("domain", "")
    sort = request.args.get("sort", "updated")
    if sort not in lists.ITEM_SORTS:
        sort = "updated"
    try:
        page = lists.item_page(
            current_user,
            state=ItemState(state) if state in ItemState.__members__ else None,
            domain=domain or None,
            sort=sort,
            cursor=request.args.get("cursor") or None,
            limit=paging.parse_limit(request.args.get("limit", paging.DEFAULT_LIMIT)),
        )
    except paging.CursorError as exc:
        raise InvalidInput(gettext("分页位置无效，请从第一页重新打开列表"), field="cursor") from exc
    return render_template(
        "items.html",
        items=page.rows,
        page=page,
        finding_counts=lists.finding_counts(page.rows),
        states=list(ItemState),
        state_filter=state,
        domain=domain,
        domains=DOMAINS,
        sort=sort,
        sorts=ITEM_SORT_LABELS,
        waiting=[state.value for state in WAITING_STATES],
    )


@bp.route("/items/new", methods=["GET", "POST"])
@login_required
@roles_required(Role.editor)
def new_item() -> Any:
    """Write or paste an article; save as draft or submit."""
    if request.method == "POST":
        try:
            item = ops.create_item(
                title=request.form.get("title"),
                body=request.form.get("body", ""),
                actor=current_user,
                submit=request.form.get("action") == "submit",
            )
        except InvalidInput as exc:
            db.session.rollback()
            flash(exc.message, "error")
            return render_template("item_form.html", item=None, form=request.form), 400
        db.session.commit()
        flash(
            gettext("已提交，正在进行机器初筛")
            if item.state is ItemState.submitted
            else gettext("草稿已保存"),
            "info",
        )
        return redirect(url_for("web.item_detail", item_id=item.id))
    return render_template("item_form.html", item=None, form={})


@bp.get("/items/<int:item_id>")
@login_required
def item_detail(item_id: int) -> Any:
    """An item with its versions, screening findings, assignments and decisions."""
    item = load_item(current_user, item_id)
    version = item.current_version
    report = version.report if version else None
    return render_template(
        "item_detail.html",
        item=item,
        version=version,
        report=report,
        pieces=highlight(version.body, report.findings if report else [], "body")
        if version
        else [],
        article_html=render_markdown(version.body) if version else None,
        shown=shown_passages(version.title, version.body, report.findings)
        if version and report
        else {},
        history=_version_history(item),
        assignments=item_assignments(item),
        decisions=item_decisions(item),
        publication=latest_publication(item),
        video=video_context(item, version, report.findings if report else []),
        status=_status_json(item),
        signoff_required=ops.needs_expert_signoff(item),
        # One key per rendering of the page: a double click or a resent form publishes once.
        publish_key=secrets.token_urlsafe(16),
    )


def video_context(item: Item, version: Version | None, findings: list[Any]) -> dict[str, Any]:
    """What the video templates show: the file, media steps, transcripts, timed findings."""
    if item.kind is not ItemKind.video:
        return {}
    asset = version.media_asset if version else item.media_asset
    sources = videos.version_sources(version) if version else ops.working_subtitles(item)
    timed = sorted(
        (f for f in findings if f.start_time is not None),
        key=lambda f: (f.start_time, f.end_time or 0),
    )
    flagged: list[tuple[float, float]] = [(f.start_time, f.end_time or f.start_time) for f in timed]
    transcripts = [
        {
            "source": s,
            "cues": [
                {
                    "start": c[0],
                    "end": c[1],
                    "text": c[2],
                    "flagged": any(a < c[1] and c[0] < b for a, b in flagged)
                    or any(a == c[0] for a, _ in flagged),
                }
                for c in s.cues
            ],
        }
        for s in sources
    ]
    jobs = ops.media_jobs(version) if version and version.media_asset_id else []
    return {
        "asset": asset,
        "number": version.number if version else None,
        "jobs": jobs,
        "busy": any(j.state.value in ("pending", "running") for j in jobs),
        "failed": any(j.state.value == "failed" for j in jobs),
        "transcripts": transcripts,
        "timed": timed,
    }


def _video_limits() -> dict[str, int]:
    cfg = current_app.config
    return {
        "video_mb": int(cfg["MAX_VIDEO_BYTES"]) // (1024 * 1024),
        "subtitle_kb": int(cfg["MAX_SUBTITLE_BYTES"]) // 1024,
    }


@bp.route("/items/new-video", methods=["GET", "POST"])
@login_required
@roles_required(Role.editor)
def new_video() -> Any:
    """Upload a video (MP4, WebM, MOV) with optional subtitle files; save as draft or submit."""
    if request.method == "POST":
        try:
            files = parse_upload()
            title, description = request.form.get("title"), request.form.get("description", "")
            asset, subtitle_files = accept_video_upload(
                files, actor=current_user, title=title, description=description
            )
            item = videos.create_video_item(
                title=title,
                description=description,
                asset=asset,
                subtitles=subtitle_files,
                actor=current_user,
                submit=request.form.get("action") == "submit",
            )
        except DomainError as exc:
            db.session.rollback()
            flash(exc.message, "error")
            form = {} if exc.status == 413 else request.form  # a cut-off body has no form
            return render_template("video_form.html", form=form, limits=_video_limits()), exc.status
        db.session.commit()
        flash(
            gettext("视频已上传，正在提取字幕和识别画面文字，完成后自动进行机器初筛")
            if item.state is ItemState.submitted
            else gettext("草稿已保存"),
            "info",
        )
        return redirect(url_for("web.item_detail", item_id=item.id))
    return render_template("video_form.html", form={}, limits=_video_limits())


def _media_response(path: str, mimetype: str, *, item: Item, what: str) -> Any:
    """A stored media file with range requests (seeking), never run as a page."""
    import os

    from flask import send_file

    if not os.path.isfile(path):
        raise NotFound(gettext("找不到该视频文件"))
    if current_user.has_role(Role.auditor) and request.headers.get("Range", "bytes=0-").startswith(
        "bytes=0-"
    ):
        record_event(
            "audit.download",
            actor=current_user,
            subject_type="item",
            subject_id=item.id,
            data={"what": what},
        )
        db.session.commit()
    response = send_file(path, mimetype=mimetype, conditional=True, max_age=0)
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response.headers["Cache-Control"] = "private, max-age=0"
    return response


@bp.get("/items/<int:item_id>/video")
@login_required
def item_video(item_id: int) -> Any:
    """The item's video file (``?version=N`` for an earlier version); same access as the item."""
    import os

    item = load_item(current_user, item_id)
    asset = video_asset(item, request.args.get("version", type=db_id))
    if asset is None:
        raise NotFound(gettext("找不到该视频文件"))
    path = os.path.join(str(current_app.config["MEDIA_FOLDER"]), asset.file_name)
    return _media_response(path, asset.mime_type, item=item, what="video")


@bp.get("/items/<int:item_id>/thumbnail.jpg")
@login_required
def item_thumbnail(item_id: int) -> Any:
    """The video's thumbnail (made by the media worker)."""
    import os

    item = load_item(current_user, item_id)
    asset = video_asset(item, request.args.get("version", type=db_id))
    if asset is None or not asset.thumbnail:
        raise NotFound(gettext("缩略图尚未生成"))
    path = os.path.join(str(current_app.config["MEDIA_FOLDER"]), asset.thumbnail)
    return _media_response(path, "image/jpeg", item=item, what="thumbnail")


@bp.post("/items/<int:item_id>/media/retry")
@login_required
@roles_required(Role.editor)
def retry_media(item_id: int) -> Any:
    """Queue the failed media steps of the current version again."""
    item = load_item(current_user, item_id)
    videos.retry_media(item, actor=current_user)
    db.session.commit()
    flash(gettext("已重新排队处理视频"), "info")
    return redirect(url_for("web.item_detail", item_id=item.id))


def _version_history(item: Item) -> list[dict[str, Any]]:
    """Every version, newest first, each after the first with its diff against the one before."""
    rows: list[dict[str, Any]] = []
    previous: Version | None = None
    for version in item.versions:
        entry: dict[str, Any] = {"version": version, "title_diff": None, "body_diff": None}
        if previous is not None:
            entry["title_changed"] = previous.title != version.title
            entry["body_changed"] = previous.body != version.body
            entry["title_diff"] = diff_html(previous.title, version.title)
            entry["body_diff"] = diff_html(previous.body, version.body)
        rows.append(entry)
        previous = version
    return rows[::-1]


def _status_json(item: Item) -> dict[str, Any]:
    """item_status with its labels in the reader's language."""
    status = item_status(item)
    status["state_label"] = translate(status["state_label"])
    status["risk_label"] = risk_label(status["risk_level"]) if status["risk_level"] else None
    offered = status["assignments"]["offered"]
    accepted = status["assignments"]["accepted"]
    completed = status["assignments"]["completed"]
    parts = []
    if status["screening"]["pending"]:
        parts.append(gettext("正在筛查…"))
    elif offered or accepted:
        parts.append(
            gettext(
                "已邀请 %(offered)s 位专家待接受，%(accepted)s 位正在审核，"
                "%(completed)s 位已签署结论",
                offered=offered,
                accepted=accepted,
                completed=completed,
            )
        )
    elif item.state is ItemState.flagged and not item.needs_admin:
        parts.append(gettext("等待分配专家"))
    if item.needs_admin:
        parts.append(gettext("等待管理员分配专家"))
    status["queue_label"] = gettext("；").join(parts)
    return status


@bp.get("/items/<int:item_id>/status.json")
@login_required
def item_status_json(item_id: int) -> Any:
    """An item's live status (read-only), with the item page's visibility rules."""
    item = load_item(current_user, item_id)
    response = jsonify(_status_json(item))
    response.headers["Cache-Control"] = "no-store"
    return response


#: The most items one status request may ask about.
MAX_STATUS_IDS = 100


@bp.get("/items/status.json")
@login_required
def items_status_json() -> Any:
    """Live status of several items (``?id=1&id=2``); items the user may not see are left out."""
    ids = request.args.getlist("id", type=db_id)
    if len(ids) > MAX_STATUS_IDS:
        raise InvalidInput(
            gettext("一次最多查询 %(count)s 篇稿件的状态", count=MAX_STATUS_IDS), field="id"
        )
    rows = db.session.scalars(select(Item).where(Item.id.in_(ids))).all() if ids else []
    visible = [i for i in rows if can_see_item(current_user, i)]
    response = jsonify({"items": [_status_json(i) for i in sorted(visible, key=lambda i: i.id)]})
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/items/preview.json")
@login_required
@roles_required(Role.editor)
def preview_markdown() -> Any:
    """Render the Markdown an editor is writing, as the item page will show it (saves nothing)."""
    source = ops.clean_text(
        request.form.get("body", ""), "body", gettext("正文"), max_chars=ops.MAX_BODY_CHARS
    )
    response = jsonify({"html": str(render_markdown(source))})
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/items/<int:item_id>/edit", methods=["GET", "POST"])
@login_required
@roles_required(Role.editor)
def edit_item(item_id: int) -> Any:
    """Edit a draft, or revise a submitted item (a new version is screened)."""
    item = load_item(current_user, item_id)
    if request.method == "POST":
        title, body = request.form.get("title"), request.form.get("body", "")
        try:
            if item.state is ItemState.draft:
                ops.update_draft(item, title=title, body=body, actor=current_user)
                if request.form.get("action") == "submit":
                    ops.submit_item(item, actor=current_user)
            else:
                pool_ops.revise_item(item, title=title, body=body, actor=current_user)
        except InvalidInput as exc:
            db.session.rollback()
            flash(exc.message, "error")
            return render_template(
                "item_form.html", item=item, form=request.form, **_revise_context(item)
            ), 400
        db.session.commit()
        flash(
            gettext("已保存")
            if item.state is ItemState.draft
            else gettext("新版本已提交，正在重新初筛"),
            "info",
        )
        return redirect(url_for("web.item_detail", item_id=item.id))
    return render_template(
        "item_form.html",
        item=item,
        form={"title": item.title, "body": item.body},
        **_revise_context(item),
    )


def _rule_title(rule_id: str | None) -> str | None:
    """The rule's Chinese title (rule packs are Chinese only; English pages show the id)."""
    if not rule_id or chosen_language() != "zh":
        return None
    try:
        return load_default_ruleset().rule(rule_id).title
    except KeyError:
        return None


def _revise_context(item: Item) -> dict[str, Any]:
    """What the editor revises against: the latest screened version's findings (with offsets
    in the form fields) and the experts' decisions, newest first."""
    if item.state is ItemState.draft:
        return {"screened": None, "panel": [], "decisions": []}
    screened = latest_screened_version(item)
    decisions: list[Decision] = item_decisions(item)[::-1]
    verdicts: dict[int, list[tuple[Decision, str]]] = {}
    for d in decisions:
        if screened is not None and d.version_id == screened.id:
            for key, value in d.finding_verdicts.items():
                if key.isdigit():
                    verdicts.setdefault(int(key), []).append((d, value))
    panel = []
    for f in text_findings(screened):
        source = screened.title if f.segment == "title" else screened.body  # type: ignore[union-attr]
        panel.append(
            {
                "finding": f,
                "rule_title": _rule_title(f.rule_id),
                "severity_label": risk_label(f.severity),
                "context_label": gettext(CONTEXT_LABELS[f.context])
                if f.context in CONTEXT_LABELS
                else f.context,
                "field": "title" if f.segment == "title" else "body",
                "start": textarea_offset(source, f.start),
                "end": textarea_offset(source, f.end),
                "text": field_text(f.text),
                "verdicts": [
                    (d, gettext(VERDICT_LABELS[v]) if v in VERDICT_LABELS else v)
                    for d, v in verdicts.get(f.id, [])
                ],
            }
        )
    return {"screened": screened, "panel": panel, "decisions": decisions}


def _editor_action(item_id: int, action: str) -> Any:
    item = load_item(current_user, item_id)
    if action == "submit":
        ops.submit_item(item, actor=current_user)
        message = gettext("已提交，正在进行机器初筛")
    elif action == "withdraw":
        pool_ops.withdraw_item(item, actor=current_user, reason=request.form.get("reason", ""))
        message = gettext("稿件已撤回")
    else:
        return _publish_from_form(item)
    db.session.commit()
    flash(message, "info")
    return redirect(url_for("web.item_detail", item_id=item.id))


def _publish_from_form(item: Item) -> Any:
    """Publish from the item page. The form carries a key made when the page was shown: the
    same key again (a double click, a resent form) answers like the first, publishing once."""
    key = request.form.get("idempotency_key") or None
    if key is not None and not (0 < len(key) <= 100 and key.isprintable()):
        raise InvalidInput(gettext("页面已过期，请刷新后重试"), field="idempotency_key")
    done = gettext("已发布，可下载签名回执")
    back = redirect(url_for("web.item_detail", item_id=item.id))
    if key and ops.publication_for_key(item.id, key) is not None:
        flash(done, "info")
        return back
    try:
        ops.publish_item(
            item,
            actor=current_user,
            signer=signer(),
            content_sha256=request.form.get("content_sha256") or None,
            idempotency_key=key,
        )
        db.session.commit()
    except (Conflict, IntegrityError):
        # A concurrent request with the same key may have won: then answer as it did.
        db.session.rollback()
        if not key or ops.publication_for_key(item.id, key) is None:
            raise
    flash(done, "info")
    return back


@bp.post("/items/<int:item_id>/submit")
@login_required
@roles_required(Role.editor)
def submit_item(item_id: int) -> Any:
    """Submit a draft."""
    return _editor_action(item_id, "submit")


@bp.post("/items/<int:item_id>/withdraw")
@login_required
@roles_required(Role.editor)
def withdraw_item(item_id: int) -> Any:
    """Withdraw an unpublished item."""
    return _editor_action(item_id, "withdraw")


@bp.post("/items/<int:item_id>/publish")
@login_required
@roles_required(Role.editor)
def publish_item(item_id: int) -> Any:
    """Publish a cleared or approved version."""
    return _editor_action(item_id, "publish")


@bp.get("/items/<int:item_id>/receipt")
@login_required
def receipt(item_id: int) -> Any:
    """Download the signed publication receipt (JSON) with the public key."""
    item = load_item(current_user, item_id)
    pub = latest_publication(item)
    if pub is None:
        raise NotFound(gettext("该稿件尚未发布"))
    if current_user.has_role(Role.auditor):
        record_event(
            "audit.download",
            actor=current_user,
            subject_type="item",
            subject_id=item.id,
            data={"what": "receipt"},
        )
        db.session.commit()
    body = current_app.json.dumps({"receipt": pub.receipt, "public_key": signer().public_pem()})
    return Response(
        body,
        mimetype="application/json",
        headers={
            "Content-Disposition": (
                f"attachment; filename=receipt-{item.id}-v{pub.receipt['version']}.json"
            )
        },
    )


# --- experts -----------------------------------------------------------------------------------


@bp.get("/assignments")
@login_required
@roles_required(Role.expert)
def assignments() -> Any:
    """The expert's queue with deadlines and risk, workload, history, and pull-mode claiming."""
    expert = Expert.for_user(current_user)
    rows = db.session.scalars(
        select(Assignment)
        .where(Assignment.expert_id == (expert.id if expert else -1))
        .order_by(Assignment.id.desc())
    ).all()
    open_rows = [a for a in rows if a.is_open]
    history = [a for a in rows if not a.is_open]
    return render_template(
        "assignments.html",
        expert=expert,
        open_rows=open_rows,
        history=history,
        completed=sum(a.state is AssignmentState.completed for a in rows),
        now=utcnow(),
    )


@bp.post("/assignments/claim")
@login_required
@roles_required(Role.expert)
def claim() -> Any:
    """Pull mode: take the oldest waiting version the expert may review."""
    assignment = pool_ops.claim_next(current_user, deadlines=deadlines())
    db.session.commit()
    if assignment is None:
        flash(gettext("暂无可认领的稿件"), "info")
        return redirect(url_for("web.assignments"))
    flash(gettext("已认领一篇稿件，请在期限内签署结论"), "info")
    return redirect(url_for("web.review_page", assignment_id=assignment.id))


@bp.get("/assignments/<int:assignment_id>")
@login_required
@roles_required(Role.expert, Role.auditor, Role.admin)
def review_page(assignment_id: int) -> Any:
    """The review page: the version's text with findings highlighted, and the decision form."""
    return _review_page(load_assignment(current_user, assignment_id))


def _review_page(assignment: Assignment) -> str:
    """The review page of an assignment the user may read. The decision form is active only
    once the expert has accepted the offer (a decision needs an accepted, live assignment)."""
    version = assignment.version
    report = version.report
    findings = report.findings if report else []
    can_act = current_user.has_role(Role.expert) and assignment.is_open
    return render_template(
        "review.html",
        assignment=assignment,
        item=assignment.item,
        version=version,
        report=report,
        findings=findings,
        title_pieces=highlight(version.title, findings, "title"),
        pieces=highlight(version.body, findings, "body"),
        shown=shown_passages(version.title, version.body, findings),
        decisions=item_decisions(assignment.item),
        can_act=can_act,
        can_decide=can_act and assignment.state is AssignmentState.accepted,
        video=video_context(assignment.item, version, list(findings)),
        expert_category=CATEGORY_FOR_EXPERT,
    )


@bp.post("/assignments/<int:assignment_id>/findings")
@login_required
@roles_required(Role.expert)
def add_video_finding(assignment_id: int) -> Any:
    """The expert marks a time range of the video as a new finding."""
    assignment = load_assignment(current_user, assignment_id)
    if not assignment.is_open:  # the right person, the wrong moment: a state conflict
        raise Conflict(gettext("该审核任务已结束"))
    return _store_expert_finding(
        assignment,
        lambda: videos.add_timed_finding(
            assignment.version,
            start_time=request.form.get("start_time"),
            end_time=request.form.get("end_time"),
            note=request.form.get("note"),
            actor=current_user,
        ),
        N_("已添加时间段发现"),
    )


def _store_expert_finding(assignment: Any, add: Callable[[], object], done: str) -> Any:
    """Run an expert-finding operation: commit and confirm with `done` (a message marked
    with N_, translated here), or show the operation's Chinese error."""
    back = url_for("web.review_page", assignment_id=assignment.id)
    try:
        add()
    except InvalidInput as exc:
        db.session.rollback()
        flash(exc.message, "error")
        return redirect(back), 303
    db.session.commit()
    flash(gettext(done), "info")
    return redirect(back)


@bp.post("/assignments/<int:assignment_id>/text-findings")
@login_required
@roles_required(Role.expert)
def add_text_finding(assignment_id: int) -> Any:
    """The expert marks a passage of the text (selected on the review page) as a new finding."""
    assignment = load_assignment(current_user, assignment_id)
    if not assignment.is_open or assignment.state.value != "accepted":
        raise Conflict(gettext("请先接受审核任务，再标记新发现"))
    return _store_expert_finding(
        assignment,
        lambda: ops.add_text_finding(
            assignment.version,
            segment=request.form.get("segment"),
            start=request.form.get("start"),
            end=request.form.get("end"),
            note=request.form.get("note"),
            severity=request.form.get("severity"),
            actor=current_user,
        ),
        N_("已把选中的文字标为新发现"),
    )


@bp.post("/assignments/<int:assignment_id>/accept")
@login_required
@roles_required(Role.expert)
def accept(assignment_id: int) -> Any:
    """Accept an offer (inside its deadline)."""
    assignment = load_assignment(current_user, assignment_id, to_read=False)
    try:
        pool_ops.accept_assignment(assignment, actor=current_user, deadlines=deadlines())
    except pool_ops.AssignmentEnded:
        db.session.commit()  # the expiry (and the reassignment) stand; the expert gets 409
        raise
    db.session.commit()
    flash(gettext("已接受审核任务"), "info")
    return redirect(url_for("web.review_page", assignment_id=assignment.id))


@bp.post("/assignments/<int:assignment_id>/decline")
@login_required
@roles_required(Role.expert)
def decline(assignment_id: int) -> Any:
    """Decline an offer with a reason."""
    assignment = load_assignment(current_user, assignment_id, to_read=False)
    pool_ops.decline_assignment(
        assignment, actor=current_user, reason=request.form.get("reason"), deadlines=deadlines()
    )
    db.session.commit()
    flash(gettext("已谢绝，系统将转给其他专家"), "info")
    return redirect(url_for("web.assignments"))


@bp.post("/assignments/<int:assignment_id>/decision")
@login_required
@roles_required(Role.expert)
def decision(assignment_id: int) -> Any:
    """Sign the decision (password re-entered) on an accepted, live assignment."""
    assignment = load_assignment(current_user, assignment_id, to_read=False)
    verdicts = {
        key.removeprefix("verdict_"): value
        for key, value in request.form.items()
        if key.startswith("verdict_") and value
    }
    password_ok = confirm_password(
        current_user, request.form.get("password", ""), purpose="decision"
    )
    try:
        lock = int(request.form.get("lock_version", ""))
    except ValueError:
        lock = None
    try:
        pool_ops.decide(
            assignment,
            actor=current_user,
            decision=request.form.get("decision"),
            comment=request.form.get("comment", ""),
            references=request.form.get("references", ""),
            finding_verdicts=verdicts,
            password_ok=password_ok,
            signer=signer(),
            deadlines=deadlines(),
            expected_lock_version=lock,
        )
    except DomainError as exc:
        if isinstance(exc, pool_ops.AssignmentEnded):
            db.session.commit()  # the expiry (and the reassignment) stand
        else:
            db.session.rollback()
        if exc.code == "password_required":
            record_event(
                "review.signature_refused",
                actor=current_user,
                subject_type="item",
                subject_id=assignment.item_id,
                data={"assignment": assignment.id},
            )
            db.session.commit()
        if isinstance(exc, Conflict):
            # Not this assignment's moment (not accepted, ended, stale): 409 with the reason,
            # on the review page when the expert may still read it.
            if not assignment.shows_text:
                raise
            flash(exc.message, "error")
            return _review_page(assignment), 409
        flash(exc.message, "error")
        return redirect(url_for("web.review_page", assignment_id=assignment.id)), 303
    db.session.commit()
    flash(gettext("审核结论已签署"), "info")
    return redirect(url_for("web.assignments"))


# --- auditors ----------------------------------------------------------------------------------


@bp.get("/audit")
@login_required
@roles_required(Role.auditor, Role.admin)
def audit_log() -> Any:
    """The ledger, newest first, filterable by action, actor, item and time."""
    filters = {
        k: request.args.get(k, "").strip() for k in ("action", "actor", "item", "from", "to")
    }
    query = downloads.audit_query(filters).order_by(None).order_by(AuditEvent.seq.desc())
    events = db.session.scalars(query.limit(300)).all()
    total = db.session.scalar(select(func.count()).select_from(AuditEvent))
    return render_template("audit.html", events=events, total=total, filters=filters)


@bp.get("/audit/items/<int:item_id>")
@login_required
@roles_required(Role.auditor, Role.admin)
def audit_trail(item_id: int) -> Any:
    """An item's full trail as a timeline."""
    item = load_item(current_user, item_id)
    events = db.session.scalars(
        select(AuditEvent)
        .where(AuditEvent.subject_type == "item", AuditEvent.subject_id == str(item.id))
        .order_by(AuditEvent.seq)
    ).all()
    return render_template("trail.html", item=item, events=events, decisions=item_decisions(item))


# --- admins ------------------------------------------------------------------------------------


@bp.route("/admin/users", methods=["GET", "POST"])
@login_required
@roles_required(Role.admin)
def admin_users() -> Any:
    """List and create users."""
    if request.method == "POST":
        form = request.form
        try:
            unit_name = form.get("unit", "").strip()
            unit = ops.get_or_create_unit(unit_name, actor=current_user) if unit_name else None
            user = create_user(
                form.get("username", ""),
                role=form.get("role", ""),
                password=form.get("password", ""),
                display_name=form.get("display_name") or None,
                unit=unit,
                actor=current_user,
            )
            domains = [d for d in form.getlist("domains") if d]
            if user.role is Role.expert and domains:
                pool.add_expert(
                    user,
                    domains=domains,
                    title=form.get("title", ""),
                    is_senior=bool(form.get("senior")),
                    actor=current_user,
                )
        except DomainError as exc:
            db.session.rollback()
            flash(exc.message, "error")
        else:
            db.session.commit()
            flash(gettext("已创建用户 %(username)s", username=user.username), "info")
        return redirect(url_for("web.admin_users"))
    users = db.session.scalars(select(User).order_by(User.id)).all()
    return render_template("admin_users.html", users=users, roles=list(Role), domains=DOMAINS)


@bp.post("/admin/users/<int:user_id>/active")
@login_required
@roles_required(Role.admin)
def admin_toggle_user(user_id: int) -> Any:
    """Enable or disable an account (disabling ends its sign-ins and tokens)."""
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound(gettext("找不到该用户"))
    if user.id == current_user.id:
        raise Forbidden(gettext("不能停用自己的账号"))
    set_active(user, not user.is_active_user, actor=current_user)
    db.session.commit()
    flash(
        gettext("已启用 %(username)s", username=user.username)
        if user.is_active_user
        else gettext("已停用 %(username)s", username=user.username),
        "info",
    )
    return redirect(url_for("web.admin_users"))


@bp.post("/admin/users/<int:user_id>/password")
@login_required
@roles_required(Role.admin)
def admin_reset_password(user_id: int) -> Any:
    """Set a new password for a user; all of the user's sign-ins end."""
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound(gettext("找不到该用户"))
    try:
        reset_password(user, new=request.form.get("password", ""), actor=current_user)
    except InvalidInput as exc:
        db.session.rollback()
        flash(exc.message, "error")
        return redirect(url_for("web.admin_users"))
    db.session.commit()
    flash(gettext("已重置 %(username)s 的密码，其所有登录已退出", username=user.username), "info")
    return redirect(url_for("web.admin_users"))


@bp.get("/admin/experts")
@login_required
@roles_required(Role.admin, Role.auditor)
def admin_experts() -> Any:
    """The expert pool with current load."""
    experts = db.session.scalars(select(Expert).order_by(Expert.id)).all()
    return render_template(
        "admin_experts.html", experts=experts, loads=pool.expert_loads(), now=utcnow()
    )


@bp.route("/admin/experts/new", methods=["GET", "POST"])
@login_required
@roles_required(Role.admin)
def admin_expert_new() -> Any:
    """Put a user whose role is 审核专家 into the pool, in the browser (CSV import does many)."""
    in_pool = select(Expert.user_id)
    candidates = db.session.scalars(
        select(User)
        .where(User.role == Role.expert, User.is_active_user.is_(True), User.id.not_in(in_pool))
        .order_by(User.username)
    ).all()
    form = request.form
    if request.method == "POST":
        try:
            chosen = form.get("user_id", "")
            user = next((u for u in candidates if str(u.id) == chosen), None)
            if user is None:
                raise InvalidInput(
                    gettext("请选择一位尚未加入专家库的审核专家用户"), field="user_id"
                )
            if not [d for d in form.getlist("domains") if d]:
                raise InvalidInput(gettext("请至少选择一个主要领域"), field="domains")
            expert = pool.add_expert(
                user,
                domains=form.getlist("domains"),
                secondary_domains=form.getlist("secondary_domains"),
                title=form.get("title", ""),
                max_load=_int_field(
                    form.get("max_load", "5"), gettext("最大同时审核数"), "max_load"
                ),
                is_senior=bool(form.get("is_senior")),
                verified=bool(form.get("is_verified")),
                conflicts={
                    kind: _lines(form.get(f"conflict_{kind}", "")) for kind in pool.CONFLICT_KINDS
                },
                actor=current_user,
            )
        except DomainError as exc:
            db.session.rollback()
            flash(exc.message, "error")
            return render_template(
                "admin_expert_new.html", candidates=candidates, domains=DOMAINS, form=form
            ), 400
        db.session.commit()
        flash(gettext("已将 %(name)s 加入专家库", name=expert.name), "info")
        return redirect(url_for("web.admin_experts"))
    return render_template(
        "admin_expert_new.html", candidates=candidates, domains=DOMAINS, form=form
    )


@bp.route("/admin/experts/<int:expert_id>", methods=["GET", "POST"])
@login_required
@roles_required(Role.admin)
def admin_expert_edit(expert_id: int) -> Any:
    """Edit an expert: domains, seniority, verification, load cap, leave, conflicts."""
    expert = pool_ops.get_expert(expert_id)
    if request.method == "POST":
        form = request.form
        try:
            changes: dict[str, Any] = {
                "title": form.get("title", ""),
                "domains": form.getlist("domains"),
                "secondary_domains": form.getlist("secondary_domains"),
                "is_verified": bool(form.get("is_verified")),
                "is_senior": bool(form.get("is_senior")),
                "is_active": bool(form.get("is_active")),
                "max_load": _int_field(
                    form.get("max_load", ""), gettext("最大同时审核数"), "max_load"
                ),
                "leave_from": parse_time(form["leave_from"], "leave_from", "请假开始")
                if form.get("leave_from")
                else None,
                "leave_until": parse_time(form["leave_until"], "leave_until", "请假结束")
                if form.get("leave_until")
                else None,
                "conflicts": {
                    kind: _lines(form.get(f"conflict_{kind}", "")) for kind in pool.CONFLICT_KINDS
                },
                "notify_mode": form.get("notify_mode", "immediate"),
                "is_publicly_named": bool(form.get("is_publicly_named")),
            }
            pool.update_expert(expert, changes, actor=current_user)
            email = form.get("email", "").strip() or None
            if email != expert.user.email:
                expert.user.email = (
                    ops.clean_text(email or "", "email", "邮箱", max_chars=320) or None
                )
                record_event(
                    "user.email_changed",
                    actor=current_user,
                    subject_type="user",
                    subject_id=expert.user_id,
                )
        except DomainError as exc:
            db.session.rollback()
            flash(exc.message, "error")
            return render_template(
                "admin_expert_edit.html", expert=expert, domains=DOMAINS, local=_local
            ), 400
        db.session.commit()
        flash(gettext("已保存 %(name)s 的资料", name=expert.name), "info")
        return redirect(url_for("web.admin_experts"))
    return render_template("admin_expert_edit.html", expert=expert, domains=DOMAINS, local=_local)


def _lines(text_value: str) -> list[str]:
    return [part.strip() for part in text_value.replace("、", "\n").splitlines() if part.strip()]


def _int_field(value: str, label: str, field: str | None = None) -> int:
    named = {"field": field} if field else {}  # the form's field name, never the label
    try:
        number = int(value)
    except ValueError:
        raise InvalidInput(gettext("%(label)s必须是整数", label=label), **named) from None
    if abs(number) > MAX_DB_INT:  # the database driver would overflow (a 500)
        raise InvalidInput(gettext("%(label)s超出范围", label=label), **named)
    return number


def _local(value: Any) -> str:
    """A UTC datetime shown as China Standard Time for form fields."""
    return value.astimezone(LOCAL_TZ).strftime("%Y-%m-%dT%H:%M") if value else ""


@bp.get("/admin/queue")
@login_required
@roles_required(Role.admin, Role.auditor)
def admin_queue() -> Any:
    """Waiting versions, waiting times, why experts were refused, overdue reviews."""
    overview = queue_overview()
    experts = {e.id: e for e in db.session.scalars(select(Expert))}
    return render_template("admin_queue.html", overview=overview, experts=experts)


@bp.post("/admin/items/<int:item_id>/assign")
@login_required
@roles_required(Role.admin)
def admin_assign(item_id: int) -> Any:
    """Hand a waiting version to a chosen expert."""
    item = load_item(current_user, item_id)
    expert = pool_ops.get_expert(
        _int_field(request.form.get("expert_id", ""), gettext("专家编号"), "expert_id")
    )
    pool_ops.admin_assign(item, expert, actor=current_user, deadlines=deadlines())
    db.session.commit()
    flash(gettext("已将稿件 %(item)s 分配给 %(expert)s", item=item.id, expert=expert.name), "info")
    return redirect(url_for("web.admin_queue"))


@bp.route("/admin/policies", methods=["GET", "POST"])
@login_required
@roles_required(Role.admin, Role.auditor)
def admin_policies() -> Any:
    """The running policy: flag level, deadlines, screening attempts (auditors read only)."""
    form: dict[str, str] = {}
    errors: dict[str, str] = {}
    if request.method == "POST":
        require_role(current_user, Role.admin)
        form = {f.key: request.form.get(f.key, "") for f in policy.FIELDS}
        values, errors = policy.parse_form(form)
        if not errors:
            changes = policy.update_policy(values, actor=current_user)
            db.session.commit()
            flash(
                gettext("已保存 %(count)s 项策略修改，新的初筛和分配立即生效", count=len(changes))
                if changes
                else gettext("没有修改任何策略"),
                "info",
            )
            return redirect(url_for("web.admin_policies"))
        flash(gettext("策略未保存，请更正标出的错误"), "error")
    return _render_policies(form, errors), 400 if errors else 200


def _render_policies(form: dict[str, str], errors: dict[str, str]) -> str:
    current, config = policy.values(), policy.defaults()
    stored = policy.overrides()
    rows = [
        {
            "field": f,
            "value": form.get(f.key, policy.to_form(f, current[f.key])),
            "default": policy.to_form(f, config[f.key]),
            "overridden": f.key in stored,
            "updated_at": stored[f.key].updated_at if f.key in stored else None,
            "error": errors.get(f.key),
        }
        for f in policy.FIELDS
    ]
    return render_template(
        "admin_policies.html",
        rows=rows,
        levels=LEVELS,
        can_edit=current_user.has_role(Role.admin),
        any_override=bool(stored),
    )


@bp.post("/admin/policies/reset")
@login_required
@roles_required(Role.admin)
def admin_policies_reset() -> Any:
    """Drop the overrides (all, or one field) so the configured defaults apply again."""
    key = request.form.get("key", "")
    if key and key not in policy.FIELD_BY_KEY:
        raise InvalidInput(gettext("未知的策略项"))
    changes = policy.reset_policy([key] if key else None, actor=current_user)
    db.session.commit()
    flash(
        gettext("已恢复 %(count)s 项策略的默认值", count=len(changes))
        if changes
        else gettext("所有策略已是默认值"),
        "info",
    )
    return redirect(url_for("web.admin_policies"))


RULE_FILTERS = ("pack", "category", "domain", "enabled", "q")


@bp.get("/admin/rules")
@login_required
@roles_required(Role.admin, Role.auditor)
def admin_rules() -> Any:
    """Every rule of the loaded packs, filterable, with its findings count and switch state."""
    ruleset = rules.load_default_ruleset()  # every rule, switched off or not
    disabled = rulepacks.disabled_rules()
    counts = rulepacks.finding_counts()
    filters = {k: request.args.get(k, "").strip() for k in RULE_FILTERS}
    query = filters["q"].lower()
    rows = []
    for rule in ruleset.rules:
        enabled = rule.id not in disabled
        if filters["pack"] and rule.source != filters["pack"]:
            continue
        if filters["category"] and rule.category != filters["category"]:
            continue
        if filters["domain"] and filters["domain"] not in rule.domains:
            continue
        if filters["enabled"] in ("1", "0") and enabled != (filters["enabled"] == "1"):
            continue
        if query and not any(
            query in text_value.lower() for text_value in (rule.id, rule.title, rule.explanation)
        ):
            continue
        rows.append({"rule": rule, "enabled": enabled, "findings": counts.get(rule.id, 0)})
    known = {r.id for r in ruleset.rules}
    return render_template(
        "admin_rules.html",
        rows=rows,
        total=len(ruleset),
        disabled_count=sum(1 for rid in disabled if rid in known),
        stale=[row for rid, row in sorted(disabled.items()) if rid not in known],
        filters=filters,
        packs=ruleset.files,
        categories=CATEGORIES,
        domains=DOMAINS,
        ruleset_version=ruleset.version,
        effective_version=rulepacks.effective_ruleset().version,
    )


@bp.get("/admin/rules/<rule_id>")
@login_required
@roles_required(Role.admin, Role.auditor)
def admin_rule(rule_id: str) -> Any:
    """One rule: explanation, references, examples, what it produced and how experts judged it."""
    return _render_rule(rulepacks.get_rule(rule_id))


def _render_rule(rule: rules.Rule, reason: str = "") -> str:
    disabled = rulepacks.disabled_rules().get(rule.id)
    switched_by = db.session.get(User, disabled.disabled_by_id) if disabled else None
    return render_template(
        "admin_rule.html",
        rule=rule,
        disabled=disabled,
        switched_by=switched_by,
        stats=rulepacks.statistics(rule.id),
        recent_days=rulepacks.RECENT_DAYS,
        can_edit=current_user.has_role(Role.admin),
        reason=reason,
    )


@bp.post("/admin/rules/<rule_id>/switch")
@login_required
@roles_required(Role.admin)
def admin_rule_switch(rule_id: str) -> Any:
    """Switch a rule off or on again, with a reason; later screenings use the new set."""
    enable = request.form.get("action") == "enable"
    try:
        changed = rulepacks.set_rule_enabled(
            rule_id, enable, reason=request.form.get("reason"), actor=current_user
        )
    except InvalidInput as exc:
        db.session.rollback()
        flash(exc.message, "error")
        if rule_id not in rulepacks.known_ids():
            return redirect(url_for("web.admin_rules")), 303  # a switch left from an old pack
        rule = rulepacks.get_rule(rule_id)
        return _render_rule(rule, reason=str(request.form.get("reason", ""))), 400
    db.session.commit()
    if not changed:
        flash(gettext("规则状态未改变"), "info")
    elif enable:
        flash(gettext("已启用规则 %(rule)s，之后的初筛将使用它", rule=rule_id), "info")
    else:
        flash(gettext("已停用规则 %(rule)s，之后的初筛不再使用它", rule=rule_id), "info")
    if rule_id not in rulepacks.known_ids():
        return redirect(url_for("web.admin_rules"))
    return redirect(url_for("web.admin_rule", rule_id=rule_id))


@bp.post("/items/<int:item_id>/appeal")
@login_required
@roles_required(Role.editor)
def appeal_item(item_id: int) -> Any:
    """Appeal a rejection once, with a reason."""
    item = load_item(current_user, item_id)
    pool_ops.appeal(
        item, actor=current_user, reason=request.form.get("reason"), deadlines=deadlines()
    )
    db.session.commit()
    flash(gettext("申诉已提交，将由其他专家复审"), "info")
    return redirect(url_for("web.item_detail", item_id=item.id))


@bp.post("/items/<int:item_id>/request-review")
@login_required
@roles_required(Role.editor)
def request_review(item_id: int) -> Any:
    """Ask experts to review a cleared item before publishing it."""
    item = load_item(current_user, item_id)
    pool_ops.request_expert_review(
        item, actor=current_user, reason=request.form.get("reason", ""), deadlines=deadlines()
    )
    db.session.commit()
    flash(gettext("已请专家审核，专家审核通过后才能发布"), "info")
    return redirect(url_for("web.item_detail", item_id=item.id))


@bp.get("/notifications")
@login_required
def notifications() -> Any:
    """The user's notifications, newest first."""
    rows = db.session.scalars(
        select(Notification)
        .where(Notification.user_id == current_user.id)
        .order_by(Notification.id.desc())
        .limit(200)
    ).all()
    return render_template("notifications.html", notes=rows)


@bp.post("/notifications/read")
@login_required
def notifications_read() -> Any:
    """Mark all of the user's notifications read."""
    db.session.execute(
        update(Notification)
        .where(Notification.user_id == current_user.id, Notification.read_at.is_(None))
        .values(read_at=utcnow())
    )
    db.session.commit()
    return redirect(url_for("web.notifications"))


def highlight(text_value: str, findings: list[Any], segment: str) -> list[tuple[str, Any]]:
    """Split text into (piece, finding-or-None) so templates can mark findings safely (escaped)."""
    spans = sorted(
        (f for f in findings if f.segment == segment and 0 <= f.start < f.end <= len(text_value)),
        key=lambda f: (f.start, -f.end),
    )
    pieces: list[tuple[str, Any]] = []
    pos = 0
    for f in spans:
        if f.start < pos:
            continue  # overlapping span: the earlier, longer one is shown
        if f.start > pos:
            pieces.append((text_value[pos : f.start], None))
        pieces.append((text_value[f.start : f.end], f))
        pos = f.end
    if pos < len(text_value):
        pieces.append((text_value[pos:], None))
    return pieces


@bp.app_context_processor
def _inject() -> dict[str, Any]:
    unread = 0
    if current_user.is_authenticated:
        unread = unread_count(current_user)
    return {"Role": Role, "Unit": Unit, "unread_notifications": unread}


# --- auditors: dashboard, search, checkpoints, 质检, exports ------------------------------------


@bp.get("/dashboard")
@login_required
@roles_required(Role.auditor, Role.admin)
def dashboard_page() -> Any:
    """Figures with charts and the numbers beside them, for a period and domain."""
    args = request.args
    data = dashboard.figures(downloads.period_from(args), domain=args.get("domain") or None)
    # the export link passes the filters on; kind and fmt are that link's own arguments
    filters = {k: v for k, v in args.items() if k not in ("kind", "fmt")}
    return render_template("dashboard.html", data=data, filters=filters, domains=DOMAINS)


@bp.get("/reports/monthly")
@login_required
@roles_required(Role.auditor, Role.admin)
def monthly_report() -> Any:
    """A printable monthly report of the dashboard figures (``?month=YYYY-MM``)."""
    month = request.args.get("month") or utcnow().strftime("%Y-%m")
    try:
        start = parse_time(f"{month}-01", "month")
    except InvalidInput:
        raise InvalidInput(gettext("月份格式应为 YYYY-MM")) from None
    local = start.astimezone(LOCAL_TZ)
    following = local.replace(year=local.year + local.month // 12, month=local.month % 12 + 1)
    end = following.astimezone(start.tzinfo)
    data = dashboard.figures(dashboard.Period(start, end))
    return render_template("monthly_report.html", data=data, month=month, generated=utcnow())


@bp.get("/search")
@login_required
def search_page() -> Any:
    """Full-text search over the items the user may see and their decisions."""
    query = request.args.get("q", "").strip()
    results: list[Item] = []
    if query:
        ops.clean_text(query, "q", gettext("搜索词"), max_chars=200)
        restrict = None
        if not current_user.has_role(Role.auditor, Role.admin):
            restrict = downloads.visible_items(current_user).with_only_columns(Item.id)
        ids = search_items(query, restrict=restrict)
        found = {i.id: i for i in db.session.scalars(select(Item).where(Item.id.in_(ids)))}
        results = [found[i] for i in ids if i in found]
    return render_template("search.html", query=query, results=results)


@bp.route("/audit/checkpoints", methods=["GET", "POST"])
@login_required
@roles_required(Role.auditor, Role.admin)
def checkpoints_page() -> Any:
    """Signed checkpoints to download and keep; sign one now."""
    if request.method == "POST":
        row = ledger.create_checkpoint(
            signer=signer(), origin=str(current_app.config["LEDGER_ORIGIN"]), actor=current_user
        )
        db.session.commit()
        flash(
            gettext("已签发检查点（树大小 %(size)s），请下载并妥善保存", size=row.tree_size), "info"
        )
        return redirect(url_for("web.checkpoints_page"))
    rows = db.session.scalars(
        select(ledger.AuditCheckpoint).order_by(ledger.AuditCheckpoint.tree_size.desc()).limit(200)
    ).all()
    return render_template("checkpoints.html", checkpoints=rows)


@bp.get("/audit/checkpoints/<int:size>.txt")
@login_required
@roles_required(Role.auditor, Role.admin)
def checkpoint_download(size: int) -> Any:
    """One checkpoint as a signed-note text file (the download is audited)."""
    row = db.session.scalar(
        select(ledger.AuditCheckpoint).where(ledger.AuditCheckpoint.tree_size == size)
    )
    if row is None:
        raise NotFound(gettext("找不到该检查点"))
    note = downloads.Download(
        row.note.encode(), "txt", f"checkpoint-{size:08d}", f"checkpoint:{size}"
    )
    return downloads.send(note, user=current_user, filters={"tree_size": size})


@bp.get("/export/<kind>.<fmt>")
@login_required
def export_download(kind: str, fmt: str) -> Any:
    """Items (visible ones), audit log, dashboard workbook, ledger bundle; each download audited."""
    if kind in ("audit", "dashboard", "ledger"):
        require_role(current_user, Role.auditor, Role.admin)
    return downloads.send(
        downloads.build(kind, fmt, current_user, request.args),
        user=current_user,
        filters=request.args,
    )


@bp.route("/quality", methods=["GET", "POST"])
@login_required
@roles_required(Role.auditor, Role.admin)
def quality_page() -> Any:
    """质检: draw a sample of decided versions and follow its overturn rate."""
    if request.method == "POST":
        form = request.form
        sample = quality.draw_sample(
            actor=current_user,
            size=_int_field(form.get("size", ""), gettext("抽样数量"), "size"),
            start=parse_time(form["from"], "from") if form.get("from") else None,
            end=parse_time(form["to"], "to") if form.get("to") else None,
            domain=form.get("domain") or None,
            deadlines=deadlines(),
        )
        db.session.commit()
        flash(gettext("已抽取 %(size)s 篇稿件送交质检复审", size=sample.size), "info")
        return redirect(url_for("web.quality_page", sample=sample.id))
    samples = db.session.scalars(
        select(QualitySample).order_by(QualitySample.id.desc()).limit(100)
    ).all()
    reports = [quality.sample_report(s) for s in samples]
    chosen = request.args.get("sample", type=db_id)
    detail = next((r for r in reports if r["id"] == chosen), reports[0] if reports else None)
    return render_template("quality.html", reports=reports, detail=detail, domains=DOMAINS)


@bp.post("/items/<int:item_id>/recall")
@login_required
@roles_required(Role.auditor, Role.admin)
def recall_item(item_id: int) -> Any:
    """Take a published item down (下架) with a reason."""
    item = load_item(current_user, item_id)
    pool_ops.recall_item(item, actor=current_user, reason=request.form.get("reason"))
    db.session.commit()
    flash(gettext("稿件已下架，编辑已收到通知"), "info")
    return redirect(url_for("web.item_detail", item_id=item.id))


@bp.post("/items/<int:item_id>/rereview")
@login_required
@roles_required(Role.auditor, Role.admin)
def rereview_item(item_id: int) -> Any:
    """Ask experts who were never involved to review the decision again."""
    item = load_item(current_user, item_id)
    pool_ops.request_rereview(
        item, actor=current_user, reason=request.form.get("reason"), deadlines=deadlines()
    )
    db.session.commit()
    flash(gettext("已要求重新审核，新的专家将收到邀请"), "info")
    return redirect(url_for("web.item_detail", item_id=item.id))
