"""Read-only admin: the ledger and runs are written by the sync only."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from ads_sync.models import AdsAccount, CampaignDayMetric, SyncDay, SyncRun


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(SyncRun)
class SyncRunAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "trigger",
        "range_start",
        "range_end",
        "planned",
        "done",
        "failed",
        "deferred",
        "rows",
        "api_calls",
        "planning_started_at",
        "started_at",
        "finished_at",
        "elapsed_s",
    ]
    list_filter = ["trigger", ("finished_at", admin.EmptyFieldListFilter), "started_at"]
    date_hierarchy = "started_at"


@admin.register(SyncDay)
class SyncDayAdmin(ReadOnlyAdmin):
    list_display = [
        "customer_id",
        "date",
        "state",
        "attempts",
        "failures",
        "retry_after",
        "rows",
        "fetched_at",
        "duration_ms",
        "run",
        "last_error",
    ]
    list_filter = ["state", "customer_id", "date"]
    search_fields = ["customer_id", "last_error"]
    date_hierarchy = "date"
    list_select_related = ["run"]


@admin.register(CampaignDayMetric)
class CampaignDayMetricAdmin(ReadOnlyAdmin):
    list_display = [
        "customer_id",
        "date",
        "campaign_id",
        "campaign_name",
        "impressions",
        "clicks",
        "cost_micros",
        "currency_code",
        "conversions",
    ]
    list_filter = ["customer_id", "date"]
    search_fields = ["campaign_name", "=campaign_id"]
    date_hierarchy = "date"


@admin.register(AdsAccount)
class AdsAccountAdmin(ReadOnlyAdmin):
    list_display = ["customer_id", "time_zone", "currency_code", "updated_at"]
