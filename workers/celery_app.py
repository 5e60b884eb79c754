"""The Flask ↔ Celery bridge; ``celery -A workers.celery_app`` finds ``celery`` here."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, Task, signals
from flask import Flask

from review import create_app, logs
from review.audit import current_request_id
from workers.config import REQUEST_ID_HEADER, celery_config

log = logging.getLogger(__name__)


def celery_init_app(app: Flask) -> Celery:
    """A Celery app whose tasks run inside the Flask app context."""

    class FlaskTask(Task):  # type: ignore[misc]
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            with app.app_context():
                return self.run(*args, **kwargs)

    if app.config.get("FAULT_INJECTION"):
        log.warning("TEST-ONLY fault injection is on: %s", app.config["FAULT_INJECTION"])
    celery_app = Celery(app.name, task_cls=FlaskTask)
    celery_app.config_from_object(celery_config(app.config))
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    import workers.tasks  # noqa: F401  (register the tasks)

    return celery_app


@signals.task_prerun.connect
def _task_request_id(task: Any = None, **_: Any) -> None:
    """The id of the request that enqueued this task (outbox header), for logs and audit."""
    given = getattr(task.request, REQUEST_ID_HEADER, None) if task is not None else None
    current_request_id.set(str(given) if given else None)


@signals.task_postrun.connect
def _task_request_id_done(**_: Any) -> None:
    current_request_id.set(None)


def _json_worker_logging(loglevel: Any = None, logfile: str | None = None, **_: Any) -> None:
    """KEPU_LOG_FORMAT=json: the worker writes JSON lines (to --logfile when given)."""
    logs.configure_json(loglevel or "INFO", logfile=logfile or None)


flask_app = create_app()
celery = celery_init_app(flask_app)
if logs.json_enabled(flask_app.config.get("LOG_FORMAT")):
    # Connecting this signal replaces Celery's own logging set-up with ours.
    signals.setup_logging.connect(_json_worker_logging, weak=False)
