from django.apps import AppConfig


class HandsonConfig(AppConfig):
    name = "handson"

    def ready(self):
        # Imported for its side effect: it hooks Celery's task_prerun signal so
        # that a worker notes when each task starts (shown on the task list).
        from . import tasklog  # noqa: F401
