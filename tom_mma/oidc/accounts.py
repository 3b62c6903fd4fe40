"""The TOM user behind an OIDC login: found by (issuer, subject), created once, brought up to date each time.

One function, :func:`login_user`, does it all in one transaction after the backend has verified the ID
token: it finds the :class:`~tom_mma.models.OIDCIdentity` (never an email or a username: those change
hands), creates the user at a first login, updates username, names and email from the configured claims,
makes the managed groups follow the group claim, and gives or takes back staff and superuser rights by the
allow-lists only.
"""

from __future__ import annotations

import hashlib
import logging
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group
from django.db import IntegrityError, transaction
from django.utils import timezone

from ..conf import mma_settings
from ..models import OIDCIdentity
from .errors import LoginError
from .groups import GroupMapError, claim_values, compile_group_map, mapped_groups

__all__ = ["login_user", "sanitise_username"]

logger = logging.getLogger(__name__)

# Django's username validator allows [\w.@+-]; we keep the ASCII subset so that no two usernames
# look alike (confusable Unicode letters) and every username is easy to type.
_UNSAFE = re.compile(r"[^A-Za-z0-9_.@+-]+")
_MAX_LENGTH = 150  # django.contrib.auth.models.User.username


def sanitise_username(value: Any) -> str:
    """A username Django accepts, made from a claim value; ``""`` if nothing usable is left.

    Accents are dropped, other characters outside ``A-Z a-z 0-9 _ . @ + -`` become ``_``,
    leading and trailing ``_ . -`` are stripped and the result is cut to 150 characters.

    Parameters
    ----------
    value : Any
        A claim value; anything but a non-empty string gives ``""``.

    Returns
    -------
    str

    Examples
    --------
    >>> sanitise_username("José Pérez")
    'Jose_Perez'
    >>> sanitise_username("../admin; drop")
    'admin_drop'
    >>> sanitise_username(["alice"])
    ''
    """
    if not isinstance(value, str):
        return ""
    ascii_value = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode("ascii")
    return _UNSAFE.sub("_", ascii_value).strip("_.-")[:_MAX_LENGTH]


def _truthy(value: Any) -> bool:
    # providers send email_verified as a JSON boolean, a few as the string "true"
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _text(claims: Mapping[str, Any], key: str, limit: int = 150) -> str:
    value = claims.get(key)
    return value.strip()[:limit] if isinstance(value, str) else ""


def login_user(issuer: str, claims: Mapping[str, Any], create: bool = True) -> AbstractBaseUser:
    """The TOM user for these verified claims, created or updated; or a :class:`LoginError` saying why not.

    Parameters
    ----------
    issuer : str
        The ID token's ``iss`` (already checked against ``TOM_MMA['OIDC_ISSUER']``).
    claims : Mapping
        The ID token's claims overlaid with the userinfo claims (same ``sub``).
    create : bool
        Whether a first login creates a user (mozilla-django-oidc's ``OIDC_CREATE_USER``).

    Returns
    -------
    AbstractBaseUser
        An active user allowed to log in through OIDC.

    Raises
    ------
    LoginError
        ``no_mapped_group``, ``no_account`` or ``misconfigured``: nothing is changed. ``inactive`` or
        ``staff_refused``: the user is brought up to date (a new one kept for its approval), not logged in.
    """
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject or len(subject) > 255:
        raise LoginError("invalid_token")
    try:
        rules = compile_group_map(mma_settings.OIDC_GROUP_MAP)
    except GroupMapError as exc:
        # tom_mma.E066 says so at start-up; a server started without the checks lands here
        logger.error("OIDC login refused: %s", exc)
        raise LoginError("misconfigured") from None
    wanted = mapped_groups(rules, claim_values(claims, mma_settings.OIDC_GROUPS_CLAIM))
    if not wanted and mma_settings.OIDC_UNMAPPED_USERS == "refuse":
        logger.info("OIDC login refused: the group claim maps to no TOM group (OIDC_UNMAPPED_USERS = 'refuse')")
        raise LoginError("no_mapped_group")
    for attempt in (1, 2):
        try:
            with transaction.atomic():
                user, identity, _ = _sync(issuer, subject, claims, create, {r.group for r in rules}, wanted)
            break
        except IntegrityError:
            # the same first login in two tabs at once: the other one created the identity; use it
            if attempt == 2:
                raise
    # refused after the transaction: a new user waiting for approval is kept for the administrator
    if not user.is_active:
        logger.info("OIDC login refused: user %s is inactive", user.get_username())
        raise LoginError("inactive")
    if (user.is_staff or user.is_superuser) and not mma_settings.OIDC_ALLOW_STAFF_LOGIN:
        # the TOM's own second factor is not asked for on this path: staff use the password login
        logger.info("OIDC login refused: user %s is staff and OIDC_ALLOW_STAFF_LOGIN is off", user.get_username())
        raise LoginError("staff_refused")
    OIDCIdentity.objects.filter(pk=identity.pk).update(last_login=timezone.now())
    return user


def _sync(issuer, subject, claims, create, managed, wanted):
    identity = (
        OIDCIdentity.objects.select_for_update().select_related("user").filter(issuer=issuer, subject=subject).first()
    )
    created = identity is None
    if created:
        if not create:
            logger.info("OIDC login refused: no TOM user has this identity and OIDC_CREATE_USER is off")
            raise LoginError("no_account")
        user = _create_user(claims)
        identity = OIDCIdentity.objects.create(user=user, issuer=issuer, subject=subject)
    user = identity.user
    _update_profile(user, claims)
    _apply_allow_lists(user, identity, subject)
    identity.save()
    added, removed = _sync_groups(user, managed, wanted)
    logger.info(
        "OIDC login of user %s%s: %d managed groups added, %d removed",
        user.get_username(),
        " (new)" if created else "",
        added,
        removed,
    )
    return user, identity, created


