"""Pin the search path of the bucket-counting trigger function to the schema of its table.

products_product_count_buckets (migration 0004) names products_id_bucket without a schema, so
PostgreSQL looked for it on the search path of whoever wrote to products_product. A writer whose
search path does not hold that schema (another service writing `public.products_product`
under its own search path, a trigger that PostgreSQL fires with an empty one) could not insert
or delete a product: "relation products_id_bucket does not exist". A schema earlier on its path
with a table of that name would have had its counts changed instead. `pg_temp` goes last, so
that a temporary table cannot stand in for it either.

The trigger is per statement: the setting costs one save and restore per INSERT or DELETE, not
per row. The other trigger functions (0002-0004) name no table.
"""

from django.apps.registry import Apps
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

FUNCTION = "products_product_count_buckets()"


def pin_search_path(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT current_schema()")
        (schema,) = cursor.fetchone()
    quoted = schema_editor.quote_name(schema)
    schema_editor.execute(f"ALTER FUNCTION {quoted}.{FUNCTION} SET search_path = {quoted}, pg_temp")


def reset_search_path(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    schema_editor.execute(f"ALTER FUNCTION {FUNCTION} RESET search_path")


class Migration(migrations.Migration):
    dependencies = [("products", "0005_search_tokens")]

    operations = [migrations.RunPython(pin_search_path, reset_search_path)]
