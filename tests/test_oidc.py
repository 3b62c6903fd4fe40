"""OIDC login: ``tom_mma.auth.OIDCBackend`` and checks ``tom_mma.E060``-``E063``.

No identity provider runs here. The unit tests call the backend's ``create_user``,
``update_user``, ``filter_users_by_claims`` and ``verify_claims`` with claims dicts, as
mozilla-django-oidc does after it has fetched them. The flow tests go through the real
mozilla-django-oidc views (``/oidc/authenticate/`` then ``/oidc/callback/``) and mock only the two
HTTP calls to the provider (``requests.post`` to the token endpoint, ``requests.get`` to the
userinfo endpoint); the ID token is a real HS256 JWT signed with the client secret, which the
backend verifies.

This module is also the URLconf of those tests: the example TOM's URLs plus ``oidc/``.
"""

from __future__ import annotations

import doctest
import logging
from unittest import mock
from urllib.parse import parse_qs, urlparse

import jwt
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import override_settings
from django.urls import include, path

from example_tom import urls as example_urls
from tom_mma import auth
from tom_mma import checks as mma_checks

urlpatterns = [path("oidc/", include("mozilla_django_oidc.urls")), *example_urls.urlpatterns]

User = get_user_model()

SECRET = "test-client-secret-not-a-real-one"
BACKEND = "tom_mma.auth.OIDCBackend"
OIDC = {
    "OIDC_RP_CLIENT_ID": "tom-mma-test",
    "OIDC_RP_CLIENT_SECRET": SECRET,
    "OIDC_OP_AUTHORIZATION_ENDPOINT": "https://idp.invalid/authorize",
    "OIDC_OP_TOKEN_ENDPOINT": "https://idp.invalid/token",
    "OIDC_OP_USER_ENDPOINT": "https://idp.invalid/userinfo",
    "OIDC_OP_JWKS_ENDPOINT": None,
    "OIDC_RP_SIGN_ALGO": "HS256",
    "OIDC_RP_SCOPES": "openid email profile",
    "OIDC_USE_PKCE": True,
    "LOGIN_REDIRECT_URL_FAILURE": "/accounts/login/",
}
OIDC_ON = {**OIDC, "ROOT_URLCONF": __name__}

# claims a provider could send that must not grant anything
GREEDY = {"is_staff": True, "is_superuser": True, "admin": True, "groups": ["admin", "staff"], "roles": ["admin"]}


def claims(**extra) -> dict:
    base = {
        "sub": "f3a9-sub",
        "email": "Alice.Smith@Example.org",
        "email_verified": True,
        "preferred_username": "alice",
        "given_name": "Alice",
        "family_name": "Smith",
    }
    return {**base, **extra}


@pytest.fixture
def backends(settings):
    # the example TOM already has it when OIDC_RP_CLIENT_ID is in the environment
    settings.AUTHENTICATION_BACKENDS = [b for b in settings.AUTHENTICATION_BACKENDS if b != BACKEND] + [BACKEND]
    for key, value in OIDC_ON.items():
        setattr(settings, key, value)
    return settings


@pytest.fixture
def backend(backends) -> auth.OIDCBackend:
    return auth.OIDCBackend()


# --- usernames -----------------------------------------------------------------------------


def test_sanitise_username_doctests():
    result = doctest.testmod(auth, verbose=False)
    assert result.attempted >= 3 and result.failed == 0


@pytest.mark.parametrize(
    ("claim", "expected"),
    [
        ("alice", "alice"),
        ("Zoë O'Brien", "Zoe_O_Brien"),
        ("<script>alert(1)</script>", "script_alert_1_script"),
        ("x" * 300, "x" * 150),
        ("...", ""),
        ("", ""),
        (None, ""),
        (42, ""),
    ],
)
def test_sanitise_username(claim, expected):
    assert auth.sanitise_username(claim) == expected


@pytest.mark.django_db
def test_username_from_the_configured_claim_then_email_then_sub(backend, settings):
    assert backend.get_username(claims()) == "alice"
    settings.TOM_MMA = {"OIDC_USERNAME_CLAIM": "nickname"}
    assert backend.get_username(claims(nickname="ally")) == "ally"
    assert backend.get_username(claims()) == "Alice.Smith"  # no nickname: the email's local part
    assert backend.get_username(claims(email="")) == "f3a9-sub"
    fallback = backend.get_username(claims(email="", sub="ß∂"))
    assert fallback.startswith("oidc-") and len(fallback) == 17


