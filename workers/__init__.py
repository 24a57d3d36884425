"""Process entry points around the domain: the console script, Celery app and tasks, webhook."""