def _create_user(claims: Mapping[str, Any]) -> AbstractBaseUser:
    user_model = get_user_model()
    user = user_model.objects.create_user(
        _free_username(_desired_username(claims)),
        is_staff=False,
        is_superuser=False,
        is_active=getattr(settings, "TOM_REGISTRATION_STRATEGY", None) != "approval_required",
    )  # no password: the user logs in through the provider only (unusable password)
    groups = [Group.objects.get_or_create(name=name)[0] for name in mma_settings.OIDC_NEW_USER_GROUPS]
    if groups:
        user.groups.add(*groups)
    logger.info(
        "OIDC login created user %s (%s)", user.get_username(), "active" if user.is_active else "pending approval"
    )
    return user


def _desired_username(claims: Mapping[str, Any]) -> str:
    email = _text(claims, mma_settings.OIDC_EMAIL_CLAIM, 254)
    candidates = (claims.get(mma_settings.OIDC_USERNAME_CLAIM), email.partition("@")[0], claims.get("sub"))
    base = next((name for name in map(sanitise_username, candidates) if name), "")
    # nothing usable (e.g. a non-ASCII sub): a stable name that reveals nothing of the claims
    return base or "oidc-" + hashlib.sha256(str(claims.get("sub", "")).encode()).hexdigest()[:12]


def _taken(name: str, exclude_pk: Any = None) -> bool:
    user_model = get_user_model()
    others = user_model.objects.filter(**{f"{user_model.USERNAME_FIELD}__iexact": name})
    if exclude_pk is not None:
        others = others.exclude(pk=exclude_pk)
    return others.exists()


def _free_username(base: str) -> str:
    """``base``, or ``base-2``, ``base-3``...: the first not taken (compared case-insensitively)."""
    if not _taken(base):
        return base
    for n in range(2, 1000):
        suffix = f"-{n}"
        name = base[: _MAX_LENGTH - len(suffix)] + suffix
        if not _taken(name):
            return name
    # a thousand namesakes: give up on readability rather than loop
    return base[: _MAX_LENGTH - 13] + "-" + hashlib.sha256(base.encode()).hexdigest()[:12]


def _update_profile(user: AbstractBaseUser, claims: Mapping[str, Any]) -> None:
    """Username, names and (verified) email from the claims; a username taken by someone else is kept as is."""
    changed = []
    # a rename at the provider follows only from the username claim itself (not from the fallbacks of a first
    # login); "alice-2" stays while "alice" belongs to somebody else
    desired = sanitise_username(claims.get(mma_settings.OIDC_USERNAME_CLAIM))
    field = user.USERNAME_FIELD
    current = getattr(user, field)
    if desired and desired.lower() != current.lower() and not current.lower().startswith(desired.lower() + "-"):
        if not _taken(desired, exclude_pk=user.pk):
            setattr(user, field, desired)
            changed.append(field)
    for attribute, key in (
        ("first_name", mma_settings.OIDC_FIRST_NAME_CLAIM),
        ("last_name", mma_settings.OIDC_LAST_NAME_CLAIM),
    ):
        value = _text(claims, key)
        if value and getattr(user, attribute, value) != value:
            setattr(user, attribute, value)
            changed.append(attribute)
    email = _text(claims, mma_settings.OIDC_EMAIL_CLAIM, 254)
    if email and (_truthy(claims.get("email_verified")) or not mma_settings.OIDC_REQUIRE_VERIFIED_EMAIL):
        email = get_user_model().objects.normalize_email(email)
        if getattr(user, "email", email) != email:
            user.email = email
            changed.append("email")
    if changed:
        user.save(update_fields=changed)


def _apply_allow_lists(user: AbstractBaseUser, identity: OIDCIdentity, subject: str) -> None:
    """Staff and superuser rights from the allow-lists only; take back only what they gave."""
    changed = []
    superusers = _subjects(mma_settings.OIDC_SUPERUSER_SUBJECTS)
    for right, flag, subjects in (
        ("is_superuser", "superuser_granted", superusers),
        ("is_staff", "staff_granted", superusers | _subjects(mma_settings.OIDC_STAFF_SUBJECTS)),
    ):
        listed = subject in subjects
        if listed and not getattr(user, right):
            setattr(user, right, True)
            setattr(identity, flag, True)
            changed.append(right)
            logger.warning("OIDC login gave user %s %s (allow-list)", user.get_username(), right)
        elif not listed and getattr(identity, flag):
            setattr(identity, flag, False)
            if getattr(user, right):
                setattr(user, right, False)
                changed.append(right)
                logger.warning("OIDC login took %s back from user %s (left the allow-list)", right, user.get_username())
    if changed:
        user.save(update_fields=changed)


def _subjects(value: Any) -> set[str]:
    # only a list counts (tom_mma.E063): "in" on a string would match any part of it
    return {item for item in value if isinstance(item, str)} if isinstance(value, list | tuple) else set()


def _sync_groups(user: AbstractBaseUser, managed: set[str], wanted: set[str]) -> tuple[int, int]:
    """Put the user in the managed groups the claim maps to, out of the other managed groups."""
    current = set(user.groups.filter(name__in=managed).values_list("name", flat=True))
    to_add = sorted(wanted - current)
    to_remove = current - wanted
    if to_add:
        user.groups.add(*[Group.objects.get_or_create(name=name)[0] for name in to_add])
    if to_remove:
        user.groups.remove(*Group.objects.filter(name__in=to_remove))
    return len(to_add), len(to_remove)
