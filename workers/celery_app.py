"""The Flask ↔ Celery bridge; ``celery -A workers.celery_app`` finds ``celery`` here."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, Task
from flask import Flask

from review import create_app
from workers.config import celery_config

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


flask_app = create_app()
celery = celery_init_app(flask_app)
