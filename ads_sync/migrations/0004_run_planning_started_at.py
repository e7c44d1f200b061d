"""When a run's planning took the lock: its elapsed time counts the account lookups, the gap
query and the CSV checks that come before the run is stored. started_at stays the time the run
was stored, which the daily detection's "a run started meanwhile" check reads."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("ads_sync", "0003_run_output_dir_text")]

    operations = [
        migrations.AddField(
            model_name="syncrun",
            name="planning_started_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
