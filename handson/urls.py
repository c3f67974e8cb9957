from django.urls import path
from django.views.generic import RedirectView

from . import api, views

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="base")),
    path("handson", views.Base.as_view(), name="base"),
    path("handson/", RedirectView.as_view(pattern_name="base")),
    path("handson/tasks/<str:task_id>", views.TaskDetail.as_view(), name="task_detail"),
    path("handson/api/workers", api.workers, name="api_workers"),
    path("handson/tasks/<str:task_id>/stop", api.stop_task, name="stop_task"),
    path("handson/api/tasks", views.api_tasks, name="api_tasks"),
    path("handson/api/tasks/<str:task_id>", views.api_task, name="api_task"),
    path("handson/task_step1", views.TaskStep1.as_view(), name="task_step1"),
]
