"""科普信息科学性审查平台 — the Flask application."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Mapping
from typing import Any

from flask import (
    Flask,
    Request,
    current_app,
    g,
    jsonify,
    make_response,
    render_template,
    request,
)
from flask_babel import gettext, lazy_gettext
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_wtf.csrf import CSRFError, CSRFProtect
from sqlalchemy import event
from sqlalchemy.engine import Engine
from werkzeug.exceptions import HTTPException
from werkzeug.routing import IntegerConverter

import config
from review import i18n, logs
from review.audit import current_request_id
from review.db import db, render_item
from review.errors import DomainError
from review.inputs import StrictFormDataParser, check_request

log = logging.getLogger(__name__)
access_log = logging.getLogger("review.access")

#: A client's X-Request-ID is kept only when it is short and plain (it ends up in logs).
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")

login_manager = LoginManager()
csrf = CSRFProtect()
migrate = Migrate()

HTTP_MESSAGES = {
    400: lazy_gettext("请求格式不正确"),
    401: lazy_gettext("请先登录"),
    403: lazy_gettext("您没有权限执行此操作"),
    404: lazy_gettext("找不到该页面或对象"),
    405: lazy_gettext("不支持该请求方法"),
    409: lazy_gettext("当前状态不允许此操作"),
    413: lazy_gettext("提交的内容过大"),
    415: lazy_gettext("不支持的内容类型"),
    429: lazy_gettext("请求过于频繁，请稍后再试"),
    500: lazy_gettext("服务器内部错误"),
    503: lazy_gettext("服务暂时不可用，请稍后重试"),
}


def _wants_json() -> bool:
    # Pages' own JSON endpoints (live status, Markdown preview) end in ".json".
    return request.path.startswith("/api/") or request.is_json or request.path.endswith(".json")


def error_response(status: int, code: str, message: Any, **extra: Any) -> Any:
    """An error as JSON for the API, as a page for browsers, in the request's language."""
    if status in (401, 403):
        from review.security import request_fields, security_event

        security_event("denied", status=status, code=code, **request_fields())
    message = str(message)  # a lazy translation becomes text in this request's locale
    if _wants_json():
        return jsonify({"error": code, "message": message, **extra}), status
    return render_template("error.html", status=status, message=message), status


class KepuRequest(Request):
    """Uploaded file parts stream into capped temporary files inside the media folder.

    Werkzeug would otherwise spool them to the system temp folder; here an oversize part is cut
    off while it streams (413) and its partial file deleted, and an accepted video is linked
    into content-addressed storage on the same filesystem without a copy.
    """

    form_data_parser_class = StrictFormDataParser

    def make_form_data_parser(self) -> Any:
        """The strict parser, with the urlencoded body bounded like a multipart field."""
        parser = super().make_form_data_parser()
        parser.max_urlencoded_bytes = int(current_app.config["MAX_FORM_BYTES"])  # type: ignore[attr-defined]
        return parser

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> Any:
        from review.media import open_upload

        cfg = current_app.config
        upload = open_upload(cfg["MEDIA_FOLDER"], int(cfg["MAX_VIDEO_BYTES"]))
        self.__dict__.setdefault("_kepu_uploads", []).append(upload)
        return upload

    def close(self) -> None:
        """Close (and so delete) every temporary upload, whatever happened to the request."""
        try:
            super().close()
        finally:
            for upload in self.__dict__.get("_kepu_uploads", []):
                upload.close()


class TableId(IntegerConverter):
    """An ``<int:...>`` URL part: a non-negative integer within a 32-bit id column."""

    def __init__(self, url_map: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", 2**31 - 1)
        super().__init__(url_map, *args, **kwargs)


def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    """SQLite: WAL, foreign keys, waiting on locks; transactions begun explicitly (see below)."""
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin_immediate(conn: Any) -> None:
    """SQLite: take the write lock at BEGIN, so concurrent writers queue instead of deadlocking."""
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _tune_engine(engine: Engine) -> None:
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin_immediate)


