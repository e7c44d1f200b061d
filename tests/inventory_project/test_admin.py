"""The project's admin: its site (inventory_project/admin_site.py) and Periodic tasks."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib import admin, messages
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command
from django.db import connection
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask
from kombu.exceptions import OperationalError as KombuOperationalError
from rest_framework.authtoken.models import Token

from inventory_project import tasks
from inventory_project.admin_site import NUL_REFUSED, AdminSite, GuardedAdmin
from products.models import Product

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    get_user_model().objects.create_superuser("boss", "", "pw")
    client.login(username="boss", password="pw")
    client.raise_request_exception = False  # a 500 is an answer to look at here
    return client


@pytest.mark.parametrize(
    "url",
    [
        # A filter on a text column, in our admins and in Django's and django-celery-beat's.
        "/admin/products/product/?name=%00",
        "/admin/ads_sync/syncday/?customer_id=%00",
        "/admin/auth/user/?username=%00",
        "/admin/django_celery_beat/periodictask/?name=%00",
        # An object id that is text (AdsAccount's customer id).
        "/admin/ads_sync/adsaccount/%00/change/",
        # In a parameter's name.
        "/admin/products/product/?%00=1",
    ],
)
def test_an_address_with_a_nul_character_is_a_400_that_says_so(admin_client, url) -> None:
    response = admin_client.get(url)

    assert response.status_code == 400
    assert response.content.decode() == NUL_REFUSED


def test_the_nul_check_leaves_other_addresses_alone(admin_client) -> None:
    assert admin_client.get("/admin/products/product/?name=x").status_code == 200
    assert admin_client.get("/admin/ads_sync/adsaccount/x/change/").status_code == 302  # gone


RUNS = "/admin/ads_sync/syncrun/"


@pytest.mark.parametrize(
    ("path", "query"),
    [
        # OverflowError building the first date
        (RUNS, "started_at__year=99999999999999999999"),
        # ValueError building the end of the year, the month or the day
        (RUNS, "started_at__year=9999"),
        (RUNS, "started_at__year=9999&started_at__month=12"),
        (
            "/admin/ads_sync/syncrun/",
            "started_at__year=9999&started_at__month=12&started_at__day=31",
        ),
        # A date column, not a timestamp
        ("/admin/ads_sync/syncday/", "date__year=9999&date__month=12"),
    ],
)
def test_a_date_hierarchy_year_without_an_end_is_a_bad_lookup_not_a_500(
    admin_client, path, query
) -> None:
    response = admin_client.get(f"{path}?{query}")

    # As Django answers any filter value it cannot use: back to the list with ?e=1.
    assert response.status_code == 302
    assert response["Location"] == f"{path}?e=1"


@pytest.mark.parametrize(
    "url",
    [
        # Lookups Django lets through on a model's own fields, with values the query cannot take
        "/admin/products/product/?name__regex=(",
        "/admin/products/product/?stock_level__range=1",
        "/admin/products/product/?stock_level__range=123",
        "/admin/products/product/?name__unaccent=x",  # no such extension
        "/admin/products/product/?stock_level__in=99999999999999999999",
        "/admin/products/product/?created_at__year=10000",
        "/admin/products/product/?created_at__iso_year=0",
        # Django's and django-celery-beat's admins, through the same site
        "/admin/auth/user/?date_joined__year=10000",
        "/admin/django_celery_beat/periodictask/?last_run_at__year=99999999999999999999",
        "/admin/ads_sync/syncday/?fetched_at__year=-1",
    ],
)
def test_a_filter_the_database_cannot_run_is_a_bad_lookup_not_a_500(
    admin_client, url, caplog
) -> None:
    response = admin_client.get(url)

    assert response.status_code == 302
    assert response["Location"] == url.split("?")[0] + "?e=1"
    assert "a filter the database cannot run" in caplog.text  # a warning, with the error


def test_a_missing_table_is_still_a_server_error_not_a_bad_lookup(admin_client) -> None:
    """Only what a filter's values cause is a bad lookup: this ProgrammingError is not one."""
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE ads_sync_campaigndaymetric CASCADE")  # rolled back after

    assert admin_client.get("/admin/ads_sync/campaigndaymetric/").status_code == 500


