from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class ProductsConfig(AppConfig):
    name = "products"
    verbose_name = "Products"

    def ready(self) -> None:
        from products.models import Product
        from products.signals import product_changed

        post_save.connect(product_changed, sender=Product, dispatch_uid="products.invalidate.save")
        post_delete.connect(
            product_changed, sender=Product, dispatch_uid="products.invalidate.delete"
        )