def create_app(overrides: Mapping[str, Any] | None = None) -> Flask:
    """Build the application from the environment (config.py) plus ``overrides``."""
    settings = config.load()
    if overrides:
        settings.update(overrides)
    app = Flask(
        __name__, instance_path=str(settings["INSTANCE_PATH"]), instance_relative_config=True
    )
    app.config.update(settings)
    if logs.json_enabled(app.config.get("LOG_FORMAT")):
        logs.configure_json(str(app.config.get("LOG_LEVEL") or "INFO").upper())
    app.request_class = KepuRequest
    hops = int(app.config.get("PROXY_HOPS") or 0)
    if hops:
        from werkzeug.middleware.proxy_fix import ProxyFix

        # The client address (per-address sign-in limits) and scheme behind trusted proxies.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]
    # Every <int:...> in a URL is a table id: one beyond PostgreSQL's integer range would reach
    # the database and fail there (500); as a route that does not match it is a plain 404.
    app.url_map.converters["int"] = TableId
    app.json.ensure_ascii = False  # type: ignore[attr-defined]

    db.init_app(app)
    with app.app_context():
        _tune_engine(db.engine)
    migrate.init_app(
        app,
        db,
        directory=str(_migrations_dir()),
        render_as_batch=True,
        compare_type=True,
        render_item=render_item,
    )
    i18n.init_app(app)  # first, so its per-request reset runs before CSRF checks answer
    app.before_request(check_request)  # strict UTF-8 and bounded shapes, before CSRF reads
    login_manager.init_app(app)
    csrf.init_app(app)

    from expert_pool import models as _expert_models  # noqa: F401  (register tables)
    from review import api, hooks_views, monitoring, views
    from review import webhooks as _webhooks  # noqa: F401  (register tables)
    from review.signing import Signer

    app.extensions["kepu_signer"] = Signer.from_file(str(app.config["SIGNING_KEY_PATH"]))
    app.register_blueprint(views.bp)
    app.register_blueprint(hooks_views.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(monitoring.bp)
    csrf.exempt(api.bp)  # the API authenticates with bearer tokens only, never cookies

    from review.cli import register_cli

    register_cli(app)

    @app.before_request
    def _request_id() -> None:
        given = request.headers.get("X-Request-ID", "")
        g.request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        g.request_started = time.perf_counter()
        current_request_id.set(g.request_id)
        logs.current_user_id.set(None)
        g.pop("api_user", None)  # only when an app context outlives a request (test client)

    @app.teardown_request
    def _request_id_done(_exc: BaseException | None) -> None:
        # Work done after the request in the same thread (a test, a CLI command) is not
        # attributed to it.
        current_request_id.set(None)

    @app.before_request
    def _same_origin() -> None:
        """A cookie-authenticated change must come from our own pages (with the CSRF token).

        Browsers send ``Origin`` on every cross-site POST; a foreign or opaque one is refused
        even with a valid token. The API (bearer tokens, no cookies) is not concerned.
        """
        if (
            request.method in ("GET", "HEAD", "OPTIONS", "TRACE")
            or request.blueprint == "api"
            or not current_app.config.get("WTF_CSRF_ENABLED", True)
        ):
            return
        origin = request.headers.get("Origin")
        if origin is not None and origin.rstrip("/") != request.host_url.rstrip("/"):
            raise CSRFError("foreign origin")

    @app.after_request
    def _headers(response: Any) -> Any:
        response.headers.setdefault("X-Request-ID", getattr(g, "request_id", ""))
        _log_access(response)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "same-origin"
        if current_app.config.get("HSTS"):
            response.headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
        if _private_answer():
            # What a signed-in user sees (or any API answer) must not stay in a shared or
            # browser cache after signing out: the next user of the machine could read it.
            response.headers["Cache-Control"] = "no-store"
        response.headers.setdefault(  # media files set a stricter one of their own
            "Content-Security-Policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
        )
        return response

    @app.errorhandler(DomainError)
    def _domain_error(exc: DomainError) -> Any:
        db.session.rollback()
        response, status = error_response(exc.status, exc.code, exc.message, **exc.extra)
        retry_after = exc.extra.get("retry_after")
        if retry_after is not None:
            response = make_response(response, status)
            response.headers["Retry-After"] = str(retry_after)
            return response
        return response, status

    @app.errorhandler(CSRFError)
    def _csrf_error(exc: CSRFError) -> Any:
        return error_response(400, "csrf", gettext("表单已过期或缺少安全令牌，请刷新页面后重试"))

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Any:
        status = exc.code or 500
        return error_response(
            status, exc.name.lower().replace(" ", "_"), HTTP_MESSAGES.get(status, exc.name)
        )

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Any:
        db.session.rollback()
        from sqlalchemy.exc import OperationalError

        if isinstance(exc, OperationalError):
            log.warning("database unavailable: %s", exc)
            return error_response(503, "temporarily_unavailable", HTTP_MESSAGES[503], retry=True)
        log.exception("unhandled error")
        return error_response(500, "internal_error", HTTP_MESSAGES[500])

    return app


def _private_answer() -> bool:
    """An API answer, or a page (not a static file) answered to a signed-in user."""
    if request.blueprint == "api":
        return True
    if request.endpoint == "static":
        return False
    from flask_login import current_user

    try:
        return bool(current_user.is_authenticated)
    except Exception:  # a broken session (or database) must not break the answer
        return False


def _log_access(response: Any) -> None:
    """One access line per request: path, status, duration and the signed-in user, if any."""
    user = g.get("api_user") or g.get("_login_user")
    user_id = getattr(user, "id", None) if getattr(user, "is_authenticated", False) else None
    logs.current_user_id.set(user_id)
    started = g.get("request_started")
    duration = round((time.perf_counter() - started) * 1000, 3) if started else None
    access_log.info(
        "%s %s %s",
        request.method,
        request.path,
        response.status_code,
        extra={
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "duration_ms": duration,
            "user_id": user_id,
            "remote_addr": request.remote_addr,
        },
    )


def _migrations_dir() -> Any:
    from pathlib import Path

    return Path(__file__).resolve().parent.parent / "migrations"
