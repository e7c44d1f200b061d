"""What Django's error reports (the DEBUG page, error e-mails) show of the settings.

Django hides settings whose names look secret (KEY, PASS, TOKEN, ...), but not a password
inside a URL: `DATABASE_URL`, `REDIS_URL` (and the cache's LOCATION) and `CELERY_BROKER_URL`
were shown whole. Here the password in any URL-shaped setting value is replaced as well.
"""

from __future__ import annotations

import re
from typing import Any

from django.views.debug import SafeExceptionReporterFilter

# scheme://user:password@host: the user ends at the first ':', the password at the value's
# last '@' (the user may be empty: redis://:password@host). A password may hold '@', and,
# unencoded, '/', '?' or '#' (a base64 one): such a URL fails to connect, which is when an
# error report shows it. So everything up to the last '@' goes: a port before an '@' in a
# path (https://host:8443/users/@me) is hidden too, harmless in an error report.
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/\s]*:)\S*(?P<at>@)", re.I)


def without_passwords(text: str) -> str:
    return _URL_PASSWORD.sub(
        lambda m: f"{m['head']}{SafeExceptionReporterFilter.cleansed_substitute}{m['at']}", text
    )


class SettingsFilter(SafeExceptionReporterFilter):
    def cleanse_setting(self, key: Any, value: Any) -> Any:
        cleansed = super().cleanse_setting(key, value)
        return without_passwords(cleansed) if isinstance(cleansed, str) else cleansed