def test_a_list_save_sent_to_a_filter_the_database_cannot_run_saves_nothing(
    admin_client,
) -> None:
    """The count failed inside the save's transaction: it runs in a savepoint of its own."""
    product = Product.objects.create(name="Lamp", price=Decimal("5.00"), stock_level=3)
    body = {
        "form-TOTAL_FORMS": "1",
        "form-INITIAL_FORMS": "1",
        "form-0-id": str(product.pk),
        "form-0-price": "6.00",
        "form-0-stock_level": "3",
        "_save": "Save",
    }
    response = admin_client.post("/admin/products/product/?name__regex=(", body)

    assert (response.status_code, response["Location"]) == (302, "/admin/products/product/?e=1")
    product.refresh_from_db()
    assert (product.price, product.version) == (Decimal("5.00"), 1)


@pytest.mark.parametrize("path", ["/admin/products/product/", "/admin/auth/user/"])
@pytest.mark.parametrize("value", ["abc", "", "1.5", "\x00"])
def test_an_action_on_something_that_is_not_an_id_is_a_400(admin_client, path, value) -> None:
    Product.objects.create(name="Lamp", price=Decimal("5.00"), stock_level=3)
    body = {"action": "delete_selected", "_selected_action": [value], "index": "0"}
    response = admin_client.post(path, body)

    assert response.status_code == 400
    assert "Not an id of this list" in response.content.decode()
    assert Product.objects.count() == 1


def test_a_form_that_is_not_utf8_is_a_400_naming_the_field(admin_client) -> None:
    """Django decoded it with replacement characters: the name was stored as U+FFFD U+FFFD."""
    response = admin_client.post(
        "/admin/products/product/add/",
        b"name=%FF%FEab&price=1.00&stock_level=1",
        content_type="application/x-www-form-urlencoded",
    )

    assert response.status_code == 400
    assert response.content.decode() == "Not valid UTF-8: name. Forms are sent as UTF-8.\n"
    assert not Product.objects.exists()


def test_a_date_hierarchy_year_that_has_an_end_still_filters(admin_client) -> None:
    response = admin_client.get("/admin/ads_sync/syncday/?date__year=9998&date__month=12")

    assert response.status_code == 200


def _run_tasks(client, *entries: PeriodicTask) -> str:
    """The admin's "run" action on `entries`: the messages it shows, after a 200."""
    response = client.post(
        "/admin/django_celery_beat/periodictask/",
        {"action": "run_tasks", "_selected_action": [entry.pk for entry in entries]},
        follow=True,
    )
    assert response.status_code == 200
    return " | ".join(str(m) for m in response.context["messages"])


def _hourly(name: str, task: str, **fields: str) -> PeriodicTask:
    every = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.HOURS)
    return PeriodicTask.objects.create(name=name, task=task, interval=every, **fields)


def test_running_a_periodic_task_while_the_broker_is_away_is_a_message_not_a_500(
    admin_client, monkeypatch
) -> None:
    client = admin_client
    call_command("ensure_periodic_tasks")
    entry = PeriodicTask.objects.get(task=tasks.clear_expired_sessions.name)

    def refused(*args: object, **kwargs: object) -> None:
        raise KombuOperationalError("[Errno 111] Connection refused")

    monkeypatch.setattr(tasks.clear_expired_sessions, "apply_async", refused)
    shown = _run_tasks(client, entry)

    assert "message broker could not be reached" in shown, shown


