"""`python -m labs.harness.services.runserver runserver --nothreading --noreload ADDR`: Django's own
single-threaded development server, with one change: a client gets about a second to send its
request once its connection is accepted.

`runserver --nothreading` serves one connection at a time. A browser opens spare connections
it may never use ("speculative" or preconnect sockets); the server would wait on such an idle
connection for ever, and every other request (another tab, the page's polling) with it. With a
per-connection socket timeout (socketserver's ``StreamRequestHandler.timeout``) an idle client
is dropped after ``IDLE_TIMEOUT`` seconds. A slow *view* still holds the server for as long as it
runs: the timeout counts only while the server waits for the client, which is step 1's lesson.

Before it serves, it applies the app's migrations (handson/migrations: the tables of step 9's
orders) to the run's database, HANDSON_DATABASE.

HANDSON_SENT_EVENTS=1 (set by `make run`) also makes the app publish a task-sent event with every
task it sends (Celery's task_send_sent_event), so that Flower can show when each task was sent.
"""
import os
import sys

from django.core.management import execute_from_command_line
from django.core.servers import basehttp

IDLE_TIMEOUT = 1.0  # seconds a client may stay silent on its connection


class IdleLimitedRequestHandler(basehttp.WSGIRequestHandler):
    """Django's request handler, giving up on a client that sends nothing for IDLE_TIMEOUT s."""

    timeout = IDLE_TIMEOUT

    def handle(self):
        try:
            super().handle()
        except TimeoutError:
            # An idle (or very slow) client: drop the connection quietly and serve the next one.
            self.close_connection = True


def _with_sent_events(run):
    """basehttp.run, after switching on task-sent events in the app's Celery app (Django is set up
    by then, so the learner's app exists; a setting set on app.conf wins over the Django settings)."""

    def run_with_sent_events(*args, **kwargs):
        try:
            from celery import current_app

            current_app.conf.task_send_sent_event = True
        except Exception:  # noqa: BLE001 - monitoring must never keep the server from starting
            pass
        return run(*args, **kwargs)

    return run_with_sent_events


def main(argv):
    # The app's tables first (step 9's orders), in this process: a second Python start would cost
    # as much again. The workers find them made: tasks come only once this server answers.
    execute_from_command_line(["django-admin", "migrate", "--noinput", "--verbosity", "0"])
    basehttp.WSGIRequestHandler = IdleLimitedRequestHandler  # basehttp.run() looks it up at call time
    if os.environ.get("HANDSON_SENT_EVENTS") == "1":
        from django.core.management.commands import runserver

        runserver.run = _with_sent_events(runserver.run)
    execute_from_command_line(["django-admin", *argv])


if __name__ == "__main__":
    main(sys.argv[1:])
