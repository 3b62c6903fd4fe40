"""OIDC login for a TOM: a mozilla-django-oidc backend that matches users on the provider's subject id.

Enable it with :func:`tom_mma.oidc.environment.oidc_settings` (or by hand: ``"tom_mma.auth.OIDCBackend"`` in
``AUTHENTICATION_BACKENDS``, mozilla-django-oidc's ``OIDC_*`` settings, ``TOM_MMA['OIDC_ISSUER']`` and
``path("oidc/", include("tom_mma.oidc.urls"))``); ``docs/oidc.md`` has it all, checks ``tom_mma.E060``-``E069``
say what is missing.

Security stance:

- The ID token is checked beyond mozilla-django-oidc: its signature and algorithm (mozilla-django-oidc), its
  issuer (``TOM_MMA['OIDC_ISSUER']``), its audience (the client id; ``azp`` too when there are several), its
  expiry and issue time (required), and the userinfo's ``sub`` must be the token's.
- Users are matched on (``iss``, ``sub``) only, kept in :class:`tom_mma.models.OIDCIdentity`; never on an email
  address or a username, which can change hands at a provider.
- A login grants no staff or superuser rights except to the subject ids of the allow-lists; groups follow the
  group claim only for the groups named in ``OIDC_GROUP_MAP`` (:mod:`tom_mma.oidc.accounts`).
- Claims, tokens, codes and the client secret are never logged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import jwt
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import SuspiciousOperation
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from .conf import mma_settings
from .oidc import provider
from .oidc.accounts import login_user, sanitise_username
from .oidc.errors import LoginError

__all__ = ["OIDCBackend", "sanitise_username"]

logger = logging.getLogger(__name__)

# the claims an ID token must carry (OpenID Connect Core 1.0, 2), checked by PyJWT
REQUIRED_ID_TOKEN_CLAIMS = ["iss", "sub", "aud", "exp", "iat"]


class OIDCBackend(OIDCAuthenticationBackend):
    """Log users in through an OpenID Connect provider: matched on ``sub``, rights only by allow-list.

    Building it reads no setting and makes no network call (Django builds every backend at each password
    login too): the endpoints are resolved when a login needs them, from the ``OIDC_OP_*`` settings or the
    provider's discovery document (:mod:`tom_mma.oidc.provider`).
    """

    def __init__(self, *args, **kwargs):
        self.UserModel = get_user_model()

    # mozilla-django-oidc reads these attributes; they are looked up at each use (override_settings works)
    @property
    def OIDC_OP_TOKEN_ENDPOINT(self) -> str:  # noqa: N802
        """The token endpoint, set or discovered."""
        return provider.endpoint("OIDC_OP_TOKEN_ENDPOINT")

    @property
    def OIDC_OP_USER_ENDPOINT(self) -> str:  # noqa: N802
        """The userinfo endpoint, set or discovered."""
        return provider.endpoint("OIDC_OP_USER_ENDPOINT")

    @property
    def OIDC_OP_JWKS_ENDPOINT(self) -> str | None:  # noqa: N802
        """The JWKS endpoint, set or discovered (not needed with OIDC_RP_IDP_SIGN_KEY)."""
        return provider.endpoint("OIDC_OP_JWKS_ENDPOINT", required=self.OIDC_RP_IDP_SIGN_KEY is None)

    @property
    def OIDC_RP_CLIENT_ID(self) -> str:  # noqa: N802
        """The TOM's client id at the provider."""
        return getattr(settings, "OIDC_RP_CLIENT_ID", "")

    @property
    def OIDC_RP_CLIENT_SECRET(self) -> str:  # noqa: N802
        """The TOM's client secret (never logged)."""
        return getattr(settings, "OIDC_RP_CLIENT_SECRET", "")

    @property
    def OIDC_RP_SIGN_ALGO(self) -> str:  # noqa: N802
        """The algorithm ID tokens must be signed with (default RS256)."""
        return getattr(settings, "OIDC_RP_SIGN_ALGO", "RS256")

    @property
    def OIDC_RP_IDP_SIGN_KEY(self) -> str | None:  # noqa: N802
        """The provider's public key, when set instead of the JWKS endpoint."""
        return getattr(settings, "OIDC_RP_IDP_SIGN_KEY", None)

    def store_tokens(self, access_token: str, id_token: str) -> None:
        """Keep the ID token for the provider's logout (:mod:`tom_mma.oidc.logout`), and what mozilla's settings ask."""
        super().store_tokens(access_token, id_token)
        from .oidc.logout import store_id_token

        store_id_token(self.request, id_token)

    def _verify_jws(self, payload: Any, key: Any) -> dict:
        """Check the signature (and algorithm) and the issuer, audience and times of an ID token.

        Raises
        ------
        LoginError
            ``invalid_token``: nobody is logged in, the page says why in general words.
        """
        try:
            header = jwt.get_unverified_header(payload)
        except jwt.InvalidTokenError:
            raise LoginError("invalid_token") from None
        if header.get("alg") != self.OIDC_RP_SIGN_ALGO:
            logger.warning("OIDC login refused: the ID token's algorithm is not OIDC_RP_SIGN_ALGO")
            raise LoginError("invalid_token")
        client_id = self.OIDC_RP_CLIENT_ID
        try:
            claims = jwt.decode(
                payload,
                key,
                algorithms=[self.OIDC_RP_SIGN_ALGO],
                audience=client_id,
                issuer=provider.issuer(),
                leeway=float(mma_settings.OIDC_CLOCK_SKEW_S),
                options={"require": REQUIRED_ID_TOKEN_CLAIMS},
            )
        except jwt.InvalidTokenError as exc:
            # the exception's class says which check failed (ExpiredSignatureError, InvalidAudienceError, ...)
            logger.warning("OIDC login refused: the ID token failed verification (%s)", type(exc).__name__)
            raise LoginError("invalid_token") from None
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audiences) > 1 and claims.get("azp") != client_id:
            logger.warning("OIDC login refused: the ID token has several audiences and azp is not this client")
            raise LoginError("invalid_token")
        return claims

    def get_payload_data(self, token: Any, key: Any) -> dict:
        """Always verify: an unsigned token (``alg: none``) is refused even under ``OIDC_ALLOW_UNSECURED_JWT``."""
        return self._verify_jws(token, key)

    def verify_token(self, token: str, **kwargs) -> dict:
        """mozilla-django-oidc's verification (key, signature, nonce) with :meth:`_verify_jws`'s checks."""
        try:
            return super().verify_token(token, **kwargs)
        except SuspiciousOperation as exc:
            # "JWT Nonce verification failed", "Could not find a valid JWKS": no claims in the message
            logger.warning("OIDC login refused: %s", exc)
            raise LoginError("invalid_token") from None
        except (jwt.InvalidTokenError, KeyError, TypeError) as exc:
            # no ID token, or not a JWT (its header is read before any check), a JWKS key without kid
            logger.warning("OIDC login refused: the ID token is unreadable (%s)", type(exc).__name__)
            raise LoginError("invalid_token") from None

    def get_or_create_user(self, access_token: str, id_token: str, payload: Mapping[str, Any]) -> AbstractBaseUser:
        """The TOM user of the verified ID token and the userinfo claims (:func:`~tom_mma.oidc.accounts.login_user`)."""
        userinfo = self.get_userinfo(access_token, id_token, payload)
        if not isinstance(userinfo, Mapping) or userinfo.get("sub") != payload.get("sub"):
            # OpenID Connect Core 1.0, 5.3.2: a userinfo response about somebody else is not to be used
            logger.warning("OIDC login refused: the userinfo's sub is not the ID token's")
            raise LoginError("invalid_token")
        claims = {**payload, **userinfo}
        return login_user(payload["iss"], claims, create=bool(getattr(settings, "OIDC_CREATE_USER", True)))

    def describe_user_by_claims(self, claims: Mapping[str, Any]) -> str:
        """Describe the claims in a log line without their contents (no email, no sub)."""
        return "the claims of a user without a TOM account"
