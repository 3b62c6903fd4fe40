"""OIDC login: the accounts service, the backend's token checks, the error pages and checks ``E060``-``E069``.

These tests need no provider. The service tests call :func:`tom_mma.oidc.accounts.login_user` with claims
dicts, as the backend does after verifying the ID token. The flow tests go through the real views
(``/oidc/authenticate/`` then ``/oidc/callback/``) and mock only the two HTTP calls to the provider
(``requests.post`` to the token endpoint, ``requests.get`` to the userinfo endpoint), because no provider runs
in this process; the ID token is a real HS256 JWT, which the backend verifies. The same flow against a real
provider, in a real browser, is in ``tests/test_oidc_provider.py``.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock
from urllib.parse import parse_qs, urlparse

import jwt
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import override_settings

from tom_mma import checks_oidc
from tom_mma.models import OIDCIdentity
from tom_mma.oidc import accounts, environment, provider
from tom_mma.oidc.errors import LoginError

User = get_user_model()

ISSUER = "https://idp.invalid"
SECRET = "test-client-secret-not-a-real-one"
BACKEND = "tom_mma.auth.OIDCBackend"
OIDC = {
    "OIDC_RP_CLIENT_ID": "tom-mma-test",
    "OIDC_RP_CLIENT_SECRET": SECRET,
    "OIDC_OP_AUTHORIZATION_ENDPOINT": f"{ISSUER}/authorize",
    "OIDC_OP_TOKEN_ENDPOINT": f"{ISSUER}/token",
    "OIDC_OP_USER_ENDPOINT": f"{ISSUER}/userinfo",
    "OIDC_OP_JWKS_ENDPOINT": None,
    "OIDC_RP_SIGN_ALGO": "HS256",
    "OIDC_RP_SCOPES": "openid email profile",
    "OIDC_USE_PKCE": True,
    "ROOT_URLCONF": "tests.urls_oidc",
}
MAP = {"Observers": ["tom-observers"], "LVK": ["glob:lvk-*"], "Kilonova": [r"re:kn-(core|ext)"]}

# claims a provider could send that must not grant anything
GREEDY = {"is_staff": True, "is_superuser": True, "admin": True, "roles": ["admin"]}


def claims(**extra) -> dict:
    base = {
        "sub": "f3a9-sub",
        "email": "Alice.Smith@Example.org",
        "email_verified": True,
        "preferred_username": "alice",
        "given_name": "Alice",
        "family_name": "Smith",
        "groups": ["tom-observers", "unrelated"],
    }
    return {**base, **extra}


@pytest.fixture
def oidc(settings):
    settings.AUTHENTICATION_BACKENDS = [b for b in settings.AUTHENTICATION_BACKENDS if b != BACKEND] + [BACKEND]
    for key, value in OIDC.items():
        setattr(settings, key, value)
    settings.TOM_MMA = {**settings.TOM_MMA, "OIDC_ISSUER": ISSUER, "OIDC_GROUP_MAP": MAP}
    provider.clear_discovery_cache()
    return settings


def tom_mma(settings, **keys):
    settings.TOM_MMA = {**settings.TOM_MMA, **keys}


def login(c: dict | None = None, **extra):
    return accounts.login_user(ISSUER, c or claims(**extra))


def people():
    """The users, without django-guardian's AnonymousUser."""
    return User.objects.exclude(username="AnonymousUser")


def groups(user) -> list[str]:
    return sorted(user.groups.values_list("name", flat=True))


# --- users: matched on (issuer, sub), updated, never duplicated ----------------------------


@pytest.mark.django_db
def test_a_first_login_creates_an_unprivileged_user_with_its_identity(oidc):
    user = login(**GREEDY)
    user.refresh_from_db()
    assert (user.username, user.email, user.first_name, user.last_name) == (
        "alice",
        "Alice.Smith@example.org",  # Django lowercases the domain
        "Alice",
        "Smith",
    )
    assert not user.is_staff and not user.is_superuser and user.is_active and not user.has_usable_password()
    assert groups(user) == ["Observers", "Public"]  # the mapped group and the new-user group
    [identity] = OIDCIdentity.objects.all()
    assert (identity.issuer, identity.subject, identity.user_id) == (ISSUER, "f3a9-sub", user.pk)
    assert identity.last_login is not None and not identity.staff_granted


