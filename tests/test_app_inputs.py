"""Bad input to the hands-on app gets a 4xx with a message, never a 500 or an empty page."""
import re
import uuid

import pytest
import requests

from labs.harness.reference import materialize
from labs.harness.services.redis import LocalRedis
from labs.harness.services.stack import Stack, StackSpec

from .helpers import reference_app


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    with reference_app(tmp_path_factory.mktemp("inputs"), sleep=1) as stack:
        web = stack.web
        yield web.url


# A well-formed id that no run ever sends (each run has a Redis of its own). Fixed, so that
# every pytest-xdist worker collects the same test ids.
NEVER_SENT = "3f8e2c1a-7b4d-4e9f-9a6c-0d5b8e7f1a2c"


@pytest.mark.parametrize("path", [
    f"/handson/api/tasks/{NEVER_SENT}", "/handson/api/tasks/not-an-id", "/handson/api/tasks/" + "x" * 5000,
    "/handson/api/tasks/%E3%81%82", "/handson/api/tasks/%00",
])
def test_an_unknown_or_malformed_task_id_is_a_404_with_a_message(app, path):
    answer = requests.get(app + path, timeout=10)
    assert answer.status_code == 404 and answer.json()["error"]


@pytest.mark.parametrize("path", ["/handson/task_step1", "/handson/task_step2", "/handson/task_step4",
                                  "/handson/task_step5", "/handson/task_step6", "/handson/task_step7",
                                  "/handson/task_step8"])
def test_a_get_of_a_button_address_is_a_405_that_says_post(app, path):
    answer = requests.get(app + path, timeout=10)
    assert answer.status_code == 405 and "POST" in answer.text


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_the_json_api_is_read_only(app, method):
    answer = requests.request(method, app + "/handson/api/tasks", timeout=10)
    assert answer.status_code in (403, 405) and answer.text.strip()


def test_a_post_without_the_csrf_token_is_refused_with_a_403(app):
    answer = requests.post(app + "/handson/task_step2", timeout=10)
    assert answer.status_code == 403 and "CSRF" in answer.text


def test_the_page_with_a_trailing_slash_leads_to_the_page(app):
    answer = requests.get(app + "/handson/", timeout=10)
    assert answer.status_code == 200 and "StopAllTasks" in answer.text


def _csrf(session, app):
    page = session.get(app + "/handson", timeout=10).text
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)


@pytest.mark.parametrize("path", ["/handson/api/tasks?page=0", "/handson/api/tasks?page=x",
                                  "/handson/api/tasks?page=-1", "/handson?page=%E3%81%82"])
def test_a_bad_page_number_is_a_400_that_says_why(app, path):
    answer = requests.get(app + path, timeout=10)
    assert answer.status_code == 400 and "page must be" in answer.text


def test_stop_needs_post_and_the_csrf_token(app):
    task_id = uuid.uuid4()
    assert requests.get(f"{app}/handson/tasks/{task_id}/stop", timeout=10).status_code == 405
    refused = requests.post(f"{app}/handson/tasks/{task_id}/stop", timeout=10)
    assert refused.status_code == 403 and "CSRF" in refused.text


@pytest.mark.parametrize("task_id", [NEVER_SENT, "not-an-id", "x" * 5000, "%E3%81%82"])
def test_stopping_an_id_the_app_never_sent_is_a_404_with_a_message(app, task_id):
    session = requests.Session()
    answer = session.post(f"{app}/handson/tasks/{task_id}/stop", headers={"X-CSRFToken": _csrf(session, app)},
                          timeout=10)
    assert answer.status_code == 404 and answer.json()["error"]


def test_the_workers_api_says_whether_a_worker_answers(app):
    answer = requests.get(app + "/handson/api/workers", timeout=10)
    assert answer.status_code == 200 and answer.json()["workers"] == 1 and answer.json()["message_ja"]


@pytest.fixture(scope="module")
def starter(tmp_path_factory):
    """The starter (step 1): no Celery app in the web server yet, and no worker."""
    run_dir = tmp_path_factory.mktemp("starter")
    workspace = materialize(1, run_dir / "starter")
    with Stack(workspace, LocalRedis(run_dir), 1, run_dir, StackSpec(workers=())) as stack:
        yield stack.web.url


def test_before_step_2_stop_and_workers_answer_503_with_the_reason(starter):
    session = requests.Session()
    stop = session.post(f"{starter}/handson/tasks/{uuid.uuid4()}/stop",
                        headers={"X-CSRFToken": _csrf(session, starter)}, timeout=10)
    workers = session.get(starter + "/handson/api/workers", timeout=10)
    assert stop.status_code == 503 and "step 2" in stop.json()["error"]
    assert workers.status_code == 503 and "step 2" in workers.json()["error"]
    assert session.get(starter + "/handson", timeout=10).status_code == 200
