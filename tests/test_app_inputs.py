"""Bad input to the hands-on app gets a 4xx with a message, never a 500 or an empty page."""
import uuid

import pytest
import requests

from .helpers import reference_app


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    with reference_app(tmp_path_factory.mktemp("inputs"), sleep=1) as stack:
        web = stack.web
        yield web.url


@pytest.mark.parametrize("path", [
    f"/handson/api/tasks/{uuid.uuid4()}", "/handson/api/tasks/not-an-id", "/handson/api/tasks/" + "x" * 5000,
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