@pytest.mark.django_db
def test_the_next_login_updates_the_same_user(oidc):
    first = login()
    again = login(preferred_username="alice.s", given_name="Alicia", email="alice@new.example.org")
    assert again.pk == first.pk and people().count() == 1 and OIDCIdentity.objects.count() == 1
    again.refresh_from_db()
    assert (again.username, again.first_name, again.email) == ("alice.s", "Alicia", "alice@new.example.org")


@pytest.mark.django_db
def test_email_is_not_the_match_key(oidc):
    owner = User.objects.create_user("boss", email="alice.smith@example.org", is_staff=True)
    user = login()
    assert user.pk != owner.pk and not user.is_staff  # same address, another account: not the owner's
    other_subject = login(sub="someone-else")
    assert other_subject.pk not in (owner.pk, user.pk)
    assert other_subject.username == "alice-2"  # "alice" is taken: never somebody else's account by name


@pytest.mark.django_db
def test_no_username_claim_keeps_the_username(oidc):
    login()
    assert login(preferred_username=None).username == "alice"  # not renamed to the email's local part


@pytest.mark.django_db
def test_a_rename_onto_a_taken_username_keeps_the_current_one(oidc):
    User.objects.create_user("bob")
    user = login()
    user = login(preferred_username="Bob")  # compared case-insensitively
    assert user.username == "alice"


@pytest.mark.django_db
def test_the_same_subject_at_another_issuer_is_another_user(oidc):
    here = login()
    there = accounts.login_user("https://other.invalid", claims())
    assert here.pk != there.pk


@pytest.mark.django_db
def test_claims_are_configurable(oidc, settings):
    tom_mma(settings, OIDC_USERNAME_CLAIM="nickname", OIDC_FIRST_NAME_CLAIM="first", OIDC_LAST_NAME_CLAIM="last")
    user = login(nickname="ally", first="Al", last="S.")
    assert (user.username, user.first_name, user.last_name) == ("ally", "Al", "S.")
    nameless = login(sub="ß∂", preferred_username="", email="", nickname=None)
    assert nameless.username.startswith("oidc-") and len(nameless.username) == 17


@pytest.mark.django_db
def test_an_unverified_email_is_not_stored(oidc):
    user = login(email_verified=False)
    assert user.email == ""
    user = login(email_verified="true")
    assert user.email == "Alice.Smith@example.org"


@pytest.mark.django_db
def test_new_users_wait_for_approval_when_tom_registration_does(oidc, settings):
    settings.TOM_REGISTRATION_STRATEGY = "approval_required"
    with pytest.raises(LoginError) as refused:
        login()
    assert refused.value.code == "inactive"
    user = people().get()  # kept, for the administrator to approve
    assert not user.is_active and OIDCIdentity.objects.get().user == user
    user.is_active = True
    user.save()
    assert login().pk == user.pk


@pytest.mark.django_db
def test_no_new_users_without_create(oidc):
    with pytest.raises(LoginError) as refused:
        accounts.login_user(ISSUER, claims(), create=False)
    assert refused.value.code == "no_account" and not people().exists()


# --- groups ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_managed_groups_follow_the_claim_and_no_other_group_is_touched(oidc):
    by_hand = Group.objects.create(name="Hand-picked")
    user = login(groups=["tom-observers", "lvk-cbc", "kn-core"])
    user.groups.add(by_hand)
    assert groups(user) == ["Hand-picked", "Kilonova", "LVK", "Observers", "Public"]
    user = login(groups=["lvk-burst"])  # removed from two groups at the provider
    assert groups(user) == ["Hand-picked", "LVK", "Public"]
    user = login(groups=[])
    assert groups(user) == ["Hand-picked", "Public"]  # Public: a new-user group, not in the map


@pytest.mark.django_db
def test_group_claim_name_and_nested_path(oidc, settings):
    tom_mma(settings, OIDC_GROUPS_CLAIM="realm_access.roles")
    assert groups(login(realm_access={"roles": ["kn-ext"]})) == ["Kilonova", "Public"]
    tom_mma(settings, OIDC_GROUPS_CLAIM="isMemberOf")
    assert groups(login(isMemberOf="tom-observers")) == ["Observers", "Public"]