@pytest.mark.parametrize(
    ("args", "kwargs", "why"),
    [
        ("[]", "{}", "missing 1 required positional argument: 'token'"),
        ("5", "{}", "must be a JSON list"),
        ("[]", "[]", "must be a JSON list"),
        ('["t"]', '{"zzz": 1}', "unexpected keyword argument 'zzz'"),
        ("", "{}", "not JSON"),  # stored before the form refused it
    ],
)
def test_running_a_task_whose_stored_arguments_do_not_fit_is_a_message_not_a_500(
    admin_client, monkeypatch, args, kwargs, why
) -> None:
    fits = _hourly("fits", tasks.clear_expired_sessions.name)
    unfit = _hourly("unfit", tasks.heartbeat.name, args=args, kwargs=kwargs)
    sent: list[str] = []
    for task in (tasks.clear_expired_sessions, tasks.heartbeat):
        monkeypatch.setattr(task, "apply_async", lambda *a, name=task.name, **k: sent.append(name))

    shown = _run_tasks(admin_client, fits, unfit)

    assert "No task was sent" in shown
    assert "unfit: " in shown
    assert why in shown, shown
    assert sent == []


@pytest.mark.parametrize(
    ("args", "said"),
    [
        ("[]", 'task "ads_sync.no_such_task" not found'),  # django-celery-beat's own message
        # Stored before the form refused it: upstream read it as JSON and answered a 500.
        ("", "unknown: the arguments are not JSON"),
    ],
)
def test_running_a_periodic_task_whose_task_is_not_registered_is_a_message_not_a_500(
    admin_client, monkeypatch, args, said
) -> None:
    """A task renamed or removed in the code, its periodic task left behind: nothing of the
    selection is sent, the one that fits included."""
    fits = _hourly("fits", tasks.clear_expired_sessions.name)
    unknown = _hourly("unknown", "ads_sync.no_such_task", args=args)
    sent: list[object] = []
    monkeypatch.setattr(tasks.clear_expired_sessions, "apply_async", lambda *a, **k: sent.append(a))

    shown = _run_tasks(admin_client, fits, unknown)

    assert said in shown, shown
    assert sent == []


def _staff_client(client, *codenames: str):
    user = get_user_model().objects.create_user("clerk", password="pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    client.login(username="clerk", password="pw")
    return client


@pytest.mark.parametrize("action", ["enable_tasks", "disable_tasks", "toggle_tasks", "run_tasks"])
def test_a_user_who_may_only_view_periodic_tasks_cannot_run_or_switch_them(
    client, monkeypatch, action
) -> None:
    call_command("ensure_periodic_tasks")
    entry = PeriodicTask.objects.get(task=tasks.clear_expired_sessions.name)
    enabled = action != "enable_tasks"  # so that every action would change it
    PeriodicTask.objects.filter(pk=entry.pk).update(enabled=enabled)
    sent: list[object] = []
    monkeypatch.setattr(tasks.clear_expired_sessions, "apply_async", lambda *a, **k: sent.append(a))
    viewer = _staff_client(client, "view_periodictask")

    page = viewer.get("/admin/django_celery_beat/periodictask/")
    response = viewer.post(
        "/admin/django_celery_beat/periodictask/",
        {"action": action, "_selected_action": [entry.pk]},
        follow=True,
    )

    assert page.status_code == 200
    assert f'value="{action}"' not in page.content.decode()
    assert response.status_code == 200
    assert [str(m) for m in response.context["messages"]] == []
    entry.refresh_from_db()
    assert entry.enabled is enabled
    assert sent == []


@pytest.mark.parametrize(
    ("action", "before", "after"),
    [
        ("enable_tasks", False, True),
        ("disable_tasks", True, False),
        ("toggle_tasks", True, False),
        ("toggle_tasks", False, True),
    ],
)
def test_a_user_who_may_change_periodic_tasks_still_switches_them(
    client, action, before, after
) -> None:
    call_command("ensure_periodic_tasks")
    entry = PeriodicTask.objects.get(task=tasks.clear_expired_sessions.name)
    PeriodicTask.objects.filter(pk=entry.pk).update(enabled=before)
    changer = _staff_client(client, "view_periodictask", "change_periodictask")

    changer.post(
        "/admin/django_celery_beat/periodictask/",
        {"action": action, "_selected_action": [entry.pk]},
    )

    entry.refresh_from_db()
    assert entry.enabled is after


TASK_ADD = "/admin/django_celery_beat/periodictask/add/"


def _task_form(**values: str) -> dict[str, str]:
    every = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.HOURS)
    return {
        "name": "n",
        "task": tasks.heartbeat.name,
        "interval": str(every.pk),
        "args": '["t"]',
        "kwargs": "{}",
        "headers": "{}",
        "enabled": "on",
        **values,
    }


