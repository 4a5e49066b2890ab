from django.urls import path

from . import views

urlpatterns = [
    path("api/verify/", views.GuardedVerify.as_view()),
    path("healthz", views.healthz),
]
