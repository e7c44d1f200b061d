"""Google Ads daily metrics, the per-day sync ledger and the runs that fill it."""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class AdsAccount(models.Model):
    """What the API said about an account once: its time zone decides which day is 'yesterday'."""

    customer_id = models.CharField(max_length=20, primary_key=True)
    time_zone = models.CharField(max_length=64)
    currency_code = models.CharField(max_length=3)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.customer_id


class CampaignDayMetric(models.Model):
    """One campaign's metrics for one day of one account; the natural key is unique."""

    customer_id = models.CharField(max_length=20)
    date = models.DateField()
    campaign_id = models.BigIntegerField()
    campaign_name = models.CharField(max_length=255)
    impressions = models.BigIntegerField()
    clicks = models.BigIntegerField()
    cost_micros = models.BigIntegerField()
    conversions = models.DecimalField(max_digits=20, decimal_places=6)
    currency_code = models.CharField(max_length=3)
    fetched_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["customer_id", "campaign_id", "date"], name="ads_metric_natural_key"
            ),
            models.CheckConstraint(
                condition=Q(impressions__gte=0)
                & Q(clicks__gte=0)
                & Q(cost_micros__gte=0)
                & Q(conversions__gte=0),
                name="ads_metric_non_negative",
            ),
        ]
        indexes = [models.Index(fields=["customer_id", "date"], name="ads_metric_cust_date")]

    def __str__(self) -> str:
        return f"{self.customer_id} {self.date} {self.campaign_id}"


class SyncRun(models.Model):
    """One fan-out: which days were planned and what became of them."""

    class Trigger(models.TextChoices):
        BACKFILL = "backfill"
        BEAT = "beat"
        ADMIN = "admin"

    trigger = models.CharField(max_length=16, choices=Trigger.choices)
    range_start = models.DateField(null=True, blank=True)
    range_end = models.DateField(null=True, blank=True)
    customer_ids = models.JSONField(default=list)
    output_dir = models.TextField()
    force = models.BooleanField(default=False)
    planned = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    deferred = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    csv_rewritten = models.PositiveIntegerField(default=0)
    rows = models.PositiveBigIntegerField(default=0)
    api_calls = models.PositiveIntegerField(default=0)
    notes = models.TextField(blank=True)
    # Why its folder's totals file could not be written as it finished ("" if it was, or once
    # backfill_ads, waiting for it, rebuilt the file): the command exits 73 on it.
    totals_error = models.TextField(blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    # When its planning took the lock (account lookups, the gap query and the CSV checks come
    # before the run is stored): its elapsed time counts from here.
    planning_started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    elapsed_s = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(
                    done__lte=models.F("planned") - models.F("failed") - models.F("deferred")
                ),
                name="ads_run_counts_within_planned",
            )
        ]

    def __str__(self) -> str:
        return f"run {self.pk} ({self.trigger})"

    @property
    def settled(self) -> int:
        return self.done + self.failed + self.deferred


class SyncDay(models.Model):
    """The ledger: the state of one (customer, date), whichever run touched it last."""

    class State(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"
        DEFERRED = "deferred"

    customer_id = models.CharField(max_length=20)
    date = models.DateField()
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    # Failed fetches in a row (0 once the day is done) and, after a few, until when the daily
    # detection leaves the day alone: a day that keeps failing (an account whose access was
    # revoked) is not fetched again every day for ever.
    failures = models.PositiveIntegerField(default=0)
    retry_after = models.DateTimeField(null=True, blank=True)
    rows = models.PositiveIntegerField(default=0)
    fetched_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    run = models.ForeignKey(
        SyncRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="days"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["customer_id", "date"], name="ads_syncday_natural_key")
        ]
        indexes = [models.Index(fields=["run", "state"], name="ads_syncday_run_state")]

    def __str__(self) -> str:
        return f"{self.customer_id} {self.date} {self.state}"


FINAL_STATES = (SyncDay.State.DONE, SyncDay.State.FAILED, SyncDay.State.DEFERRED)
