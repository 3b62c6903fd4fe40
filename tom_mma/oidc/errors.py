"""Why an OIDC login failed, in words a person can act on (the page ``tom_mma/oidc/error.html`` shows them)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["REASONS", "LoginError", "Reason"]


@dataclass(frozen=True)
class Reason:
    """What the error page says: a title, what happened, what to do; and the HTTP status.

    A refusal is 401, not 403: tomtoolkit's ``Raise403Middleware`` turns every 403 page into a redirect to
    the login page with a generic "You do not have permission" message, which would hide why.
    """

    title: str
    happened: str
    todo: str
    status: int = 401
    retry: bool = True


REASONS: dict[str, Reason] = {
    "state_mismatch": Reason(
        "This login does not match one started here",
        "The answer from {provider} belongs to a login this browser did not start, or one that has already "
        "finished. This happens when a login was started in several tabs or windows, after the back button, "
        "after a long wait, or when the TOM runs on several servers that do not share their sessions.",
        "Close the other tabs that are logging in and try again. If it happens every time, tell the TOM's "
        "administrator: every server behind the load balancer needs the same SECRET_KEY and a shared session "
        "store (the database or a shared cache), and the session cookie must reach the TOM.",
        status=400,
    ),
    "refused": Reason(
        "The login was refused at {provider}",
        "{provider} did not let this TOM see your account: the request was declined there.",
        "Try again and accept the request. If {provider} refuses you, ask its administrator for access to this TOM.",
    ),
    "provider_error": Reason(
        "{provider} could not log you in",
        "{provider} sent back an error instead of your login.",
        "Try again; if it keeps failing, send the error below to the TOM's administrator.",
        status=400,
    ),
    "expired": Reason(
        "The login expired",
        "{provider} no longer accepts this login: it took too long, or its page was reloaded or opened twice.",
        "Try again.",
        status=400,
    ),
    "invalid_token": Reason(
        "{provider}'s answer could not be verified",
        "The token {provider} sent is not one this TOM can trust (its signature, issuer, audience or time is "
        "wrong), so nobody was logged in.",
        "Try again. If it keeps failing, tell the TOM's administrator: the TOM's OIDC settings (issuer, client "
        "id, signing algorithm) or its clock may not agree with {provider}.",
        status=400,
    ),
    "provider_unavailable": Reason(
        "{provider} cannot be reached",
        "The TOM could not talk to {provider}, or {provider} does not describe itself as configured.",
        "Try again in a few minutes. Administrators can still log in with their TOM password.",
        status=503,
    ),
    "misconfigured": Reason(
        "Logging in through {provider} is not set up correctly",
        "The TOM's OIDC settings are incomplete or malformed (its administrator can see which in "
        "'manage.py check'), so nobody can log in this way for now.",
        "Tell the TOM's administrator. Administrators can still log in with their TOM password.",
        status=503,
    ),
    "no_mapped_group": Reason(
        "Your account has no access to this TOM",
        "You logged in at {provider}, but your account there is in none of the groups this TOM admits.",
        "Ask the TOM's administrator, or the administrator of your groups at {provider}, to add you to one.",
        retry=False,
    ),
    "no_account": Reason(
        "You have no account in this TOM",
        "You logged in at {provider}, but this TOM only admits people who already have an account here.",
        "Ask the TOM's administrator for an account.",
        retry=False,
    ),
    "inactive": Reason(
        "Your account is not active",
        "Your TOM account is waiting for an administrator's approval, or has been disabled.",
        "Ask the TOM's administrator to activate it.",
        retry=False,
    ),
    "staff_refused": Reason(
        "Staff accounts log in with their password",
        "This TOM does not let staff and administrator accounts log in through {provider}.",
        "Log in with your TOM username and password (and second factor).",
        retry=False,
    ),
}


class LoginError(Exception):
    """An OIDC login that stops with a page saying why.

    Parameters
    ----------
    code : str
        A key of :data:`REASONS`.
    detail : str
        Extra text for the page (the provider's own error code and description): untrusted, shown escaped.
    """

    def __init__(self, code: str, detail: str = ""):
        if code not in REASONS:
            raise ValueError(f"unknown OIDC login error {code!r}")
        super().__init__(code)
        self.code = code
        self.detail = detail

    @property
    def reason(self) -> Reason:
        """The words of the error page."""
        return REASONS[self.code]
