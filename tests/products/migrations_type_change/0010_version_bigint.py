from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("products", "0009_name_without_control_characters")]

    operations = [
        migrations.RunSQL(
            "ALTER TABLE products_product ALTER COLUMN version TYPE bigint",
            "ALTER TABLE products_product ALTER COLUMN version TYPE integer",
        )
    ]
