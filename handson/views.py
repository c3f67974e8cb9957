import time

from django.conf import settings
from django.http import Http404, JsonResponse
from django.shortcuts import redirect
from django.urls import NoReverseMatch, reverse
from django.views.generic import TemplateView, View

from . import tasklog

# The page's buttons: (label, url name). A button whose url name is not in
# handson/urls.py yet is shown greyed out, with the step that adds it.
BUTTONS = [("Step1", "task_step1", 1), ("Step2", "task_step2", 2), ("StopAllTasks", "task_step4", 4),
           ("Step5", "task_step5", 5), ("Step6", "task_step6", 6),
           ("Step7", "task_step7", 7), ("Step8", "task_step8", 8), ("Step9", "task_step9", 9),
           ("Step10", "task_step10", 10), ("Step12", "task_step12", 12),
           ("Step13", "task_step13", 13)]
# Buttons that post more than a click: {label: {field: value}}, shown as inputs of their form.
FIELDS = {"Step9": {"item": "mug", "amount": 3000}, "Step10": {"regions": "north,south,east,west"}}


def _buttons():
    shown = []
    for label, url_name, step in BUTTONS:
        try:
            shown.append({"label": label, "url": reverse(url_name), "step": step, "fields": FIELDS.get(label, {})})
        except NoReverseMatch:
            shown.append({"label": label, "url": None, "step": step})
    return shown


def _tasks_or_problem(read):
    try:
        return read(), None
    except tasklog.TaskLogUnavailable as problem:
        return None, str(problem)


class Base(TemplateView):
    template_name = "handson/start_task.html"

    def get(self, request, *args, **kwargs):
        # Imported here, not at the top: the imports at the top are the lines the steps edit.
        from django.http import HttpResponseBadRequest

        from . import api

        try:
            self.page = api.page_number(request.GET.get("page"))
        except ValueError as wrong:
            return HttpResponseBadRequest(f"{wrong}\n", content_type="text/plain; charset=utf-8")
        return super().get(request, *args, **kwargs)

    def get_context_data(self, **kwargs):
        from . import api

        listing, problem = _tasks_or_problem(lambda: tasklog.page(self.page))
        try:
            workers = api.workers_answer(fresh_only=True)
        except tasklog.TaskLogUnavailable:
            workers = None
        tasks = (listing or {}).get("tasks", [])
        return {"buttons": _buttons(), "tasks": tasks, "listing": listing, "problem": problem,
                "workers": workers, "bars": api.timeline(tasks)}


class TaskDetail(TemplateView):
    template_name = "handson/task_detail.html"

    def get_context_data(self, task_id, **kwargs):
        task, problem = _tasks_or_problem(lambda: tasklog.find(task_id))
        if task is None and problem is None:
            raise Http404(f"This app never sent a task with id {task_id}.")
        return {"task": task, "problem": problem}


def _only_get(request):
    """None for a GET; else a JSON 405 that says what the address accepts."""
    if request.method in ("GET", "HEAD"):
        return None
    response = JsonResponse({"error": f"{request.method} is not accepted here: this address is read with GET."},
                            status=405)
    response["Allow"] = "GET, HEAD"
    return response


def api_tasks(request):
    from . import api

    if wrong := _only_get(request):
        return wrong
    try:
        number = api.page_number(request.GET.get("page"))
    except ValueError as wrong:
        return JsonResponse({"error": str(wrong)}, status=400)
    listing, problem = _tasks_or_problem(lambda: tasklog.page(number))
    if problem:
        return JsonResponse({"error": problem}, status=503)
    return JsonResponse(listing)


def api_task(request, task_id):
    if wrong := _only_get(request):
        return wrong
    task, problem = _tasks_or_problem(lambda: tasklog.find(task_id))
    if problem:
        return JsonResponse({"error": problem}, status=503)
    if task is None:
        return JsonResponse({"error": f"This app never sent a task with id {task_id}."}, status=404)
    return JsonResponse(task)


class TaskStep1(View):
    """Step 1: the slow work runs inside the request, so the browser waits."""

    def post(self, request, *args, **kwargs):
        time.sleep(settings.HANDSON_SLEEP)
        return redirect(reverse("base"))
