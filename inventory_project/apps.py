from django.apps import AppConfig


class InventoryProjectConfig(AppConfig):
    """Project-level app: health checks, the heartbeat task and operator commands."""

    name = "inventory_project"
    verbose_name = "Inventory project"