@pytest.mark.django_db
def test_patterns_match_the_whole_value(oidc):
    assert groups(login(groups=["xkn-core", "kn-cored", "LVK-cbc", "tom-observers2"])) == ["Public"]


@pytest.mark.django_db
def test_unmapped_users_refused_or_allowed(oidc, settings):
    tom_mma(settings, OIDC_UNMAPPED_USERS="refuse")
    with pytest.raises(LoginError) as refused:
        login(groups=["unrelated"])
    assert refused.value.code == "no_mapped_group" and not people().exists()
    assert groups(login(groups=["lvk-x"])) == ["LVK", "Public"]
    tom_mma(settings, OIDC_UNMAPPED_USERS="allow")
    assert groups(login(sub="other", groups=[], preferred_username="bob")) == ["Public"]


# --- rights: only the allow-lists ------------------------------------------------------------


@pytest.mark.django_db
def test_staff_and_superuser_only_by_allow_list_and_taken_back(oidc, settings):
    assert not login(**GREEDY).is_staff
    tom_mma(settings, OIDC_STAFF_SUBJECTS=["f3a9-sub"])
    user = login()
    assert user.is_staff and not user.is_superuser
    tom_mma(settings, OIDC_STAFF_SUBJECTS=[], OIDC_SUPERUSER_SUBJECTS=["f3a9-sub"])
    user = login()
    assert user.is_staff and user.is_superuser
    tom_mma(settings, OIDC_SUPERUSER_SUBJECTS=[])
    user = login()
    assert not user.is_staff and not user.is_superuser


@pytest.mark.django_db
def test_a_malformed_allow_list_grants_nothing(oidc, settings):
    tom_mma(settings, OIDC_STAFF_SUBJECTS="f3a9-sub, other", OIDC_SUPERUSER_SUBJECTS="f3a9")  # strings: E063
    user = login()
    assert not user.is_staff and not user.is_superuser


@pytest.mark.django_db
def test_a_malformed_group_map_refuses_with_a_page(client, oidc, settings):
    tom_mma(settings, OIDC_GROUP_MAP={"Observers": ["re:("]})  # E066, for a server started without checks
    response, *_ = _flow(client, claims())
    assert response.status_code == 503 and _error_code(response) == "misconfigured" and not people().exists()


@pytest.mark.django_db
def test_rights_an_admin_gave_are_not_taken_back(oidc, settings):
    user = login()
    User.objects.filter(pk=user.pk).update(is_staff=True)
    tom_mma(settings, OIDC_STAFF_SUBJECTS=["f3a9-sub"])
    login()
    tom_mma(settings, OIDC_STAFF_SUBJECTS=[])
    assert login().is_staff  # the allow-list did not give it: leaving the list takes nothing


@pytest.mark.django_db
def test_staff_may_be_kept_on_the_password_login(oidc, settings):
    user = login()
    User.objects.filter(pk=user.pk).update(is_staff=True)
    assert login().is_staff
    tom_mma(settings, OIDC_ALLOW_STAFF_LOGIN=False)
    with pytest.raises(LoginError) as refused:
        login()
    assert refused.value.code == "staff_refused"


# --- the flow through the views, the provider's two HTTP calls mocked -------------------------


def _response(body, status: int = 200) -> mock.Mock:
    response = mock.Mock(status_code=status, headers={"content-type": "application/json"}, url=ISSUER, text="x")
    response.json.return_value = body
    response.raise_for_status.return_value = None
    return response


def _flow(client, userinfo: dict, key: str = SECRET, token: dict | None = None, token_response=None):
    """Start the login, come back from the 'provider' with a code; return the callback response and mocks."""
    start = client.get("/oidc/authenticate/", {"next": "/targets/"})
    assert start.status_code == 302
    location = urlparse(start["Location"])
    assert location.netloc == "idp.invalid"
    query = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert query["code_challenge_method"] == "S256" and query["scope"] == "openid email profile"
    now = int(time.time())
    payload = {"iss": ISSUER, "aud": "tom-mma-test", "sub": userinfo.get("sub"), "nonce": query["nonce"]}
    payload.update({"iat": now, "exp": now + 300, **(token or {})})
    id_token = jwt.encode({k: v for k, v in payload.items() if v is not None}, key, algorithm="HS256")
    tokens = {"id_token": id_token, "access_token": "access-token-value", "token_type": "Bearer"}
    with (
        mock.patch("mozilla_django_oidc.auth.requests.post", return_value=token_response or _response(tokens)) as post,
        mock.patch("mozilla_django_oidc.auth.requests.get", return_value=_response(userinfo)) as get,
    ):
        response = client.get("/oidc/callback/", {"code": "the-code", "state": query["state"]})
    return response, post, get, tokens


