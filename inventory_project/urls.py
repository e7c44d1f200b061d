from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from inventory_project import health

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/", include("products.api.urls")),
]

# Django's own errors answer in the API's JSON shape for /api/ paths, and as usual elsewhere.
handler400 = "products.api.errors.handler400"
handler403 = "products.api.errors.handler403"
handler404 = "products.api.errors.handler404"
handler500 = "products.api.errors.handler500"
