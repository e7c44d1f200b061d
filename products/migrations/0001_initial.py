from decimal import Decimal

import django.contrib.postgres.indexes
import django.core.validators
import django.db.models.functions.text
from django.contrib.postgres.operations import TrigramExtension
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = []

    operations = [
        TrigramExtension(),
        migrations.CreateModel(
            name="Product",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("name", models.CharField(max_length=255)),
                (
                    "price",
                    models.DecimalField(
                        decimal_places=2,
                        max_digits=12,
                        validators=[django.core.validators.MinValueValidator(Decimal("0"))],
                    ),
                ),
                (
                    "stock_level",
                    models.IntegerField(
                        validators=[
                            django.core.validators.MinValueValidator(0),
                            django.core.validators.MaxValueValidator(2147483647),
                        ]
                    ),
                ),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                ("version", models.PositiveIntegerField(default=1, editable=False)),
            ],
            options={
                "ordering": ["id"],
                "indexes": [
                    models.Index(fields=["price"], name="product_price_idx"),
                    django.contrib.postgres.indexes.GinIndex(
                        django.contrib.postgres.indexes.OpClass(
                            django.db.models.functions.text.Upper("name"), name="gin_trgm_ops"
                        ),
                        name="product_name_upper_trgm",
                    ),
                ],
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(("name", ""), _negated=True), name="product_name_not_empty"
                    ),
                    models.CheckConstraint(
                        condition=models.Q(("price__gte", 0)), name="product_price_gte_0"
                    ),
                    models.CheckConstraint(
                        condition=models.Q(("stock_level__gte", 0)), name="product_stock_level_gte_0"
                    ),
                    models.CheckConstraint(
                        condition=models.Q(("version__gte", 1)), name="product_version_gte_1"
                    ),
                ],
            },
        ),
    ]
