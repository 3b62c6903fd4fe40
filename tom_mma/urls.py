"""URLs of tom_mma's own pages; include under a prefix, e.g. ``path("mma/", include("tom_mma.urls"))``."""

from django.urls import path

from .views import HomeView

app_name = "tom_mma"

urlpatterns = [
    path("", HomeView.as_view(), name="home"),
]
