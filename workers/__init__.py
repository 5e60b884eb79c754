"""Celery glue: the Flask bridge, task entry points and the beat schedule."""
