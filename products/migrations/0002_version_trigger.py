"""Bump `version` (and `updated_at`, unless the writer set it) on every UPDATE of a product.

One place for every write path: the API, admin list_editable, QuerySet.update() and raw SQL.
"""

from django.db import migrations

FORWARD = """
CREATE OR REPLACE FUNCTION products_product_bump_version() RETURNS trigger AS $$
BEGIN
    NEW.version := OLD.version + 1;
    IF NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER products_product_bump_version
    BEFORE UPDATE ON products_product
    FOR EACH ROW EXECUTE FUNCTION products_product_bump_version();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS products_product_bump_version ON products_product;
DROP FUNCTION IF EXISTS products_product_bump_version();
"""


class Migration(migrations.Migration):
    dependencies = [("products", "0001_initial")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