@pytest.mark.parametrize(
    ("values", "field", "message"),
    [
        ({"args": "5"}, "args", "Must be a JSON list."),
        ({"args": ""}, "args", "Unable to parse JSON"),  # the base refused it too
        ({"kwargs": ""}, "kwargs", "Unable to parse JSON"),
        ({"headers": ""}, "headers", "Unable to parse JSON"),  # a NOT NULL error (a 500)
        ({"args": "null"}, "args", "Must be a JSON list."),
        ({"kwargs": "[]"}, "kwargs", "Must be a JSON object."),
        ({"headers": "x"}, "headers", "Unable to parse JSON"),
        ({"headers": "[1]"}, "headers", "Must be a JSON object."),
        ({"args": "[" * 100_000}, "args", "nested too deeply"),
        ({"kwargs": '{"a":' * 5_000}, "kwargs", "nested too deeply"),
        ({"task": "a" * 300}, "task", "at most 200 characters"),
        ({"task": "a\x00"}, "task", "Null characters are not allowed."),
        ({"regtask": "\x00", "task": ""}, "regtask", "Null characters are not allowed."),
    ],
)
def test_a_periodic_task_whose_arguments_could_never_be_sent_is_refused_on_the_field(
    admin_client, values, field, message
) -> None:
    """They were stored (args 5, headers x), or a 500 (deep JSON, a refused task name)."""
    response = admin_client.post(TASK_ADD, _task_form(**values))

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert message in " ".join(errors.get(field, [])), errors
    assert not PeriodicTask.objects.filter(name="n").exists()


def test_a_periodic_task_with_fitting_arguments_is_still_saved(admin_client) -> None:
    response = admin_client.post(TASK_ADD, _task_form())

    assert response.status_code == 302
    assert PeriodicTask.objects.get(name="n").args == '["t"]'


def test_a_periodic_task_picked_from_the_registered_tasks_is_saved_with_that_task(
    admin_client,
) -> None:
    """The form's own clean still runs when no field refused the task: it fills in the task."""
    response = admin_client.post(TASK_ADD, _task_form(task="", regtask=tasks.heartbeat.name))

    assert response.status_code == 302
    assert PeriodicTask.objects.get(name="n").task == tasks.heartbeat.name


@pytest.mark.parametrize("minute", ["-1", "1,,2"])
def test_a_crontab_celery_cannot_parse_shows_the_form_errors_not_a_500(admin_client, minute):
    body = {
        "minute": minute,
        "hour": "*",
        "day_of_week": "*",
        "day_of_month": "*",
        "month_of_year": "*",
        "timezone": "UTC",
    }
    response = admin_client.post("/admin/django_celery_beat/crontabschedule/add/", body)

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["minute"]
    assert "(not a valid schedule)" in response.content.decode()


TOKENS = "/admin/authtoken/tokenproxy/"


def test_the_token_list_and_pages_never_show_a_key(client) -> None:
    owner = get_user_model().objects.create_user("owner", password="pw")
    key = Token.objects.create(user=owner).key
    LogEntry.objects.all().delete()
    viewer = _staff_client(client, "view_tokenproxy")

    listed = viewer.get(TOKENS)
    shown = viewer.get(f"{TOKENS}{owner.pk}/change/")
    found = viewer.get(TOKENS, {"q": key})

    assert listed.status_code == shown.status_code == found.status_code == 200
    assert f"{key[:6]}..." in listed.content.decode()
    for page in (listed, shown):
        assert key not in page.content.decode()
    assert "0 results" in found.content.decode()  # keys cannot be searched for
    assert "token of owner" in shown.content.decode()