def _error_code(response) -> str:
    page = response.content.decode()
    assert "Traceback" not in page and 'id="oidc-error"' in page
    return page.split('data-code="')[1].split('"')[0]


@pytest.mark.django_db
def test_full_login_with_pkce_and_nothing_secret_logged(client, oidc, caplog):
    caplog.set_level(logging.DEBUG)
    response, post, get, tokens = _flow(client, claims(**GREEDY))
    assert response.status_code == 302 and response["Location"] == "/targets/"
    user = User.objects.get(username="alice")
    assert not user.is_staff and groups(user) == ["Observers", "Public"]
    assert client.session["_auth_user_id"] == str(user.pk)
    sent = post.call_args.kwargs["data"]
    assert sent["code"] == "the-code" and sent["client_secret"] == SECRET and len(sent["code_verifier"]) >= 43
    assert get.call_args.kwargs["headers"] == {"Authorization": "Bearer access-token-value"}
    logged = "\n".join(record.getMessage() for record in caplog.records)
    for secret in (tokens["id_token"], "access-token-value", SECRET, "the-code", "Alice.Smith@Example.org", "f3a9"):
        assert secret not in logged


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("token", "key"),
    [
        ({}, "someone-elses-secret-of-enough-length"),  # signature
        ({"aud": "another-client"}, SECRET),
        ({"aud": ["tom-mma-test", "another-client"]}, SECRET),  # several audiences, no azp
        ({"iss": "https://evil.invalid"}, SECRET),
        ({"exp": int(time.time()) - 3600}, SECRET),
        ({"exp": None}, SECRET),  # no expiry at all
        ({"nonce": "replayed"}, SECRET),
    ],
)
def test_bad_id_tokens_are_refused_with_a_page(client, oidc, token, key):
    response, *_ = _flow(client, claims(), key=key, token=token)
    assert response.status_code == 400 and _error_code(response) == "invalid_token"
    assert "_auth_user_id" not in client.session and not people().exists()


@pytest.mark.django_db
@pytest.mark.parametrize("id_token", [None, "not-a-jwt", "unsigned"])
def test_a_missing_unreadable_or_unsigned_id_token_is_refused(client, oidc, settings, id_token):
    settings.OIDC_ALLOW_UNSECURED_JWT = True  # mozilla-django-oidc would then take alg "none"; tom_mma never does
    client.get("/oidc/authenticate/")
    nonce = next(iter(client.session["oidc_states"].values()))["nonce"]
    state = next(iter(client.session["oidc_states"]))
    if id_token == "unsigned":
        now = int(time.time())
        id_token = jwt.encode(
            {"iss": ISSUER, "aud": "tom-mma-test", "sub": "f3a9-sub", "nonce": nonce, "iat": now, "exp": now + 60},
            None,
            algorithm="none",
        )
    tokens = {"id_token": id_token, "access_token": "a", "token_type": "Bearer"}
    with (
        mock.patch("mozilla_django_oidc.auth.requests.post", return_value=_response(tokens)),
        mock.patch("mozilla_django_oidc.auth.requests.get", return_value=_response(claims())),
    ):
        response = client.get("/oidc/callback/", {"code": "c", "state": state})
    assert _error_code(response) == "invalid_token" and not people().exists()


@pytest.mark.django_db
def test_a_userinfo_about_somebody_else_is_refused(client, oidc):
    response, *_ = _flow(client, claims(), token={"sub": "another-subject"})
    assert _error_code(response) == "invalid_token" and not people().exists()


@pytest.mark.django_db
def test_a_state_this_session_did_not_start_shows_a_page(client, oidc):
    client.get("/oidc/authenticate/")
    response = client.get("/oidc/callback/", {"code": "c", "state": "forged"})
    assert response.status_code == 400 and _error_code(response) == "state_mismatch"
    assert "several tabs" in response.content.decode() or "tabs" in response.content.decode()
    fresh = client.__class__()  # no session at all: a load balancer without shared sessions
    assert _error_code(fresh.get("/oidc/callback/", {"code": "c", "state": "s"})) == "state_mismatch"


