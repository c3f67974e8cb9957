"""The hands-on Django project.

Step 2 makes this package load its Celery app whenever Django starts, so that
``@shared_task`` functions bind to it. See labs/test_step2.py.
"""