def test_a_new_token_s_key_is_shown_once_to_whoever_creates_it(admin_client) -> None:
    owner = get_user_model().objects.create_user("owner", password="pw")

    response = admin_client.post(f"{TOKENS}add/", {"user": owner.pk}, follow=True)

    key = Token.objects.get(user=owner).key
    said = [str(m) for m in response.context["messages"]]
    assert sum(key in m for m in said) == 1, said
    assert "Copy it now" in " ".join(said)
    assert key not in admin_client.get(TOKENS).content.decode()
    assert [entry.object_repr for entry in LogEntry.objects.all()] == ["token of owner"]


@pytest.mark.parametrize(
    ("page", "codenames"),
    [
        (f"{TOKENS}?key__startswith=", ["view_tokenproxy"]),
        (f"{TOKENS}?pk__startswith=", ["view_tokenproxy"]),
        ("/admin/auth/user/?auth_token__key__startswith=", ["view_user"]),
        ("/admin/auth/user/?auth_token__pk__startswith=", ["view_user"]),
        ("/admin/auth/user/?auth_token__startswith=", ["view_user"]),
        ("/admin/auth/user/?auth_token=", ["view_user"]),
        ("/admin/auth/user/?password__startswith=", ["view_user"]),
        (f"{TOKENS}?user__password__startswith=", ["view_tokenproxy"]),
    ],
)
def test_no_list_can_be_filtered_by_a_key_or_a_password(client, page, codenames) -> None:
    owner = get_user_model().objects.create_user("owner", password="pw")
    key = Token.objects.create(user=owner).key
    viewer = _staff_client(client, *codenames)
    value = owner.password[:8] if "password" in page else key[:8]

    response = viewer.get(page + value)

    # Not "1 result" for the right prefix and "0 results" for a wrong one.
    assert response.status_code == 400
    assert "result" not in response.content.decode()


@pytest.mark.parametrize("query", ["_popup=1", "_to_field=key", "_popup=1&_to_field=key"])
def test_the_token_list_is_no_popup_whose_links_carry_keys(client, query) -> None:
    owner = get_user_model().objects.create_user("owner", password="pw")
    key = Token.objects.create(user=owner).key
    viewer = _staff_client(client, "view_tokenproxy")

    response = viewer.get(f"{TOKENS}?{query}")

    assert response.status_code == 400
    assert key not in response.content.decode()


def test_lists_are_still_filtered_by_other_fields_of_a_token(admin_client) -> None:
    owner = get_user_model().objects.create_user("owner", password="pw")
    Token.objects.create(user=owner)

    by_user = admin_client.get(f"{TOKENS}?user={owner.pk}")
    by_date = admin_client.get(f"{TOKENS}?created__gte=2000-01-01T00:00:00%2B00:00")
    by_another = admin_client.get(f"{TOKENS}?user={owner.pk + 1}")

    assert by_user.status_code == by_date.status_code == by_another.status_code == 200
    assert "owner" in by_user.content.decode()
    assert "owner" in by_date.content.decode()
    assert "owner" not in by_another.content.decode()


def test_deleting_a_user_does_not_show_their_token_s_key(admin_client) -> None:
    owner = get_user_model().objects.create_user("owner", password="pw")
    key = Token.objects.create(user=owner).key

    page = admin_client.get(f"/admin/auth/user/{owner.pk}/delete/")
    selected = admin_client.post(
        "/admin/auth/user/", {"action": "delete_selected", "_selected_action": [owner.pk]}
    )

    assert page.status_code == selected.status_code == 200
    for response in (page, selected):
        assert key not in response.content.decode()
        assert "token of owner" in response.content.decode()


def _token_of(username: str, *, superuser: bool = False, codenames: tuple[str, ...] = ()) -> Token:
    users = get_user_model().objects
    make = users.create_superuser if superuser else users.create_user
    user = make(username, password="pw")
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    return Token.objects.create(user=user)


