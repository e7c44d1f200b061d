"""Products in the admin: prices and stock levels edited in the list, or a product on its page,
saving only the fields the editor changed and never over a change made since the page loaded
(ProductAdminForm); a stock-level filter, and a name search through the search keys index."""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import ValidationError
from django.db import router, transaction
from django.db.models import Count, Model, Q, QuerySet
from django.http import HttpRequest, HttpResponse, QueryDict
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

    conditions = {
        "out": Q(stock_level=0),
        "low": Q(stock_level__gt=0, stock_level__lt=LOW_STOCK_THRESHOLD),
        "in": Q(stock_level__gte=LOW_STOCK_THRESHOLD),
    }

    def queryset(self, request: HttpRequest, queryset: QuerySet[Product]) -> QuerySet[Product]:
        condition = self.conditions.get(str(self.value()))
        return queryset if condition is None else queryset.filter(condition)

    def get_facet_counts(self, pk_attname: str, filtered_qs: QuerySet[Model]) -> dict[str, Count]:
        """The counts of the list's "Show counts" link, each choice's condition counted in one
        scan. Django's own counts each as `id IN (the choice's queryset)`, which PostgreSQL ran
        as a scan of the subquery per row: hours over a million products, the page cancelled
        at the web's statement limit (WEB_DB_STATEMENT_TIMEOUT_S) with a 503."""
        return {
            f"{index}__c": Count(pk_attname, filter=self.conditions[str(value)])
            for index, (value, _) in enumerate(self.lookup_choices)
        }


