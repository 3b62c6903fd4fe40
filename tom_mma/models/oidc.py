"""Who a TOM user is at the identity provider: the provider's stable subject id, kept per issuer.

The logic lives in :mod:`tom_mma.oidc.accounts`; this model only holds the state.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

__all__ = ["OIDCIdentity"]


class OIDCIdentity(models.Model):
    """One account at one OpenID Connect provider (``iss``, ``sub``), linked to one TOM user.

    ``sub`` is the only claim a provider promises never to reassign (OpenID Connect Core 1.0, section 2);
    an email address or username can change hands. ``staff_granted`` and ``superuser_granted`` say that the
    rights came from the allow-lists (``TOM_MMA['OIDC_STAFF_SUBJECTS']``, ``OIDC_SUPERUSER_SUBJECTS``), so
    that they are taken back when the subject leaves the list, and never rights an administrator gave.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="oidc_identities")
    issuer = models.CharField(max_length=255, help_text="the provider's issuer URL (the ID token's iss)")
    subject = models.CharField(max_length=255, help_text="the provider's subject id (the ID token's sub)")
    created = models.DateTimeField(auto_now_add=True)
    last_login = models.DateTimeField(null=True, blank=True)
    staff_granted = models.BooleanField(default=False, help_text="is_staff was given by OIDC_STAFF_SUBJECTS")
    superuser_granted = models.BooleanField(
        default=False, help_text="is_superuser was given by OIDC_SUPERUSER_SUBJECTS"
    )

    class Meta:
        verbose_name = "OIDC identity"
        verbose_name_plural = "OIDC identities"
        constraints = [models.UniqueConstraint(fields=["issuer", "subject"], name="tom_mma_oidc_identity_unique")]

    def __str__(self) -> str:
        return f"{self.subject} at {self.issuer}"