@pytest.mark.parametrize(
    "popup", ["_popup=1", "_to_field=key", ""], ids=["popup", "to-field", "no"]
)
def test_saving_a_token_s_page_neither_answers_its_key_nor_moves_it(client, popup) -> None:
    """Django's answer to a popup's save hands the opener the primary key: the token's key,
    whole, to anyone who may change tokens; and the save gave the token to another user."""
    token = _token_of("owner")
    other = get_user_model().objects.create_user("other")
    editor = _staff_client(client, "view_tokenproxy", "change_tokenproxy")
    body = f"user={other.pk}&_save=Save" + (f"&{popup}" if popup else "")

    response = editor.post(
        f"{TOKENS}{token.user.pk}/change/", body, content_type="application/x-www-form-urlencoded"
    )

    assert token.key not in response.content.decode()
    assert response.status_code == (400 if popup else 403)
    assert Token.objects.get(key=token.key).user == token.user
    assert not Token.objects.filter(user=other).exists()


def test_adding_a_token_in_a_popup_is_refused(admin_client) -> None:
    owner = get_user_model().objects.create_user("owner")

    response = admin_client.post(f"{TOKENS}add/?_popup=1", {"user": owner.pk, "_popup": "1"})

    assert response.status_code == 400
    assert not Token.objects.filter(user=owner).exists()


@pytest.mark.parametrize("target", ["superuser", "more rights"])
def test_a_user_who_is_not_a_superuser_cannot_add_a_token_for_someone_above_them(
    client, target
) -> None:
    """The add form offered every user, and its message showed the new key: a token for a
    superuser works for everything."""
    if target == "superuser":
        above = get_user_model().objects.create_superuser("root", "", "pw")
    else:
        above = get_user_model().objects.create_user("manager")
        above.user_permissions.set(Permission.objects.filter(codename="delete_product"))
    editor = _staff_client(client, "view_tokenproxy", "add_tokenproxy", "add_product")

    form = editor.get(f"{TOKENS}add/")
    response = editor.post(f"{TOKENS}add/", {"user": above.pk})

    assert f'value="{above.pk}"' not in form.content.decode()
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["user"]
    assert not Token.objects.filter(user=above).exists()


def test_the_save_itself_refuses_a_token_for_someone_above_the_editor(rf) -> None:
    """Not only the form's choices."""
    from django.contrib import admin as django_admin
    from django.core.exceptions import PermissionDenied
    from rest_framework.authtoken.models import TokenProxy

    root = get_user_model().objects.create_superuser("root", "", "pw")
    editor = get_user_model().objects.create_user("clerk", is_staff=True)
    request = rf.post(f"{TOKENS}add/")
    request.user = editor

    with pytest.raises(PermissionDenied):
        django_admin.site._registry[TokenProxy].save_model(
            request, TokenProxy(user=root), form=None, change=False
        )
    assert not Token.objects.filter(user=root).exists()


def test_a_token_is_still_replaced_by_deleting_it_and_adding_another(client) -> None:
    """For a user within the editor's rights; a superuser's token is not theirs to delete."""
    token = _token_of("owner", codenames=("view_product",))
    root_token = _token_of("root", superuser=True)
    editor = _staff_client(
        client, "view_tokenproxy", "add_tokenproxy", "delete_tokenproxy", "view_product"
    )

    deleted = editor.post(f"{TOKENS}{token.user.pk}/delete/", {"post": "yes"})
    added = editor.post(f"{TOKENS}add/", {"user": token.user.pk}, follow=True)
    refused = editor.post(f"{TOKENS}{root_token.user.pk}/delete/", {"post": "yes"})

    assert deleted.status_code == 302
    new = Token.objects.get(user=token.user)
    assert new.key != token.key
    assert any(new.key in str(m) for m in added.context["messages"])
    assert refused.status_code == 403
    assert Token.objects.filter(key=root_token.key).exists()


def test_a_superuser_still_adds_a_token_for_another_superuser(admin_client) -> None:
    root = get_user_model().objects.create_superuser("root", "", "pw")

    response = admin_client.post(f"{TOKENS}add/", {"user": root.pk})

    assert response.status_code == 302
    assert Token.objects.filter(user=root).exists()


