"""SyncRun.started_at is set by the planning when it begins (services.run_plan), so a run's time
counts its account lookups and CSV checks; auto_now_add would overwrite it. No change in the
database: Django applies the default itself."""

import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("ads_sync", "0003_run_output_dir_text")]

    operations = [
        migrations.AlterField(
            model_name="syncrun",
            name="started_at",
            field=models.DateTimeField(default=django.utils.timezone.now),
        ),
    ]
