"""A run's output folder as text: a path is valid up to PATH_MAX (4,096 bytes on Linux), and a
longer one than the old 500 characters made backfill_ads and the daily detection fail with a
DataError. varchar to text is a catalogue change in PostgreSQL: the table is not rewritten.

Back to varchar(500), PostgreSQL's cast would cut longer paths short without a word: going back
is refused while a run holds one."""

from django.apps.registry import Apps
from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.models.functions import Length

OLD_MAX_LENGTH = 500


def refuse_long_paths(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    SyncRun = apps.get_model("ads_sync", "SyncRun")
    db = schema_editor.connection.alias
    long_paths = (
        SyncRun.objects.using(db)
        .annotate(length=Length("output_dir"))
        .filter(length__gt=OLD_MAX_LENGTH)
    )
    if long_paths.exists():
        raise RuntimeError(
            f"{long_paths.count()} sync run(s) have an output_dir longer than {OLD_MAX_LENGTH} "
            "characters, which varchar(500) would cut short: shorten or delete them first."
        )


class Migration(migrations.Migration):
    dependencies = [("ads_sync", "0002_failed_day_backoff")]

    operations = [
        migrations.AlterField(model_name="syncrun", name="output_dir", field=models.TextField()),
        # Reversed first when going back: the check runs before the column shrinks.
        migrations.RunPython(migrations.RunPython.noop, refuse_long_paths),
    ]