@pytest.mark.django_db
def test_a_taken_username_gets_a_suffix_not_the_account(backend):
    owner = User.objects.create_user("Alice", email="someone.else@example.org")
    User.objects.create_user("alice-2")
    user = backend.create_user(claims())
    assert user.pk != owner.pk
    assert user.username == "alice-3"  # "alice" clashes with "Alice" case-insensitively


# --- rights: a login grants nothing ----------------------------------------------------------


@pytest.mark.django_db
def test_a_new_user_gets_no_staff_or_superuser_rights(backend):
    user = backend.create_user(claims())
    user.refresh_from_db()
    assert (user.username, user.email) == ("alice", "Alice.Smith@example.org")  # Django lowercases the domain
    assert not user.is_staff and not user.is_superuser and user.is_active
    assert not user.has_usable_password()
    assert list(user.groups.values_list("name", flat=True)) == ["Public"]
    assert (user.first_name, user.last_name) == ("Alice", "Smith")


@pytest.mark.django_db
def test_claims_of_rights_grant_nothing_to_a_new_user(backend):
    user = backend.create_user(claims(**GREEDY))
    user.refresh_from_db()
    assert not user.is_staff and not user.is_superuser
    assert list(user.groups.values_list("name", flat=True)) == ["Public"]
    assert not user.user_permissions.exists()
    assert not Group.objects.filter(name__in=["admin", "staff"]).exists()


@pytest.mark.django_db
def test_an_existing_non_staff_user_stays_non_staff(backend):
    existing = User.objects.create_user("asmith", email="alice.smith@example.org")
    [matched] = backend.filter_users_by_claims(claims(**GREEDY))
    user = backend.update_user(matched, claims(**GREEDY))
    user.refresh_from_db()
    assert user.pk == existing.pk and user.username == "asmith"
    assert not user.is_staff and not user.is_superuser
    assert not user.groups.exists()  # not even the new-user groups: an admin manages existing users
    assert (user.first_name, user.last_name) == ("Alice", "Smith")  # empty names filled in, nothing else


@pytest.mark.django_db
def test_an_existing_staff_user_keeps_what_the_admin_set(backend):
    staff = User.objects.create_user("boss", email="alice.smith@example.org", is_staff=True, first_name="Al")
    user = backend.update_user(staff, claims(is_staff=False, is_superuser=True))
    user.refresh_from_db()
    assert user.is_staff and not user.is_superuser
    assert user.first_name == "Al"  # a name an admin set is not overwritten


@pytest.mark.django_db
def test_new_user_groups_are_configurable(backend, settings):
    settings.TOM_MMA = {"OIDC_NEW_USER_GROUPS": ["Observers", "Public"]}
    user = backend.create_user(claims())
    assert sorted(user.groups.values_list("name", flat=True)) == ["Observers", "Public"]
    settings.TOM_MMA = {"OIDC_NEW_USER_GROUPS": []}
    assert not backend.create_user(claims(preferred_username="bob", email="bob@example.org")).groups.exists()


@pytest.mark.django_db
def test_new_users_wait_for_approval_when_tom_registration_does(backend, settings):
    settings.TOM_REGISTRATION_STRATEGY = "approval_required"
    user = backend.create_user(claims())
    assert not user.is_active and not user.is_staff


# --- matching --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_email_matching_is_case_insensitive(backend):
    existing = User.objects.create_user("asmith", email="alice.smith@example.org")
    User.objects.create_user("other", email="alice.smith@example.org.evil")
    assert list(backend.filter_users_by_claims(claims(email="ALICE.SMITH@EXAMPLE.ORG"))) == [existing]
    assert list(backend.filter_users_by_claims(claims(email=" alice.smith@example.org "))) == [existing]
    assert not backend.filter_users_by_claims(claims(email="")).exists()
    assert not backend.filter_users_by_claims(claims(email=None)).exists()


def test_claims_need_an_email_verified_by_default(backends):
    backend = auth.OIDCBackend()
    assert backend.verify_claims(claims())
    assert backend.verify_claims(claims(email_verified="true"))
    assert not backend.verify_claims(claims(email_verified=False))
    assert not backend.verify_claims(claims(email_verified="yes please"))
    assert not backend.verify_claims({k: v for k, v in claims().items() if k != "email_verified"})
    assert not backend.verify_claims(claims(email=""))
    assert not backend.verify_claims(claims(email=["a@example.org"]))
    backends.TOM_MMA = {"OIDC_REQUIRE_VERIFIED_EMAIL": False}
    assert backend.verify_claims(claims(email_verified=False))


