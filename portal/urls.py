from django.contrib import admin
from django.urls import include, path

from portal.api import api

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", api.urls),
    path("open_api/v1.3/", include("portal.open_api_urls")),
    path("", include("portal.web_urls")),
]
