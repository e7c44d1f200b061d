from django.apps import AppConfig


class InventoryProjectConfig(AppConfig):
    """Project-level app: health checks, the heartbeat task and operator commands."""

    name = "inventory_project"
    verbose_name = "Inventory project"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_login_failed

        from inventory_project import logins

        user_login_failed.connect(logins.count_login_failure, dispatch_uid="count_login_failure")