class ProductAdminForm(forms.ModelForm):
    """Writes only what the editor changed, and not over a change made since the page loaded.

    A stock level is also changed by the API while an editor has the page open. A ModelForm
    saves every field it shows, so saving a new price would also write back the stock level the
    page was loaded with, undoing the API's change. Here each field also sends the value the
    page showed (`show_hidden_initial`), and the save writes only the fields whose value the
    editor changed. If one of those was changed by someone else in the meantime, the form
    shows the value it has now instead of saving over it; saving again writes the editor's
    value, since the page now holds the current one. The row is locked from that check to the
    save (both admin views run them in one transaction). A post without the values the page
    showed (a script) writes what differs from the row, as a plain ModelForm would.

    Once validated, `changed_data` is what will be written, so the admin's history and its
    "N products were changed" count what was saved.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in self._editable():
            self.fields[name].show_hidden_initial = True
        self.edited: list[str] | None = None  # known after clean() of an existing product

    @property
    def changed_data(self) -> list[str]:
        if self.edited is not None:
            return self.edited
        return super().changed_data

    def _get_validation_exclusions(self) -> set[str]:
        # The model's validators judge what the editor changed. A value stored before a rule
        # existed (a name with a tab) must not block saving the stock level beside it.
        # A private ModelForm hook (django-stubs leaves it out), in place since Django 1.2.
        excluded = set(super()._get_validation_exclusions())  # type: ignore[misc]
        if self.edited is not None:
            excluded |= {name for name in self._editable() if name not in self.edited}
        return excluded

    def _editable(self) -> list[str]:
        return [name for name in self._meta.fields or () if name in self.fields]

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        names = [name for name in self._editable() if name in cleaned]
        if self.instance.pk is None or not names:
            return cleaned
        if all(self._untouched(name) for name in names):
            # Nothing to write, whatever the row holds now: no query. A list save sends every
            # row of its page, and most come back as shown; each cost a locking read.
            self.edited = []
            return cleaned
        current = (
            Product.objects.select_for_update().filter(pk=self.instance.pk).values(*names).first()
        )
        if current is None:
            raise ValidationError("This product was deleted after the page was loaded.")
        self.edited = []
        for name in names:
            # The stored value as the field reads input (a name's outer spaces stripped), or a
            # row written outside the admin would never match what the page sent back.
            new, now = cleaned[name], self.fields[name].to_python(current[name])
            seen = self._seen(name, default=now)
            if _as_sent(new) in (_as_sent(seen), _as_sent(now)):
                continue
            if _as_sent(now) != _as_sent(seen):
                # Short: in the list it fills a narrow column.
                self.add_error(name, f"Changed to {now} by someone else. Save again to overwrite.")
                # The page shown with this error holds the value as it is now, so that saving
                # again is not refused the same way (Django sends back the posted one).
                data = QueryDict(mutable=True)
                data.update(self.data)
                data[self[name].html_initial_name] = str(now)
                self.data = data
            else:
                self.edited.append(name)
        return cleaned

    def _untouched(self, name: str) -> bool:
        """Whether the field holds the value the page showed (which it sent back)."""
        seen = self._seen(name, default=_NOT_SENT)
        return seen is not _NOT_SENT and _as_sent(self.cleaned_data[name]) == _as_sent(seen)

    def _seen(self, name: str, default: Any) -> Any:
        """The value the page showed, as the field reads it; `default` if it was not sent."""
        field = self.fields[name]
        raw = field.hidden_widget().value_from_datadict(
            self.data, self.files, self[name].html_initial_name
        )
        if raw is None:
            return default
        try:
            return field.to_python(raw)
        except ValidationError:
            return default


def _as_sent(value: Any) -> Any:
    """A value as a browser sends it back: a text box drops line breaks, and a hidden field
    sends them as CRLF. Names stored with line breaks (before they were refused) would otherwise
    read as changed by someone else on every save of the page."""
    return _LINE_BREAKS.sub("", value) if isinstance(value, str) else value


_LINE_BREAKS = re.compile(r"[\r\n]")
_NOT_SENT = object()


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
    form = ProductAdminForm

    def get_changelist_form(self, request: HttpRequest, **kwargs: Any) -> type[forms.ModelForm]:
        return super().get_changelist_form(request, form=ProductAdminForm, **kwargs)

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return PostedOrderChangeList

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if request.method != "POST" or not self.has_change_permission(request):
            # Django refuses a list save without the permission: no rows locked, nothing said.
            return super().changelist_view(request, extra_context)
        # Django validates list_editable's forms before its own transaction: one around both
        # keeps the rows ProductAdminForm locked until they are saved.
        with transaction.atomic(using=router.db_for_write(self.model)):
            posted = posted_ids(request)
            if posted:
                # Every posted row at once, in id order: the forms lock theirs one by one in the
                # page's order, and two editors saving one page under different sort orders
                # would otherwise each hold a row the other waits for.
                rows = Product.objects.select_for_update().filter(pk__in=posted).order_by("pk")
                found = set(rows.values_list("pk", flat=True))
                gone = [pk for pk in posted if pk not in found]
                if gone:
                    # Django would pair the forms with the rows left by position and answer
                    # "Please correct the errors below" with no error shown: save the others.
                    # Read-only like Django's own (the stubs type it as such).
                    request.POST = _without_forms(request.POST, posted, gone)  # type: ignore[assignment]
                    names = ", ".join(str(pk) for pk in gone)
                    # Not "deleted by someone else": an id no product ever had (a script's
                    # post, a page of another database) reads the same, and so does a product
                    # the editor deleted in another tab.
                    messages.warning(
                        request,
                        f"Product {names} does not exist (deleted after this list was loaded, "
                        "or never there); its row was left out of the save.",
                    )
            return super().changelist_view(request, extra_context)

    def save_model(
        self, request: HttpRequest, obj: Product, form: ProductAdminForm, change: bool
    ) -> None:
        if change:
            # No field edited: no write, no version bump, no invalidation.
            obj.save(update_fields=form.changed_data)
        else:
            super().save_model(request, obj, form, change)

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


def posted_ids(request: HttpRequest) -> list[int] | None:
    """The product ids of a list_editable save, in the order of its forms; None if malformed."""
    if request.method != "POST" or "_save" not in request.POST:
        return None
    try:
        total = int(request.POST.get("form-TOTAL_FORMS", ""))
        return [int(request.POST[f"form-{n}-id"]) for n in range(min(total, 1000))]
    except (KeyError, ValueError):
        return None


def _without_forms(post: QueryDict, posted: list[int], gone: list[int]) -> QueryDict:
    """A list_editable POST without the forms of the `gone` products, the others renumbered."""
    data = post.copy()
    kept = []
    for n, pk in enumerate(posted):
        fields = {}
        for head in ("form-", "initial-form-"):
            prefix = f"{head}{n}-"
            for key in [key for key in data if key.startswith(prefix)]:
                fields[head, key.removeprefix(prefix)] = data.getlist(key)
                del data[key]
        if pk not in gone:
            kept.append(fields)
    for n, fields in enumerate(kept):
        for (head, rest), values in fields.items():
            data.setlist(f"{head}{n}-{rest}", values)
    data["form-TOTAL_FORMS"] = data["form-INITIAL_FORMS"] = str(len(kept))
    data._mutable = False
    return data


class PostedOrderChangeList(ChangeList):
    """The list shown again with a save's errors has the posted rows, in the posted order.

    Django pairs the list's rows with the posted forms by position. A save refused for a
    concurrent change is refused because a price or stock level changed, which can move a row
    in a list sorted by that column or drop it from a stock filter: the errors and the values
    would then be shown on other products' rows, and saving again would fail.
    """

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        posted = posted_ids(request)
        if not posted:
            return
        rows = self.root_queryset.in_bulk(posted)
        # A row deleted before the save locked the list was taken out of the POST by
        # changelist_view; the check only guards the pairing.
        if len(rows) == len(set(posted)):
            self.result_list = [rows[pk] for pk in posted]