# --- the full flow, with the provider's two HTTP endpoints mocked ---------------------------


def _response(json_body: dict, status: int = 200) -> mock.Mock:
    response = mock.Mock(status_code=status, headers={"content-type": "application/json"}, url="https://idp.invalid")
    response.json.return_value = json_body
    response.raise_for_status.return_value = None
    return response


def _login(client, userinfo: dict, key: str = SECRET, caplog=None):
    """Start the login, come back from the 'provider' with a code; return the callback response and mocks."""
    start = client.get("/oidc/authenticate/")
    assert start.status_code == 302
    location = urlparse(start["Location"])
    assert location.netloc == "idp.invalid"
    query = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert query["code_challenge_method"] == "S256" and query["scope"] == "openid email profile"
    id_token = jwt.encode(
        {"iss": "https://idp.invalid", "aud": "tom-mma-test", "sub": userinfo.get("sub"), "nonce": query["nonce"]},
        key,
        algorithm="HS256",
    )
    tokens = {"id_token": id_token, "access_token": "access-token-value", "token_type": "Bearer"}
    with (
        mock.patch("mozilla_django_oidc.auth.requests.post", return_value=_response(tokens)) as post,
        mock.patch("mozilla_django_oidc.auth.requests.get", return_value=_response(userinfo)) as get,
    ):
        response = client.get("/oidc/callback/", {"code": "the-code", "state": query["state"]})
    return response, post, get, tokens


@pytest.mark.django_db
def test_full_login_creates_an_unprivileged_user(client, backends, caplog):
    caplog.set_level(logging.DEBUG)
    response, post, get, tokens = _login(client, claims(**GREEDY))
    assert response.status_code == 302 and response["Location"] == "/"
    user = User.objects.get(email__iexact="alice.smith@example.org")
    assert not user.is_staff and not user.is_superuser
    assert client.session["_auth_user_id"] == str(user.pk)
    assert client.session["_auth_user_backend"] == BACKEND
    # the token request carried the code, the secret and the PKCE verifier; userinfo got the access token
    sent = post.call_args.kwargs["data"]
    assert sent["code"] == "the-code" and sent["client_secret"] == SECRET and sent["code_verifier"]
    assert get.call_args.kwargs["headers"] == {"Authorization": "Bearer access-token-value"}
    # claims and tokens are never logged
    logged = "\n".join(record.getMessage() for record in caplog.records)
    for secret in (tokens["id_token"], "access-token-value", SECRET, "Alice.Smith@Example.org", "f3a9-sub"):
        assert secret not in logged


@pytest.mark.django_db
def test_full_login_of_an_existing_user_grants_nothing(client, backends):
    existing = User.objects.create_user("asmith", email="alice.smith@example.org")
    response, *_ = _login(client, claims(**GREEDY))
    assert response["Location"] == "/"
    assert client.session["_auth_user_id"] == str(existing.pk)
    existing.refresh_from_db()
    assert not existing.is_staff and not existing.is_superuser
    assert User.objects.filter(email__iexact="alice.smith@example.org").count() == 1


@pytest.mark.django_db
def test_a_token_not_signed_with_the_client_secret_is_refused(client, backends):
    response, *_ = _login(client, claims(), key="someone-elses-secret-of-enough-length")
    assert response.status_code == 400  # mozilla-django-oidc raises SuspiciousOperation
    assert "_auth_user_id" not in client.session
    assert not User.objects.filter(email__iexact="alice.smith@example.org").exists()


@pytest.mark.django_db
def test_an_unverified_email_does_not_log_in_as_its_owner(client, backends):
    User.objects.create_user("boss", email="alice.smith@example.org", is_staff=True)
    response, *_ = _login(client, claims(email_verified=False))
    assert response["Location"] == "/accounts/login/"
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_an_inactive_user_is_refused(client, backends):
    User.objects.create_user("asmith", email="alice.smith@example.org", is_active=False)
    response, *_ = _login(client, claims())
    assert response["Location"] == "/accounts/login/"
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_staff_may_be_kept_on_the_password_login(client, backends):
    staff = User.objects.create_user("boss", email="alice.smith@example.org", is_staff=True)
    response, *_ = _login(client, claims())
    assert client.session["_auth_user_id"] == str(staff.pk)  # allowed by default
    client.logout()
    backends.TOM_MMA = {"OIDC_ALLOW_STAFF_LOGIN": False}
    response, *_ = _login(client, claims())
    assert response["Location"] == "/accounts/login/" and "_auth_user_id" not in client.session
    staff.refresh_from_db()
    assert staff.is_staff


