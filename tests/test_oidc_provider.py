"""OIDC login against a real OpenID Connect provider on loopback, in its own process.

The provider is django-oauth-toolkit (``tests/oidc_provider``): its own settings, a SQLite file and an RSA
key generated here in a temporary directory, a confidential client with PKCE required, users whose Django
groups it sends as the ``groups`` claim. It is started once per session with ``runserver --noreload`` on a
free port; the TOM runs under pytest-django's ``live_server`` and discovers the provider from its issuer.
Nothing is mocked: the TOM's backend fetches the discovery document, the JWKS, the token and the userinfo
from the provider.

- Without a browser (both legs): ID tokens minted with the provider's own key but a wrong audience, a wrong
  issuer, an expiry in the past, or signed by another key, are refused; a forged state, a replayed callback
  and a code used twice end on a page that says why.
- In headless Chromium (marked ``browser``, PostgreSQL leg): the whole authorization-code flow, the group
  mapping, a group removed at the provider and gone at the next login, logout.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlparse

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.contrib.auth import get_user_model

from tom_mma.auth import OIDCBackend
from tom_mma.models import OIDCIdentity
from tom_mma.oidc import provider as tom_provider
from tom_mma.oidc.errors import LoginError

ROOT = Path(__file__).resolve().parent.parent
BACKEND = "tom_mma.auth.OIDCBackend"
CLIENT_ID = "the-tom"
MAP = {"Observers": ["tom-observers"], "LVK": ["glob:lvk-*"]}
WAIT_S = 60.0  # generous: two cores shared by several sessions


def _wait_for(condition, what, timeout: float = WAIT_S):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what() if callable(what) else what}")
        time.sleep(0.1)


def _pem(key) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@dataclass
class Provider:
    """The running provider: its issuer URL, its signing key, and its setup command."""

    issuer: str
    key_pem: str
    env: dict

    def manage(self, *args: str) -> None:
        """Run ``python -m django <args>`` against the provider's settings and database."""
        subprocess.run([sys.executable, "-m", "django", *args], env=self.env, cwd=ROOT, check=True, timeout=120)

    def user(self, name: str, *groups: str) -> None:
        """A provider user (password ``pw-<name>``) with exactly these groups."""
        self.manage("provider", "user", name, f"pw-{name}", *groups)

    def kid(self) -> str:
        """The key id the provider publishes in its JWKS."""
        jwks = requests.get(f"{self.issuer}/.well-known/jwks.json", timeout=10).json()
        return jwks["keys"][0]["kid"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _discovered(issuer: str) -> bool:
    try:
        return requests.get(f"{issuer}/.well-known/openid-configuration", timeout=2).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture(scope="session")
def provider(tmp_path_factory) -> Iterator[Provider]:
    """django-oauth-toolkit's OIDC provider in its own process on a free loopback port."""
    directory = tmp_path_factory.mktemp("oidc_provider")
    key_pem = _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    (directory / "key.pem").write_text(key_pem)
    port = _free_port()
    issuer = f"http://127.0.0.1:{port}/o"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOM_MMA_TEST", "DJANGO_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="tests.oidc_provider.settings",
        PYTHONPATH=str(ROOT),
        OIDC_TEST_DIR=str(directory),
        OIDC_TEST_KEY=str(directory / "key.pem"),
        OIDC_TEST_ISSUER=issuer,
    )
    running = Provider(issuer, key_pem, env)
    running.manage("migrate", "--verbosity", "0")
    log = open(directory / "runserver.log", "w")  # noqa: SIM115  (closed below)
    process = subprocess.Popen(
        [sys.executable, "-m", "django", "runserver", "--noreload", f"127.0.0.1:{port}"],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for(lambda: process.poll() is not None or _discovered(issuer), "the provider to start")
        assert process.poll() is None, (directory / "runserver.log").read_text()[-3000:]
        yield running
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@pytest.fixture
def tom(provider, live_server, settings) -> str:
    """The TOM under live_server, configured for the provider as oidc_settings() would; returns its URL."""
    secret = f"secret-{uuid.uuid4().hex}"
    provider.manage("provider", "client", CLIENT_ID, secret, f"{live_server.url}/oidc/callback/")
    settings.AUTHENTICATION_BACKENDS = [*[b for b in settings.AUTHENTICATION_BACKENDS if b != BACKEND], BACKEND]
    settings.OIDC_RP_CLIENT_ID = CLIENT_ID
    settings.OIDC_RP_CLIENT_SECRET = secret
    settings.OIDC_RP_SIGN_ALGO = "RS256"
    settings.OIDC_RP_SCOPES = "openid email profile"
    settings.OIDC_USE_PKCE = True
    settings.OIDC_TIMEOUT = 10
    settings.ROOT_URLCONF = "tests.urls_oidc"
    settings.TOM_MMA = {
        **settings.TOM_MMA,
        "OIDC_ISSUER": provider.issuer,
        "OIDC_GROUP_MAP": MAP,
        "OIDC_PROVIDER_NAME": "Test IdP",
    }
    tom_provider.clear_discovery_cache()
    return live_server.url


# --- ID tokens minted with the provider's key ------------------------------------------------


def _token(provider: Provider, key_pem: str | None = None, **claims) -> str:
    now = int(time.time())
    payload = {"iss": provider.issuer, "aud": CLIENT_ID, "sub": "1", "iat": now, "exp": now + 300, "nonce": "n"}
    payload.update(claims)
    return jwt.encode(payload, key_pem or provider.key_pem, algorithm="RS256", headers={"kid": provider.kid()})


@pytest.mark.django_db
def test_id_tokens_are_checked_against_the_real_provider(provider, settings):
    settings.OIDC_RP_CLIENT_ID = CLIENT_ID
    settings.OIDC_RP_SIGN_ALGO = "RS256"
    settings.TOM_MMA = {**settings.TOM_MMA, "OIDC_ISSUER": provider.issuer}
    tom_provider.clear_discovery_cache()
    backend = OIDCBackend()
    # the JWKS is discovered and fetched from the provider: a token it signed is good
    assert backend.verify_token(_token(provider), nonce="n")["sub"] == "1"
    other_key = _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    bad = {
        "wrong audience": _token(provider, aud="another-client"),
        "wrong issuer": _token(provider, iss="http://127.0.0.1:1/o"),
        "expired": _token(provider, exp=int(time.time()) - 3600, iat=int(time.time()) - 7200),
        "forged (another key, the provider's kid)": _token(provider, key_pem=other_key),
        "another nonce": _token(provider, nonce="replayed"),
    }
    for why, token in bad.items():
        with pytest.raises(LoginError) as refused:
            backend.verify_token(token, nonce="n")
        assert refused.value.code == "invalid_token", why


# --- the flow with requests: forged state, replays -------------------------------------------


def _provider_leg(session: requests.Session, start: str, name: str) -> str:
    """Follow the TOM's redirect to the provider, log in there; return the callback URL it sends back."""
    authorize = session.get(start, allow_redirects=False).headers["Location"]
    assert "code_challenge=" in authorize and "code_challenge_method=S256" in authorize
    response = session.get(authorize, allow_redirects=False)
    if "/login/" in response.headers.get("Location", ""):
        login_url = urljoin(authorize, response.headers["Location"])
        page = session.get(login_url).text
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        next_url = parse_qs(urlparse(login_url).query)["next"][0]
        form = {"username": name, "password": f"pw-{name}", "csrfmiddlewaretoken": csrf, "next": next_url}
        response = session.post(login_url, data=form, allow_redirects=False)
        assert response.status_code == 302, response.text[:2000]
        response = session.get(urljoin(login_url, response.headers["Location"]), allow_redirects=False)
    assert response.status_code == 302, response.text[:2000]
    return response.headers["Location"]


def _code(page: requests.Response) -> str:
    assert "Traceback" not in page.text
    match = re.search(r'id="oidc-error" data-code="([a-z_]+)"', page.text)
    return match.group(1) if match else ""


@pytest.mark.django_db(transaction=True)
def test_forged_state_replays_and_a_used_code_are_refused_with_a_page(provider, tom, settings, caplog):
    caplog.set_level(logging.DEBUG)
    provider.user("carol", "tom-observers")
    session = requests.Session()
    callback = _provider_leg(session, f"{tom}/oidc/authenticate/", "carol")
    assert callback.startswith(f"{tom}/oidc/callback/?")
    query = parse_qs(urlparse(callback).query)
    forged = f"{tom}/oidc/callback/?code={query['code'][0]}&state=forged-{query['state'][0]}"
    response = session.get(forged, allow_redirects=False)
    assert response.status_code == 400 and _code(response) == "state_mismatch"
    assert not get_user_model().objects.filter(username="carol").exists()

    response = session.get(callback, allow_redirects=False)  # the real answer: logged in
    assert response.status_code == 302 and response.headers["Location"] == "/"
    carol = get_user_model().objects.get(username="carol")
    assert sorted(carol.groups.values_list("name", flat=True)) == ["Observers", "Public"]
    assert OIDCIdentity.objects.get(user=carol).issuer == provider.issuer

    replay = session.get(callback, allow_redirects=False)  # the same answer again: its state is spent
    assert _code(replay) == "state_mismatch"

    # a new login in this session, answered with the code already used: the provider refuses it
    second = _provider_leg(session, f"{tom}/oidc/authenticate/", "carol")
    state = parse_qs(urlparse(second).query)["state"][0]
    reused = session.get(f"{tom}/oidc/callback/?code={query['code'][0]}&state={state}", allow_redirects=False)
    assert _code(reused) == "expired" and "Try again" in reused.text

    # nothing secret reached the logs of the login (the web server's access log has the redirect URI's query, as
    # any web server's; the code there is single-use and bound to the PKCE verifier)
    logged = "\n".join(
        record.getMessage() for record in caplog.records if record.name.startswith(("tom_mma", "mozilla_django_oidc"))
    )
    assert "OIDC login" in logged
    for secret in (settings.OIDC_RP_CLIENT_SECRET, query["code"][0], query["state"][0], carol.email):
        assert secret not in logged


# --- the whole flow in a real browser --------------------------------------------------------


@pytest.fixture
def browser() -> Iterator:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


def _groups(name: str) -> list[str]:
    user = get_user_model().objects.get(username=name)
    return sorted(user.groups.values_list("name", flat=True))


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_login_groups_removal_and_logout_in_a_real_browser(provider, tom, browser, settings):
    from selenium.webdriver.common.by import By

    def find(css: str):
        return _wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, css), css)[0]

    provider.user("alice", "tom-observers", "lvk-cbc", "unrelated")
    browser.get(f"{tom}/accounts/login/?next=/targets/")
    link = find("#oidc-login")
    assert link.text == "Log in with Test IdP"
    link.click()
    # at the provider: its own login page
    find("#provider-login")
    assert browser.current_url.startswith(provider.issuer.removesuffix("/o"))
    browser.find_element(By.NAME, "username").send_keys("alice")
    browser.find_element(By.NAME, "password").send_keys("pw-alice")
    find("#provider-submit").click()
    # back in the TOM, logged in, on the page asked for
    _wait_for(lambda: browser.current_url.startswith(f"{tom}/targets/"), "the TOM's targets page")
    find("form[action='/accounts/logout/'], a[href*='logout']")
    assert _groups("alice") == ["LVK", "Observers", "Public"]
    alice = get_user_model().objects.get(username="alice")
    assert not alice.is_staff and not alice.is_superuser

    # logout: the TOM's session ends, and the provider's (RP-initiated logout), then back in the TOM
    _logout(browser, find)
    _wait_for(lambda: browser.current_url.startswith(tom), lambda: f"back in the TOM, at {browser.current_url}")
    browser.get(f"{tom}/accounts/login/")
    find("#oidc-login")

    # a group removed at the provider is gone at the next login; the provider asks for the password again,
    # since its session ended with the TOM's
    provider.user("alice", "tom-observers", "unrelated")
    find("#oidc-login").click()
    find("#provider-login")
    browser.find_element(By.NAME, "username").send_keys("alice")
    browser.find_element(By.NAME, "password").send_keys("pw-alice")
    find("#provider-submit").click()
    _wait_for(
        lambda: browser.current_url.rstrip("/") == tom,
        lambda: f"the TOM's home page, at {browser.current_url}: {browser.page_source[:1500]}",
    )
    find("form[action='/accounts/logout/'], a[href*='logout']")
    assert _groups("alice") == ["Observers", "Public"]
    assert get_user_model().objects.filter(oidc_identities__subject__isnull=False).count() == 1  # not duplicated
    _logout(browser, find)

    # out of every mapped group, in a TOM that refuses such users: a page in the TOM's look says why
    settings.TOM_MMA = {**settings.TOM_MMA, "OIDC_UNMAPPED_USERS": "refuse"}
    provider.user("alice", "unrelated")
    browser.get(f"{tom}/accounts/login/")
    find("#oidc-login").click()
    find("#provider-login")  # logged out of the provider too: the password again
    browser.find_element(By.NAME, "username").send_keys("alice")
    browser.find_element(By.NAME, "password").send_keys("pw-alice")
    find("#provider-submit").click()
    error = find("#oidc-error")
    assert error.get_attribute("data-code") == "no_mapped_group"
    assert "Your account has no access to this TOM" in error.text and "Test IdP" in error.text
    assert browser.find_elements(By.CSS_SELECTOR, "nav.navbar")  # tomtoolkit's base template
    assert not browser.find_elements(By.CSS_SELECTOR, "form[action='/accounts/logout/']")  # not logged in
    assert _groups("alice") == ["Observers", "Public"]  # a refused login changes nothing


def _logout(browser, find) -> None:
    from selenium.webdriver.common.by import By

    # tomtoolkit's navbar: a POST form to allauth's logout (in a collapsed menu: submitted by script)
    browser.execute_script("arguments[0].submit()", find("form[action='/accounts/logout/']"))
    _wait_for(lambda: not browser.find_elements(By.CSS_SELECTOR, "form[action='/accounts/logout/']"), "logged out")