@pytest.mark.django_db
def test_a_refusal_at_the_provider_shows_its_words_escaped(client, oidc):
    client.get("/oidc/authenticate/")
    response = client.get("/oidc/callback/", {"error": "access_denied", "error_description": "<b>no</b>"})
    assert _error_code(response) == "refused"
    page = response.content.decode()
    assert "&lt;b&gt;no&lt;/b&gt;" in page and "<b>no</b>" not in page
    assert 'id="oidc-retry"' in page


@pytest.mark.django_db
def test_an_expired_code_shows_a_page(client, oidc):
    refused = _response({"error": "invalid_grant"}, status=400)
    response, *_ = _flow(client, claims(), token_response=refused)
    assert _error_code(response) == "expired"


@pytest.mark.django_db
def test_an_unmapped_user_sees_why(client, oidc, settings):
    tom_mma(settings, OIDC_UNMAPPED_USERS="refuse")
    response, *_ = _flow(client, claims(groups=["unrelated"]))
    assert _error_code(response) == "no_mapped_group" and "none of the groups" in response.content.decode()


@pytest.mark.django_db
def test_discovery_fills_the_endpoints_and_checks_the_issuer(client, oidc, settings):
    for name in ("OIDC_OP_AUTHORIZATION_ENDPOINT", "OIDC_OP_TOKEN_ENDPOINT", "OIDC_OP_USER_ENDPOINT"):
        delattr(settings, name)
    document = {"issuer": ISSUER, "authorization_endpoint": f"{ISSUER}/auth2", "token_endpoint": f"{ISSUER}/t2"}
    with mock.patch("tom_mma.oidc.provider.requests.get", return_value=_response(document)) as get:
        start = client.get("/oidc/authenticate/")
        assert start["Location"].startswith(f"{ISSUER}/auth2?")
        assert provider.endpoint("OIDC_OP_TOKEN_ENDPOINT") == f"{ISSUER}/t2"
    assert get.call_count == 1  # cached
    provider.clear_discovery_cache()
    with mock.patch("tom_mma.oidc.provider.requests.get", return_value=_response({**document, "issuer": "x"})):
        response = client.get("/oidc/authenticate/")
    assert response.status_code == 503 and _error_code(response) == "provider_unavailable"


# --- the login page --------------------------------------------------------------------------


@pytest.mark.django_db
def test_login_page_links_to_the_provider_when_oidc_is_on(client, oidc, settings):
    tom_mma(settings, OIDC_PROVIDER_NAME="SCiMMA")
    page = client.get("/accounts/login/", {"next": "/targets/"}).content.decode()
    assert 'href="/oidc/authenticate/?next=%2Ftargets%2F"' in page and "Log in with SCiMMA" in page
    assert 'name="password"' in page  # tomtoolkit's form is still there: the break-glass login


@pytest.mark.django_db
def test_login_page_has_no_oidc_link_when_oidc_is_off(client, settings):
    settings.AUTHENTICATION_BACKENDS = [b for b in settings.AUTHENTICATION_BACKENDS if b != BACKEND]
    page = client.get("/accounts/login/").content.decode()
    assert 'name="password"' in page and "oidc" not in page.lower()


@pytest.mark.django_db
def test_a_password_login_still_works_beside_oidc(client, oidc):
    User.objects.create_user("admin", password="break-glass-password", is_staff=True, is_superuser=True)
    assert client.login(username="admin", password="break-glass-password")


@pytest.mark.django_db
def test_identities_are_in_the_admin(client, oidc):
    user = login()
    admin_user = User.objects.create_superuser("root", "root@example.org", "pw")
    client.force_login(admin_user)
    page = client.get("/admin/tom_mma/oidcidentity/").content.decode()
    assert "f3a9-sub" in page and ISSUER in page and user.username in page


# --- the environment -------------------------------------------------------------------------


