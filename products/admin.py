from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.text import smart_split, unescape_string_literal

from products import selectors
from products.models import Product

LOW_STOCK_THRESHOLD = 10


class StockLevelFilter(admin.SimpleListFilter):
    title = "stock level"
    parameter_name = "stock"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("out", "Out of stock"),
            ("low", f"Low stock (1-{LOW_STOCK_THRESHOLD - 1})"),
            ("in", "In stock"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Product]) -> QuerySet[Product]:
        if self.value() == "out":
            return queryset.filter(stock_level=0)
        if self.value() == "low":
            return queryset.filter(stock_level__gt=0, stock_level__lt=LOW_STOCK_THRESHOLD)
        if self.value() == "in":
            return queryset.filter(stock_level__gte=LOW_STOCK_THRESHOLD)
        return queryset


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    # The change form and list_editable both run the model's validators (full_clean through the
    # ModelForm), and PostgreSQL's CHECK constraints and version trigger back them up.
    list_display = ["id", "name", "price", "stock_level", "updated_at"]
    list_editable = ["price", "stock_level"]
    list_filter = [StockLevelFilter]
    search_fields = ["name"]
    ordering = ["id"]
    readonly_fields = ["version", "created_at", "updated_at"]
    fields = ["name", "price", "stock_level", "version", "created_at", "updated_at"]
    show_full_result_count = False
    list_per_page = 50

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Product], search_term: str
    ) -> tuple[QuerySet[Product], bool]:
        """What the admin's own search finds (every word, anywhere in the name, in any case),
        through the search keys index: the admin's icontains would read every name."""
        for word in smart_split(search_term):
            if word.startswith(('"', "'")) and word[0] == word[-1]:
                word = unescape_string_literal(word)
            queryset = selectors.name_contains(queryset, word)
        return queryset, False
