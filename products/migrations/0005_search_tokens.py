"""One GIN index that finds a search's name and price candidates together.

A search by name and price range used to AND two bitmaps: the trigram index's (every product
whose name holds the term's trigrams, ~10,000 for "steel" in a million) and the price index's
(every product in the range, ~54,000 for 100-200). Both are built in full before the AND, so the
search cost what the larger side matched, not what it returned (548 rows).

Here each product has one array of integer keys, indexed once:
- a hash of every three-character piece of its upper-cased name;
- a hash of its price's dollar bucket at six sizes: 1, 10, 100, ..., 100,000 dollars.

A search asks for rows holding every three-character piece of its upper-cased term (`@>`: a
name that contains the term contains each of them) and one of the buckets that tile its price
range (`&&`). GIN intersects the posting lists as it reads them, so the
scan costs about what it returns. The keys only narrow: the query keeps `UPPER(name) LIKE` and
the price bounds, so a hash collision or a widened bucket can add a candidate, never a result.

Updates go to GIN's pending list, which every search reads in full until it is merged into
the index: at the default 4 MB a search took 15 ms instead of 11 ms in-process after a few
thousand price updates. A 256 kB list is merged more often, at no cost measurable per update.

The three functions are the only definition of the keys; products/selectors.py builds the
bucket labels (`p<level>:<bucket>`) of a query's range and the functions hash them. The index
replaces product_name_upper_trgm: two GIN indexes would double the entries every price update
writes.

PostgreSQL evaluates the index expression where no schema but pg_catalog is searched
(autovacuum's ANALYZE, a restore of a dump, logical replication, REINDEX from PostgreSQL 17), so
products_search_keys calls products_name_keys by its schema, the one the migration creates it in.
The keys are hashtext() values: should a PostgreSQL upgrade ever change hashtext, REINDEX
INDEX product_search_keys (the README says so too).
"""

from django.apps.registry import Apps
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

SEARCH_INDEX = "product_search_keys"

FUNCTIONS = """
CREATE OR REPLACE FUNCTION products_price_keys(labels text[]) RETURNS integer[]
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN ARRAY(SELECT hashtext(label) FROM unnest(labels) AS label);

-- PL/pgSQL rather than SQL: every UPDATE that changes a name or a price computes the keys, and
-- a SQL function with subqueries is not inlined (measured: 121 us per row, here 20 us).
CREATE OR REPLACE FUNCTION products_name_keys(term text) RETURNS integer[]
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    upper_term text := upper(term);
    keys integer[] := '{}';
BEGIN
    FOR i IN 1 .. length(upper_term) - 2 LOOP
        keys := keys || hashtext(substr(upper_term, i, 3));
    END LOOP;
    RETURN keys;
END
$$;

-- The labels as products_price_keys hashes them: 'p<level>:<floor(price) div 10^level>'.
CREATE OR REPLACE FUNCTION products_search_keys(name text, price numeric) RETURNS integer[]
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    keys integer[] := {schema}.products_name_keys(name);
    dollars bigint := floor(price)::bigint;
BEGIN
    FOR level IN 0 .. 5 LOOP
        keys := keys || hashtext('p' || level || ':' || dollars / (10::bigint ^ level)::bigint);
    END LOOP;
    RETURN keys;
END
$$;
"""

DROP_FUNCTIONS = """
DROP FUNCTION IF EXISTS products_search_keys(text, numeric);
DROP FUNCTION IF EXISTS products_name_keys(text);
DROP FUNCTION IF EXISTS products_price_keys(text[]);
"""


def create_functions(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    execute_in_schema(schema_editor, FUNCTIONS)


def execute_in_schema(schema_editor: BaseDatabaseSchemaEditor, sql: str) -> None:
    """Run `sql` with `{schema}` replaced by the schema the migration creates objects in."""
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT current_schema()")
        (schema,) = cursor.fetchone()
    schema_editor.execute(sql.replace("{schema}", schema_editor.quote_name(schema)))


def drop_functions(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    schema_editor.execute(DROP_FUNCTIONS)


def drop_invalid_index(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    drop_if_invalid(schema_editor, SEARCH_INDEX)


def drop_if_invalid(schema_editor: BaseDatabaseSchemaEditor, index: str) -> None:
    """A concurrent build that failed (a lock timeout, a cancel) leaves its index behind, invalid:
    drop it, or running the migration again stops at "relation already exists"."""
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM pg_index WHERE indexrelid = to_regclass(%s) AND NOT indisvalid", [index]
        )
        if cursor.fetchone():
            schema_editor.execute(f"DROP INDEX CONCURRENTLY {schema_editor.quote_name(index)}")


class Migration(migrations.Migration):
    # Concurrent index builds keep a live catalogue writable; they cannot run in a transaction.
    atomic = False

    dependencies = [("products", "0004_id_buckets")]

    operations = [
        migrations.RunPython(create_functions, drop_functions),
        migrations.RunPython(drop_invalid_index, migrations.RunPython.noop),
        AddIndexConcurrently(
            model_name="product",
            index=GinIndex(
                models.Func(
                    models.F("name"),
                    models.F("price"),
                    function="products_search_keys",
                    output_field=ArrayField(models.IntegerField()),
                ),
                name=SEARCH_INDEX,
                gin_pending_list_limit=256,
            ),
        ),
        RemoveIndexConcurrently(model_name="product", name="product_name_upper_trgm"),
    ]