@pytest.mark.django_db
def test_no_new_users_when_oidc_create_user_is_off(client, backends):
    backends.OIDC_CREATE_USER = False
    response, *_ = _login(client, claims())
    assert response["Location"] == "/accounts/login/"
    assert not User.objects.filter(email__iexact="alice.smith@example.org").exists()


# --- the login page -------------------------------------------------------------------------


@pytest.mark.django_db
def test_login_page_links_to_the_provider_when_oidc_is_on(client, backends):
    backends.TOM_MMA = {"OIDC_PROVIDER_NAME": "SCiMMA"}
    page = client.get("/accounts/login/", {"next": "/targets/"}).content.decode()
    assert 'href="/oidc/authenticate/?next=%2Ftargets%2F"' in page and "Log in with SCiMMA" in page
    assert 'name="password"' in page  # tomtoolkit's form is still there


@pytest.mark.django_db
def test_login_page_has_no_oidc_link_when_oidc_is_off(client, settings):
    settings.AUTHENTICATION_BACKENDS = [b for b in settings.AUTHENTICATION_BACKENDS if b != BACKEND]
    page = client.get("/accounts/login/").content.decode()
    assert 'name="password"' in page and "oidc" not in page.lower()


# --- checks ----------------------------------------------------------------------------------


def _ids(messages) -> list[str]:
    return [m.id for m in messages]


def test_no_oidc_checks_without_the_backend():
    with override_settings(AUTHENTICATION_BACKENDS=["guardian.backends.ObjectPermissionBackend"]):
        assert mma_checks.check_oidc() == []


def test_a_fully_configured_backend_passes(backends):
    assert mma_checks.oidc_backends() == [BACKEND]
    assert mma_checks.check_oidc() == []
    assert mma_checks.check_oidc_settings() == []


@pytest.mark.parametrize("missing", ["OIDC_RP_CLIENT_SECRET", "OIDC_OP_TOKEN_ENDPOINT", "OIDC_OP_USER_ENDPOINT"])
def test_e060_a_required_setting_is_missing(backends, missing):
    setattr(backends, missing, "")
    [message] = mma_checks.check_oidc()
    assert message.id == "tom_mma.E060" and missing in message.msg
    delattr(backends, missing)
    assert _ids(mma_checks.check_oidc()) == ["tom_mma.E060"]


def test_e060_a_subclass_of_the_backend_counts(backends):
    backends.AUTHENTICATION_BACKENDS = ["mozilla_django_oidc.auth.OIDCAuthenticationBackend"]
    backends.OIDC_OP_AUTHORIZATION_ENDPOINT = ""
    assert _ids(mma_checks.check_oidc()) == ["tom_mma.E060"]


def test_e061_asymmetric_algorithm_needs_a_key_source(backends):
    backends.OIDC_RP_SIGN_ALGO = "RS256"
    assert _ids(mma_checks.check_oidc()) == ["tom_mma.E061"]
    backends.OIDC_OP_JWKS_ENDPOINT = "https://idp.invalid/jwks"
    assert mma_checks.check_oidc() == []
    backends.OIDC_OP_JWKS_ENDPOINT = None
    backends.OIDC_RP_IDP_SIGN_KEY = "-----BEGIN PUBLIC KEY-----..."
    assert mma_checks.check_oidc() == []


def test_e062_urls_not_included(backends):
    backends.ROOT_URLCONF = "tests.urls_without_alerts"
    assert _ids(mma_checks.check_oidc()) == ["tom_mma.E062"]


@pytest.mark.parametrize(
    "tom_mma",
    [
        {"OIDC_USERNAME_CLAIM": ""},
        {"OIDC_NEW_USER_GROUPS": "Public"},
        {"OIDC_NEW_USER_GROUPS": ["Public", 3]},
        {"OIDC_REQUIRE_VERIFIED_EMAIL": "no"},
        {"OIDC_ALLOW_STAFF_LOGIN": 1},
        {"OIDC_PROVIDER_NAME": None},
    ],
)
def test_e063_bad_tom_mma_oidc_keys(tom_mma):
    with override_settings(TOM_MMA=tom_mma):
        assert _ids(mma_checks.check_oidc_settings()) == ["tom_mma.E063"]


def test_e063_not_raised_for_the_defaults():
    with override_settings(TOM_MMA={}):
        assert mma_checks.check_oidc_settings() == []
