"""Token authentication that loads the user's permissions in the same query.

DRF's TokenAuthentication reads the token and user in one query; the model-permission check of
every write then costs ModelBackend two more (the user's and the groups' permissions). Here the
token query also returns both permission sets, and they are handed to the user object in the
caches ModelBackend reads first, so a token write is authenticated and authorized in one query.
The sets are read per request, as ModelBackend would: a revoked permission takes effect on the
next request.

The query is written in SQL (table and column names from the models' metadata): built with the
ORM's subquery expressions it cost more to compile than the two queries it replaces.
"""

from __future__ import annotations

from functools import cache

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.models import ManyToManyField, Model
from rest_framework import authentication, exceptions
from rest_framework.authtoken.models import Token


def _m2m(model: type[Model], name: str) -> ManyToManyField:
    field = model._meta.get_field(name)
    assert isinstance(field, ManyToManyField)
    return field


@cache
def _sql() -> str:
    user_model = get_user_model()
    user, user_pk = user_model._meta.db_table, user_model._meta.pk.column
    user_perms = _m2m(user_model, "user_permissions")
    user_groups = _m2m(user_model, "groups")
    group_perms = _m2m(Group, "permissions")
    # Only table and column names from the models are interpolated; the token is a parameter.
    names = (
        f"SELECT ct.app_label || '.' || p.codename FROM {Permission._meta.db_table} p "  # noqa: S608
        f"JOIN {ContentType._meta.db_table} ct ON ct.id = p.content_type_id"
    )
    own = (
        f"{names} JOIN {user_perms.m2m_db_table()} up ON up.{user_perms.m2m_reverse_name()} = p.id"
        f" WHERE up.{user_perms.m2m_column_name()} = u.{user_pk}"
    )
    through_groups = (
        f"{names} JOIN {group_perms.m2m_db_table()} gp"
        f" ON gp.{group_perms.m2m_reverse_name()} = p.id"
        f" JOIN {user_groups.m2m_db_table()} ug"
        f" ON ug.{user_groups.m2m_reverse_name()} = gp.{group_perms.m2m_column_name()}"
        f" WHERE ug.{user_groups.m2m_column_name()} = u.{user_pk}"
    )
    columns = ", ".join(f"u.{field.column}" for field in user_model._meta.concrete_fields)
    return (
        f"SELECT {columns}, t.created,"  # noqa: S608
        f" ARRAY({own}), ARRAY({through_groups})"
        f" FROM {Token._meta.db_table} t JOIN {user} u ON u.{user_pk} = t.user_id"
        " WHERE t.key = %s"
    )


class TokenAuthentication(authentication.TokenAuthentication):
    def authenticate_credentials(self, key: str) -> tuple[AbstractBaseUser, Token]:
        with connection.cursor() as cursor:
            cursor.execute(_sql(), [key])
            row = cursor.fetchone()
        if row is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        user_model = get_user_model()
        fields = [field.attname for field in user_model._meta.concrete_fields]
        *values, created, user_perms, group_perms = row
        user = user_model.from_db(connection.alias, fields, values)
        if not user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        # The names and format django.contrib.auth.backends.ModelBackend caches them under. A
        # superuser has every permission: has_perm() says so without these, and
        # get_all_permissions() must list all of them, so leave it to ModelBackend.
        if not getattr(user, "is_superuser", False):
            user._user_perm_cache = set(user_perms)  # type: ignore[attr-defined]
            user._group_perm_cache = set(group_perms)  # type: ignore[attr-defined]
        return user, Token(key=key, user=user, created=created)