def test_settings_from_the_environment():
    assert environment.oidc_settings({"OIDC_RP_CLIENT_SECRET": "x"}) == {}
    s = environment.oidc_settings(
        {
            "OIDC_RP_CLIENT_ID": "tom",
            "OIDC_RP_CLIENT_SECRET": "s3cret",
            "OIDC_ISSUER": ISSUER,
            "OIDC_OP_TOKEN_ENDPOINT": f"{ISSUER}/token",
            "OIDC_RP_SCOPES": "openid profile",
            "OIDC_GROUPS_CLAIM": "isMemberOf",
            "OIDC_GROUP_MAP": "{not json",
            "OIDC_UNMAPPED_USERS": "refuse",
        }
    )
    assert s["OIDC_RP_CLIENT_SECRET"] == "s3cret" and s["OIDC_USE_PKCE"] is True and s["OIDC_TIMEOUT"] == 10
    assert s["OIDC_OP_TOKEN_ENDPOINT"] == f"{ISSUER}/token" and "OIDC_OP_USER_ENDPOINT" not in s
    assert s["AUTHENTICATION_BACKENDS"] == [BACKEND] and s["OIDC_RP_SCOPES"] == "openid profile"
    assert s["TOM_MMA"] == {
        "OIDC_ISSUER": ISSUER,
        "OIDC_GROUPS_CLAIM": "isMemberOf",
        "OIDC_UNMAPPED_USERS": "refuse",
        "OIDC_GROUP_MAP": "{not json",  # E066 says so
    }


# --- checks ----------------------------------------------------------------------------------


def _ids(messages) -> list[str]:
    return sorted(m.id for m in messages)


def test_no_oidc_checks_without_the_backend():
    with override_settings(AUTHENTICATION_BACKENDS=["django.contrib.auth.backends.ModelBackend"]):
        assert checks_oidc.check_oidc() == []


def test_a_fully_configured_backend_passes(oidc):
    assert checks_oidc.oidc_backends() == [BACKEND]
    assert checks_oidc.check_oidc() == [] and checks_oidc.check_oidc_settings() == []


@pytest.mark.parametrize("missing", ["OIDC_RP_CLIENT_ID", "OIDC_RP_CLIENT_SECRET"])
def test_e060_client_settings_missing(oidc, missing):
    setattr(oidc, missing, "")
    [message] = checks_oidc.check_oidc()
    assert message.id == "tom_mma.E060" and missing in message.msg


def test_e060_endpoints_needed_only_without_discovery(oidc, settings):
    settings.OIDC_OP_TOKEN_ENDPOINT = ""
    assert checks_oidc.check_oidc() == []  # discovered from the issuer
    settings.AUTHENTICATION_BACKENDS = [
        "mozilla_django_oidc.auth.OIDCAuthenticationBackend",
        *settings.AUTHENTICATION_BACKENDS[:-1],
    ]
    assert _ids(checks_oidc.check_oidc()) == ["tom_mma.E060"]  # mozilla-django-oidc's own backend discovers nothing


def test_e061_asymmetric_algorithm_needs_a_key_source(oidc, settings):
    settings.OIDC_RP_SIGN_ALGO = "RS256"
    assert checks_oidc.check_oidc() == []  # the JWKS is discovered
    tom_mma(settings, OIDC_ISSUER="")
    assert "tom_mma.E061" in _ids(checks_oidc.check_oidc())
    settings.OIDC_OP_JWKS_ENDPOINT = f"{ISSUER}/jwks"
    assert "tom_mma.E061" not in _ids(checks_oidc.check_oidc())


def test_e062_urls_not_included(oidc, settings):
    settings.ROOT_URLCONF = "tests.urls_without_alerts"
    assert _ids(checks_oidc.check_oidc()) == ["tom_mma.E062"]


def test_e062_urls_closed_by_a_locked_tom(oidc, settings):
    settings.AUTH_STRATEGY = "LOCKED"
    settings.OPEN_URLS = []
    [message] = checks_oidc.check_oidc()
    assert message.id == "tom_mma.E062" and "/oidc/callback/" in message.msg
    settings.OPEN_URLS = ["/oidc/*"]
    assert checks_oidc.check_oidc() == []


