"""Every route answers with and without the trailing slash; the schema lists the bare form."""

from django.urls import path

from products.api import views

app_name = "products"

_routes = [
    ("products", views.ProductListView, "list"),
    ("products/search", views.ProductSearchView, "search"),
    ("products/<int:pk>", views.ProductDetailView, "detail"),
]

urlpatterns = []
for route, view, name in _routes:
    urlpatterns.append(path(route, view.as_view(), name=name))
    # Same view, left out of the OpenAPI schema so each operation appears once.
    urlpatterns.append(path(route + "/", view.as_view(schema=None), name=name + "-slash"))
