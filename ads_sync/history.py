"""How far back Google Ads serves daily rows. No Django import: the settings read it too."""

from __future__ import annotations

import calendar
import datetime as dt

# Google Ads keeps metrics segmented by day for the last 37 months only: an older date is
# refused (DateRangeError.REQUESTED_DATE_GRANULARITY_NOT_SUPPORTED, since June 2026), so each
# such day planned cost an API call and failed, at every run.
DAILY_HISTORY_MONTHS = 37
# The most days those months hold (1122 to 1126, by the day): a bound that holds on every day, so
# that a history taken on one day is not refused on the next (each process failed to start).
DAYS_SERVED_MOST = 1126


def earliest_day(today: dt.date) -> dt.date:
    """The first day Google Ads still serves by day: the day after the same date
    DAILY_HISTORY_MONTHS months before `today` (the month's last day where it has none)."""
    months = today.year * 12 + today.month - 1 - DAILY_HISTORY_MONTHS
    year, month = divmod(months, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return dt.date(year, month + 1, min(today.day, last)) + dt.timedelta(days=1)


def days_served(today: dt.date) -> int:
    """The most days before `today` a history may reach (ADS_SYNC_HISTORY_DAYS, --days)."""
    return (today - earliest_day(today)).days
