"""Celery app and tasks, the HTTP service and push senders: thin wrappers over the ``generator`` library."""
