"""OIDC login for a TOM: a mozilla-django-oidc backend that grants no rights.

Enable it by adding ``"tom_mma.auth.OIDCBackend"`` to ``AUTHENTICATION_BACKENDS``, setting
mozilla-django-oidc's ``OIDC_*`` settings and including ``mozilla_django_oidc.urls`` under
``oidc/`` (see ``docs/oidc.md``; checks ``tom_mma.E060``-``E063`` say what is missing).

Security stance:

- A login never grants rights. New users are created with ``is_staff=False`` and
  ``is_superuser=False``; existing users keep exactly the rights an administrator gave them.
  Claims such as ``is_staff``, ``admin``, ``roles`` or ``groups`` are ignored.
- Users are matched on the ``email`` claim, case-insensitively, and by default only when the
  identity provider says the address is verified (``email_verified``): otherwise whoever controls
  an unverified address at the provider could log in as the TOM user who owns it.
- A new user joins the groups of ``TOM_MMA['OIDC_NEW_USER_GROUPS']`` (default ``["Public"]``,
  the group tomtoolkit gives self-registered users) and is created inactive under
  ``TOM_REGISTRATION_STRATEGY = "approval_required"``, as tomtoolkit does for sign-ups.
- Claims and tokens are never logged.
"""

from __future__ import annotations

import hashlib
import logging
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, Group
from django.db import transaction
from django.db.models import QuerySet
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from .conf import mma_settings

__all__ = ["OIDCBackend", "sanitise_username"]

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


def _truthy_claim(value: Any) -> bool:
    # providers send email_verified as a JSON boolean, a few as the string "true"
    return value is True or (isinstance(value, str) and value.lower() == "true")


class OIDCBackend(OIDCAuthenticationBackend):
    """Log users in through an OpenID Connect provider without ever granting rights.

    The settings are mozilla-django-oidc's ``OIDC_*`` ones plus the ``OIDC_*`` keys of
    ``TOM_MMA`` (``docs/settings.md``).
    """

    def authenticate(self, request, **kwargs) -> AbstractBaseUser | None:
        """Run the authorization-code flow; refuse inactive users, and staff unless allowed.

        ``TOM_MMA['OIDC_ALLOW_STAFF_LOGIN'] = False`` keeps staff and superusers on the password
        login, where the TOM asks for its own second factor.
        """
        user = super().authenticate(request, **kwargs)
        if user is None:
            return None
        if not self.user_can_authenticate(user):
            logger.info("OIDC login refused: user %s is inactive", user.get_username())
            return None
        if (user.is_staff or user.is_superuser) and not mma_settings.OIDC_ALLOW_STAFF_LOGIN:
            # the TOM's own second factor is not asked for on this path: staff use the password login
            logger.info("OIDC login refused: user %s is staff and OIDC_ALLOW_STAFF_LOGIN is off", user.get_username())
            return None
        return user

    def describe_user_by_claims(self, claims: Mapping[str, Any]) -> str:
        """Describe the claims in a log line without their contents (no email, no sub)."""
        return "the claims of a user without a TOM account"

    def verify_claims(self, claims: Mapping[str, Any]) -> bool:
        """Accept claims with an email address, verified unless ``OIDC_REQUIRE_VERIFIED_EMAIL`` is off."""
        if not isinstance(claims.get("email"), str) or not claims["email"].strip():
            logger.warning("OIDC login refused: the provider sent no email claim (is 'email' in OIDC_RP_SCOPES?)")
            return False
        if mma_settings.OIDC_REQUIRE_VERIFIED_EMAIL and not _truthy_claim(claims.get("email_verified")):
            logger.warning("OIDC login refused: the provider does not say the email address is verified")
            return False
        return True

    def filter_users_by_claims(self, claims: Mapping[str, Any]) -> QuerySet:
        """The users whose email matches the ``email`` claim, case-insensitively."""
        email = claims.get("email")
        if not isinstance(email, str) or not email.strip():
            return self.UserModel.objects.none()
        return self.UserModel.objects.filter(email__iexact=email.strip())

    def get_username(self, claims: Mapping[str, Any]) -> str:
        """A free username from ``OIDC_USERNAME_CLAIM``, else the email's local part, else ``sub``.

        The value is sanitised (:func:`sanitise_username`); a username already taken (compared
        case-insensitively) gets a suffix ``-2``, ``-3``, ... so that a login never lands in
        somebody else's account by name.
        """
        email = claims.get("email") if isinstance(claims.get("email"), str) else ""
        candidates = (claims.get(mma_settings.OIDC_USERNAME_CLAIM), email.partition("@")[0], claims.get("sub"))
        base = next((name for name in map(sanitise_username, candidates) if name), "")
        if not base:
            # nothing usable (e.g. a non-ASCII sub): a stable name that reveals nothing of the claims
            base = "oidc-" + hashlib.sha256(str(claims.get("sub", "")).encode()).hexdigest()[:12]
        return self._free_username(base)

    def _free_username(self, base: str) -> str:
        manager = self.UserModel.objects
        field = self.UserModel.USERNAME_FIELD
        if not manager.filter(**{f"{field}__iexact": base}).exists():
            return base
        for n in range(2, 1000):
            suffix = f"-{n}"
            name = base[: _MAX_LENGTH - len(suffix)] + suffix
            if not manager.filter(**{f"{field}__iexact": name}).exists():
                return name
        # a thousand namesakes: give up on readability rather than loop
        return base[: _MAX_LENGTH - 13] + "-" + hashlib.sha256(base.encode()).hexdigest()[:12]

    def create_user(self, claims: Mapping[str, Any]) -> AbstractBaseUser:
        """Create a user without staff or superuser rights, in the configured groups.

        Under ``TOM_REGISTRATION_STRATEGY = "approval_required"`` the user is created inactive,
        as tomtoolkit does for self-registration, and an administrator activates it.
        """
        email = claims["email"].strip()
        with transaction.atomic():
            user = self.UserModel.objects.create_user(
                self.get_username(claims),
                email=email,
                first_name=_name_claim(claims, "given_name"),
                last_name=_name_claim(claims, "family_name"),
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

    def update_user(self, user: AbstractBaseUser, claims: Mapping[str, Any]) -> AbstractBaseUser:
        """Return the user unchanged: rights and groups stay as an administrator set them.

        Only empty first and last names are filled in from the claims; nothing in the claims can
        raise (or lower) a user's rights.
        """
        changed = []
        for field, claim in (("first_name", "given_name"), ("last_name", "family_name")):
            value = _name_claim(claims, claim)
            if value and not getattr(user, field, "x"):
                setattr(user, field, value)
                changed.append(field)
        if changed:
            user.save(update_fields=changed)
        return user


def _name_claim(claims: Mapping[str, Any], key: str) -> str:
    value = claims.get(key)
    return value.strip()[:150] if isinstance(value, str) else ""
