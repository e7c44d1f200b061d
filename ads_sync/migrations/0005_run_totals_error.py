"""Why a run's folder's totals file could not be written as it finished, in a field of its own
rather than a line of its notes found by its start: backfill_ads exits 73 on it, and clears it
once the rebuild it does after waiting for other runs has written the file."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("ads_sync", "0004_run_planning_started_at")]

    operations = [
        migrations.AddField(
            model_name="syncrun",
            name="totals_error",
            field=models.TextField(blank=True),
        ),
    ]
