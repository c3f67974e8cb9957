"""The environment the hands-on app runs in: one definition for the labs, `make run` and the tests."""
import os


def app_env(workspace, redis, sleep, base=None):
    """``base`` (os.environ) with the workspace on the path, the run's Redis and sleep, and no
    CELERY_* variables: Celery would let those override handson/settings.py, which is what the lab grades."""
    env = {key: value for key, value in (os.environ if base is None else base).items()
           if not key.startswith("CELERY_") and key not in ("PYTHONPATH", "DJANGO_SETTINGS_MODULE")}
    env.update({
        "PYTHONPATH": str(workspace),
        "DJANGO_SETTINGS_MODULE": "handson.settings",
        "HANDSON_BROKER_URL": redis.broker_url,
        "HANDSON_RESULT_BACKEND": redis.result_backend_url,
        "HANDSON_SLEEP": f"{float(sleep):g}",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    })
    return env
