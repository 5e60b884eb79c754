"""Admin pages for outgoing webhooks: subscribers, a secret shown once, the delivery log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Blueprint, flash, make_response, redirect, render_template, request, url_for
from flask_babel import gettext
from flask_login import current_user, login_required

from review import webhooks
from review.db import db
from review.errors import DomainError, Forbidden
from review.models import Role
from review.web import LOCAL_TZ, roles_required

bp = Blueprint("hooks", __name__)


def _local(value: datetime | None) -> str:
    """A UTC time shown in China Standard Time."""
    return value.astimezone(LOCAL_TZ).strftime("%Y-%m-%d %H:%M:%S") if value else ""


def _render(template: str, status: int = 200, **context: Any) -> Any:
    return (
        render_template(template, events=webhooks.EVENTS, local=_local, **context),
        status,
    )


def _secret_page(sub: webhooks.WebhookSubscriber, secret: str) -> Any:
    """The only page that ever shows a secret; never cached."""
    response = make_response(_render("admin_webhook_secret.html", sub=sub, secret=secret))
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/admin/webhooks", methods=["GET", "POST"])
@login_required
@roles_required(Role.admin, Role.auditor)
def admin_webhooks() -> Any:
    """List subscribers; admins register a new one (its secret is shown once)."""
    if request.method == "POST":
        if not current_user.has_role(Role.admin):
            raise Forbidden(gettext("只有管理员可以登记订阅"))
        form = request.form
        try:
            sub = webhooks.create_subscriber(
                name=form.get("name", ""),
                url=form.get("url", ""),
                events=form.getlist("events"),
                secret=form.get("secret", ""),
                is_active=bool(form.get("is_active")),
                actor=current_user,
            )
        except DomainError as exc:
            db.session.rollback()
            flash(exc.message, "error")
            return _render(
                "admin_webhooks.html",
                400,
                subscribers=webhooks.subscribers(),
                form=form,
                chosen=form.getlist("events"),
            )
        db.session.commit()
        return _secret_page(sub, sub.secret)
    return _render(
        "admin_webhooks.html",
        subscribers=webhooks.subscribers(),
        form={},
        chosen=list(webhooks.EVENTS),
    )


@bp.route("/admin/webhooks/<int:subscriber_id>", methods=["GET", "POST"])
@login_required
@roles_required(Role.admin)
def admin_webhook_edit(subscriber_id: int) -> Any:
    """Change a subscriber's address, events, name or active flag."""
    sub = webhooks.get_subscriber(subscriber_id)
    if request.method == "POST":
        form = request.form
        try:
            webhooks.update_subscriber(
                sub,
                name=form.get("name", ""),
                url=form.get("url", ""),
                events=form.getlist("events"),
                is_active=bool(form.get("is_active")),
                actor=current_user,
            )
        except DomainError as exc:
            db.session.rollback()
            flash(exc.message, "error")
            return _render("admin_webhook_edit.html", 400, sub=sub)
        db.session.commit()
        flash(gettext("已保存订阅 %(name)s", name=sub.name), "info")
        return redirect(url_for("hooks.admin_webhooks"))
    return _render("admin_webhook_edit.html", sub=sub)


@bp.post("/admin/webhooks/<int:subscriber_id>/secret")
@login_required
@roles_required(Role.admin)
def admin_webhook_rotate(subscriber_id: int) -> Any:
    """Replace a subscriber's secret with a new random one, shown once."""
    sub = webhooks.get_subscriber(subscriber_id)
    secret = webhooks.rotate_secret(sub, actor=current_user)
    db.session.commit()
    return _secret_page(sub, secret)


@bp.post("/admin/webhooks/<int:subscriber_id>/ping")
@login_required
@roles_required(Role.admin)
def admin_webhook_ping(subscriber_id: int) -> Any:
    """发送测试事件: a signed ``ping`` to the receiver, shown in the delivery log."""
    sub = webhooks.get_subscriber(subscriber_id)
    row = webhooks.send_ping(sub, actor=current_user)
    db.session.commit()
    flash(gettext("已安排发送测试事件 %(id)s", id=row.delivery_id), "info")
    return redirect(url_for("hooks.admin_webhook_deliveries", subscriber=sub.id))


@bp.get("/admin/webhooks/deliveries")
@login_required
@roles_required(Role.admin, Role.auditor)
def admin_webhook_deliveries() -> Any:
    """The delivery log: status, attempts, answer code and first bytes, duration, next try."""
    sub_arg = request.args.get("subscriber", "")
    subscriber_id = int(sub_arg) if sub_arg.isdigit() else None
    status = request.args.get("status") or None
    rows = webhooks.recent_deliveries(subscriber_id=subscriber_id, status=status)
    return _render(
        "admin_webhook_deliveries.html",
        rows=rows,
        subscribers=webhooks.subscribers(),
        subscriber_id=subscriber_id,
        status=status,
        statuses=webhooks.STATUS_LABELS,
    )


@bp.get("/admin/webhooks/deliveries/<int:delivery_pk>")
@login_required
@roles_required(Role.admin, Role.auditor)
def admin_webhook_delivery(delivery_pk: int) -> Any:
    """One delivery with every try and the JSON that was sent."""
    row = webhooks.get_delivery(delivery_pk)
    body = webhooks.encode_body(row.payload).decode()
    return _render("admin_webhook_delivery.html", row=row, body=body)


@bp.post("/admin/webhooks/deliveries/<int:delivery_pk>/resend")
@login_required
@roles_required(Role.admin)
def admin_webhook_resend(delivery_pk: int) -> Any:
    """重新发送: the same delivery id again, with a fresh round of tries."""
    row = webhooks.get_delivery(delivery_pk)
    webhooks.resend(row, actor=current_user)
    db.session.commit()
    flash(gettext("已安排重新发送 %(id)s", id=row.delivery_id), "info")
    if request.form.get("back") == "detail":
        return redirect(url_for("hooks.admin_webhook_delivery", delivery_pk=row.id))
    return redirect(url_for("hooks.admin_webhook_deliveries"))
