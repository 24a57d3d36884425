"""One function per thing a user can ask (rotate and record, scan, check, status, history, retry,
TLS audit and apply), each taking the process's ``context.ServiceContext``. Entry points (the CLI,
Celery tasks, the webhook) call exactly one and only translate inputs and outputs."""