# Registration: every admin class the site is given gets the checks above.


def test_a_model_registered_without_an_admin_class_gets_the_checks_too() -> None:
    site = AdminSite()

    site.register(Product)

    assert isinstance(site._registry[Product], GuardedAdmin)


def test_options_given_to_register_still_reach_the_admin() -> None:
    """As Django's own `register(Model, **options)` does: they make a subclass of the admin."""
    site = AdminSite()

    site.register(Product, list_per_page=7)

    assert isinstance(site._registry[Product], GuardedAdmin)
    assert site._registry[Product].list_per_page == 7


def test_an_admin_class_that_has_the_checks_already_is_registered_as_it_is() -> None:
    """A class taken from a site (for another site, or after an unregister) is not wrapped again:
    Python cannot put a class ahead of its own subclass."""
    guarded = type(admin.site._registry[Product])
    site = AdminSite()

    site.register(Product, guarded)

    assert type(site._registry[Product]) is guarded


def test_a_registered_admin_class_keeps_the_name_and_module_it_was_written_with() -> None:
    """What tracebacks and the system checks' messages name."""
    registered = type(admin.site._registry[Product])

    assert (registered.__module__, registered.__qualname__, registered.__name__) == (
        "products.admin",
        "ProductAdmin",
        "ProductAdmin",
    )


def test_every_request_gets_the_same_change_list_class(rf) -> None:
    """One class per admin, made once: not a new class on every request."""
    model_admin = admin.site._registry[Product]
    request = rf.get("/admin/products/product/")

    assert model_admin.get_changelist(request) is model_admin.get_changelist(request)


def test_running_a_task_whose_stored_arguments_are_nested_too_deeply_is_a_message_not_a_500(
    admin_client, monkeypatch
) -> None:
    """Stored before the form refused them: Python's parser raises RecursionError, not the
    ValueError of other arguments that are not JSON."""
    deep = _hourly("deep", tasks.heartbeat.name, args="[" * 100_000)
    sent: list[object] = []
    monkeypatch.setattr(tasks.heartbeat, "apply_async", lambda *a, **k: sent.append(a))

    shown = _run_tasks(admin_client, deep)

    assert "deep: the arguments are not JSON" in shown, shown
    assert sent == []


def test_every_task_whose_stored_arguments_do_not_fit_is_named(admin_client) -> None:
    first = _hourly("first", tasks.heartbeat.name, args="5")
    second = _hourly("second", tasks.heartbeat.name, kwargs="[]")

    shown = _run_tasks(admin_client, first, second)

    assert "first: " in shown, shown
    assert "second: " in shown, shown


def _run_tasks_messages(client, *entries: PeriodicTask) -> list:
    response = client.post(
        "/admin/django_celery_beat/periodictask/",
        {"action": "run_tasks", "_selected_action": [entry.pk for entry in entries]},
        follow=True,
    )
    return list(response.context["messages"])


@pytest.mark.parametrize("why", ["unfit", "broker away"])
def test_a_periodic_task_not_sent_is_said_as_an_error(admin_client, monkeypatch, why) -> None:
    """Not in the green of a success: nothing was sent."""
    if why == "unfit":
        entry = _hourly("unfit", tasks.heartbeat.name, args="5")
    else:
        entry = _hourly("fits", tasks.clear_expired_sessions.name)

        def refused(*args: object, **kwargs: object) -> None:
            raise KombuOperationalError("[Errno 111] Connection refused")

        monkeypatch.setattr(tasks.clear_expired_sessions, "apply_async", refused)

    said = _run_tasks_messages(admin_client, entry)

    assert [m.level for m in said] == [messages.ERROR], [str(m) for m in said]


def test_the_periodic_task_actions_keep_their_names(admin_client) -> None:
    _hourly("hourly", tasks.heartbeat.name)

    page = admin_client.get("/admin/django_celery_beat/periodictask/").content.decode()

    for name in (
        "Enable selected tasks",
        "Disable selected tasks",
        "Toggle activity of selected tasks",
        "Run selected tasks",
    ):
        assert name in page, name


