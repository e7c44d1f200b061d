from django.apps.registry import Apps
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor


class Stop(Exception):
    pass


def stop(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    raise Stop("a later migration fails (a lock timeout, say)")


class Migration(migrations.Migration):
    dependencies = [("products", "0010_version_bigint")]

    operations = [migrations.RunPython(stop, migrations.RunPython.noop)]
