"""products_price_keys in PL/pgSQL.

A search folds products_price_keys(<labels>) while PostgreSQL plans it (the function is
IMMUTABLE and its argument a constant). As a SQL function with a subquery (migration 0005) it
was parsed and planned anew inside every search's planning; PL/pgSQL keeps its compiled body per
connection. Measured with pgbench on the bench's 1,000,000 products, one client, the statement
of `steel` at 100-200 planned each time, four rounds side by side: 792-807 searches a second
before, 816-870 after. Same keys: the hash of each label, in order. No index holds this function,
so nothing is rebuilt.
"""

from django.db import migrations

PLPGSQL = """
CREATE OR REPLACE FUNCTION products_price_keys(labels text[]) RETURNS integer[]
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    keys integer[] := '{}';
    label text;
BEGIN
    FOREACH label IN ARRAY labels LOOP
        keys := keys || hashtext(label);
    END LOOP;
    RETURN keys;
END
$$;
"""

SQL = """
CREATE OR REPLACE FUNCTION products_price_keys(labels text[]) RETURNS integer[]
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN ARRAY(SELECT hashtext(label) FROM unnest(labels) AS label);
"""


class Migration(migrations.Migration):
    dependencies = [("products", "0007_search_pieces_by_price")]

    operations = [migrations.RunSQL(PLPGSQL, SQL)]