def test_a_crontab_celery_can_parse_is_described(admin_client) -> None:
    CrontabSchedule.objects.create(minute="30", hour="3")

    page = admin_client.get("/admin/django_celery_beat/crontabschedule/").content.decode()

    assert "(not a valid schedule)" not in page
    assert "At 03:30" in page


def test_the_token_list_shows_each_token_s_user_and_creation(admin_client) -> None:
    Token.objects.create(user=get_user_model().objects.create_user("owner"))

    page = admin_client.get(TOKENS).content.decode()

    for column in ("column-key_start", "column-user", "column-created"):
        assert column in page, column


def test_a_new_token_s_key_is_said_as_a_warning_naming_its_user(admin_client) -> None:
    owner = get_user_model().objects.create_user("owner", password="pw")

    response = admin_client.post(f"{TOKENS}add/", {"user": owner.pk}, follow=True)

    key = Token.objects.get(user=owner).key
    (said,) = [m for m in response.context["messages"] if key in str(m)]
    assert said.level == messages.WARNING
    assert str(said).startswith("The key of owner's new token is")


def test_deleting_a_token_in_a_popup_is_refused(admin_client) -> None:
    token = _token_of("owner")
    url = f"{TOKENS}{token.user.pk}/delete/?_popup=1"

    page = admin_client.get(url)
    response = admin_client.post(url, {"post": "yes", "_popup": "1"})

    assert page.status_code == response.status_code == 400
    assert token.key not in response.content.decode()
    assert Token.objects.filter(key=token.key).exists()


def test_a_user_with_a_group_s_permission_the_editor_lacks_cannot_get_a_token_from_them(
    client,
) -> None:
    """A token acts with its user's groups' rights too."""
    managers = Group.objects.create(name="managers")
    managers.permissions.set(Permission.objects.filter(codename="delete_product"))
    above = get_user_model().objects.create_user("manager")
    above.groups.add(managers)
    editor = _staff_client(client, "view_tokenproxy", "add_tokenproxy")

    form = editor.get(f"{TOKENS}add/")
    response = editor.post(f"{TOKENS}add/", {"user": above.pk})

    assert f'value="{above.pk}"' not in form.content.decode()
    assert response.status_code == 200
    assert not Token.objects.filter(user=above).exists()


def test_an_editor_s_rights_from_a_group_count_as_theirs(client) -> None:
    managers = Group.objects.create(name="managers")
    managers.permissions.set(Permission.objects.filter(codename="delete_product"))
    owner = get_user_model().objects.create_user("owner")
    owner.user_permissions.set(Permission.objects.filter(codename="delete_product"))
    editor = _staff_client(client, "view_tokenproxy", "add_tokenproxy")
    get_user_model().objects.get(username="clerk").groups.add(managers)

    response = editor.post(f"{TOKENS}add/", {"user": owner.pk})

    assert response.status_code == 302
    assert Token.objects.filter(user=owner).exists()


@pytest.mark.parametrize("weak", ["1", "password1", "83105529"])
def test_the_admin_refuses_a_password_a_guesser_would_try_first(admin_client, weak) -> None:
    post = {"old_password": "pw", "new_password1": weak, "new_password2": weak}
    response = admin_client.post("/admin/password_change/", post)
    assert response.status_code == 200  # the form again, with the reason
    assert 'class="errorlist' in response.content.decode()
    assert get_user_model().objects.get(username="boss").check_password("pw")


def test_the_admin_still_takes_a_password_that_passes_the_checks(admin_client) -> None:
    post = {"old_password": "pw", "new_password1": "Tq8-vexing-lantern"}
    post["new_password2"] = post["new_password1"]
    assert admin_client.post("/admin/password_change/", post).status_code == 302
    assert get_user_model().objects.get(username="boss").check_password("Tq8-vexing-lantern")
