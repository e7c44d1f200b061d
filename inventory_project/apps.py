from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class InventoryProjectConfig(AppConfig):
    """Project-level app: health checks, the heartbeat task and operator commands."""

    name = "inventory_project"
    verbose_name = "Inventory project"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_login_failed

        from inventory_project import logins

        user_login_failed.connect(logins.count_login_failure, dispatch_uid="count_login_failure")


class AdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin, with the project's site (inventory_project/admin_site.py)."""

    default = False  # named in INSTALLED_APPS; "inventory_project" stays the config above
    default_site = "inventory_project.admin_site.AdminSite"