@pytest.mark.parametrize(
    "keys",
    [
        {"OIDC_USERNAME_CLAIM": ""},
        {"OIDC_GROUPS_CLAIM": None},
        {"OIDC_NEW_USER_GROUPS": "Public"},
        {"OIDC_NEW_USER_GROUPS": ["Public", 3]},
        {"OIDC_STAFF_SUBJECTS": "f3a9-sub"},
        {"OIDC_REQUIRE_VERIFIED_EMAIL": "no"},
        {"OIDC_ALLOW_STAFF_LOGIN": 1},
        {"OIDC_PROVIDER_NAME": None},
        {"OIDC_CLOCK_SKEW_S": -1},
        {"OIDC_DISCOVERY_TTL_S": "1h"},
        {"OIDC_UNMAPPED_USERS": "deny"},
    ],
)
def test_e063_bad_tom_mma_oidc_keys(keys):
    with override_settings(TOM_MMA=keys):
        assert _ids(checks_oidc.check_oidc_settings()) == ["tom_mma.E063"]


def test_e063_e066_e067_not_raised_for_the_defaults():
    with override_settings(TOM_MMA={}):
        assert checks_oidc.check_oidc_settings() == []


@pytest.mark.parametrize("issuer", ["", "idp.example.org", "ftp://idp.example.org", "https://idp/?a=1", 3])
def test_e064_an_issuer_url_is_needed(oidc, settings, issuer):
    tom_mma(settings, OIDC_ISSUER=issuer)
    settings.OIDC_OP_JWKS_ENDPOINT = f"{ISSUER}/jwks"
    assert "tom_mma.E064" in _ids(checks_oidc.check_oidc())


@pytest.mark.parametrize(("pkce", "method"), [(False, "S256"), (None, "S256"), (True, "plain")])
def test_e065_pkce_must_be_on(oidc, settings, pkce, method):
    settings.OIDC_USE_PKCE = pkce
    settings.OIDC_PKCE_CODE_CHALLENGE_METHOD = method
    assert _ids(checks_oidc.check_oidc()) == ["tom_mma.E065"]


@pytest.mark.parametrize(
    "group_map",
    [
        ["Observers"],
        {"Observers": "tom-observers"},
        {"Observers": ["re:("]},
        {"Observers": ["glob:"]},
        {"": ["x"]},
        {"Observers": [""]},
        {"Observers": [3]},
        "{not json",
    ],
)
def test_e066_bad_group_map(group_map):
    with override_settings(TOM_MMA={"OIDC_GROUP_MAP": group_map}):
        [message] = checks_oidc.check_oidc_settings()
    assert message.id == "tom_mma.E066"


def test_e066_refusing_unmapped_users_without_a_map_refuses_everybody():
    with override_settings(TOM_MMA={"OIDC_UNMAPPED_USERS": "refuse"}):
        assert _ids(checks_oidc.check_oidc_settings()) == ["tom_mma.E066"]
    with override_settings(TOM_MMA={"OIDC_UNMAPPED_USERS": "refuse", "OIDC_GROUP_MAP": MAP}):
        assert checks_oidc.check_oidc_settings() == []


def test_e067_allow_lists_while_staff_logins_are_refused():
    with override_settings(TOM_MMA={"OIDC_ALLOW_STAFF_LOGIN": False, "OIDC_SUPERUSER_SUBJECTS": ["s"]}):
        assert _ids(checks_oidc.check_oidc_settings()) == ["tom_mma.E067"]
    with override_settings(TOM_MMA={"OIDC_ALLOW_STAFF_LOGIN": False}):
        assert checks_oidc.check_oidc_settings() == []


def test_e068_mozilla_views_without_tom_mma_classes(oidc, settings):
    settings.ROOT_URLCONF = "tests.urls_oidc_mozilla"
    assert _ids(checks_oidc.check_oidc()) == ["tom_mma.E068"]


def test_e069_no_password_login_left(oidc, settings):
    settings.AUTHENTICATION_BACKENDS = ["guardian.backends.ObjectPermissionBackend", BACKEND]
    assert _ids(checks_oidc.check_oidc()) == ["tom_mma.E069"]
    settings.AUTHENTICATION_BACKENDS = ["allauth.account.auth_backends.AuthenticationBackend", BACKEND]
    assert checks_oidc.check_oidc() == []


def test_the_example_tom_turns_it_on_from_the_environment():
    # the example TOM's settings in a child process, with OIDC from the environment: checks pass
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "example_tom.settings",
        "OIDC_RP_CLIENT_ID": "tom",
        "OIDC_RP_CLIENT_SECRET": "s",
        "OIDC_ISSUER": ISSUER,
    }
    env.pop("TOM_MMA_TEST_CHILD", None)
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--fail-level", "WARNING"],
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
