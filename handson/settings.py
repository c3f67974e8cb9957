"""Settings of the hands-on project.

Addresses and timings come from the environment, so `make run` and the labs can
start their own Redis on a free port and point the app at it.
"""
import os
import tempfile

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "only-for-this-local-hands-on")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = ["handson"]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "handson.middleware.explain_wrong_method",
]
ROOT_URLCONF = "handson.urls"
WSGI_APPLICATION = "handson.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
    }
]
# Step 9's orders (handson/models.py) live in SQLite, in a file the labs and `make run`
# choose for each run (HANDSON_DATABASE), shared by the web server and the workers; the
# web server creates the tables as it starts. WAL: a reader (a worker) and the writer
# (a request's transaction) never wait for each other.
HANDSON_DATABASE = os.environ.get("HANDSON_DATABASE",
                                  os.path.join(tempfile.gettempdir(), "celery-handson.sqlite3"))
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": HANDSON_DATABASE,
        "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL;", "timeout": 5},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"

# Seconds the slow work takes: the blocking view (step 1) and the task (step 2).
# The original hands-on used 10; the labs set about 1 to stay fast.
HANDSON_SLEEP = float(os.environ.get("HANDSON_SLEEP", "10"))
# Who answers the payments of step 9 (handson/payments.py): "clock", after HANDSON_SLEEP
# seconds; in the labs, "lab": the lab answers when it has looked at the worker.
HANDSON_PAYMENTS = os.environ.get("HANDSON_PAYMENTS", "clock")

# Where Redis listens. `make run` and the labs start a Redis of their own and
# pass these; the defaults suit a redis-server you run yourself on port 6379.
HANDSON_BROKER_URL = os.environ.get("HANDSON_BROKER_URL", "redis://127.0.0.1:6379/1")
HANDSON_RESULT_BACKEND = os.environ.get("HANDSON_RESULT_BACKEND", "redis://127.0.0.1:6379/0")
