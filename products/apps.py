from django.apps import AppConfig
from django.db.models.signals import post_delete, post_migrate, post_save


class ProductsConfig(AppConfig):
    name = "products"
    verbose_name = "Products"

    def ready(self) -> None:
        from products.models import Product
        from products.signals import product_changed
        from products.triggers import refresh_after_migrate

        post_save.connect(product_changed, sender=Product, dispatch_uid="products.invalidate.save")
        post_delete.connect(
            product_changed, sender=Product, dispatch_uid="products.invalidate.delete"
        )
        # A migration that changed a column's type leaves no trigger broken (products/triggers.py).
        post_migrate.connect(
            refresh_after_migrate, sender=self, dispatch_uid="products.refresh_trigger_functions"
        )
