from django.apps import AppConfig


class AdsSyncConfig(AppConfig):
    name = "ads_sync"
    verbose_name = "Google Ads sync"
