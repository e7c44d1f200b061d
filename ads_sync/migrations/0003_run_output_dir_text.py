"""A run's output folder as text: a path is valid up to PATH_MAX (4,096 bytes on Linux), and a
longer one than the old 500 characters made backfill_ads and the daily detection fail with a
DataError. varchar to text is a catalogue change in PostgreSQL: the table is not rewritten."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("ads_sync", "0002_failed_day_backoff")]

    operations = [
        migrations.AlterField(
            model_name="syncrun", name="output_dir", field=models.TextField()
        ),
    ]
