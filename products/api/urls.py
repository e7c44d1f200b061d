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
for route, view_class, name in _routes:
    view = view_class.as_view()
    urlpatterns.append(path(route, view, name=name))
    # The same view (products.api.schema.without_slash_twins leaves it out of the schema).
    urlpatterns.append(path(route + "/", view, name=name + "-slash"))
