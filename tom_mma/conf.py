"""Settings of ``tom_mma``: one dict, ``settings.TOM_MMA``, with these defaults.

Every key is listed in ``docs/settings.md`` with its default and the check that guards it.
"""

from __future__ import annotations

from tom_mma.appsettings import AppSettings

__all__ = ["DEFAULTS", "mma_settings"]

DEFAULTS: dict = {
    # Cone (arcsec) within which an incoming candidate is merged with an existing Target.
    "MERGE_RADIUS_ARCSEC": 2.0,
    # Gravitational-wave events: which kinds a TOM takes (real S..., mock M..., test T...).
    "ACCEPT_MOCK_EVENTS": False,
    "ACCEPT_TEST_EVENTS": False,
    # Groups that get view and change permissions on Targets created from alerts.
    "TARGET_GROUPS": ["Public"],
    # Observation rules (dotted paths of tom_mma.rules.ObservationRule subclasses) and their defaults.
    "OBSERVATION_RULES": ["tom_mma.rules.KilonovaScoreRule"],
    "OBSERVATION_SCORE_THRESHOLD": 0.5,
    "OBSERVATION_CREDIBLE_LEVEL": 0.9,
    "OBSERVATION_FACILITY": "Simulated",
    "OBSERVATION_TYPE": None,
    "OBSERVATION_PARAMETERS": {},
    # Hours from the trigger that a request's window lasts, when the facility's form asks for one (LCO's
    # start and end) and OBSERVATION_PARAMETERS gives none.
    "OBSERVATION_WINDOW_HOURS": 24.0,
    # False: the default rule requires the candidate inside the event's credible region; an alert that names
    # no GW event, or whose event has no sky map yet, waits (re-evaluated when the sky map arrives).
    # True: in those two cases the score alone decides.
    "OBSERVATION_SCORE_ONLY_WITHOUT_SKYMAP": False,
    # The LVK-notice gate of the default rule (tom_mma.followup_gates.lvk_gate), as the LVK user guide filters:
    # only significant alerts below a false-alarm rate (Hz; None: no limit; default one per month), of these
    # analysis groups, and for CBC events a neutron star (HasNS), matter left outside (HasRemnant; 0: not
    # checked) and a terrestrial probability at most this (1: not checked).
    "OBSERVATION_REQUIRE_SIGNIFICANT": True,
    "OBSERVATION_MAX_FAR_HZ": 1.0 / (30 * 86400.0),
    "OBSERVATION_GW_GROUPS": ["CBC"],
    "OBSERVATION_MIN_HAS_NS": 0.5,
    "OBSERVATION_MIN_HAS_REMNANT": 0.0,
    "OBSERVATION_MAX_P_TERRESTRIAL": 0.5,
    # OIDC login (tom_mma.auth.OIDCBackend, docs/oidc.md). The provider's issuer URL (its ID tokens' iss; the
    # endpoints not set as OIDC_OP_* are discovered from its /.well-known/openid-configuration, kept this many
    # seconds); the leeway (s) on the ID token's times.
    "OIDC_ISSUER": "",
    "OIDC_DISCOVERY_TTL_S": 3600.0,
    "OIDC_CLOCK_SKEW_S": 60.0,
    # Users are matched on (iss, sub) only. The claims their username, names and email come from, updated at
    # each login (the email only when the provider says it is verified, unless that is turned off).
    "OIDC_USERNAME_CLAIM": "preferred_username",
    "OIDC_FIRST_NAME_CLAIM": "given_name",
    "OIDC_LAST_NAME_CLAIM": "family_name",
    "OIDC_EMAIL_CLAIM": "email",
    "OIDC_REQUIRE_VERIFIED_EMAIL": True,
    # Groups: the claim (a name, or a dotted path such as realm_access.roles) and the map from TOM group name
    # to the claim values that put a user in it (exact, "glob:" fnmatch patterns, "re:" regular expressions).
    # The groups named in the map follow the claim at every login; no other group is touched. "refuse" turns
    # away a user whose claim maps to no group; "allow" lets them in.
    "OIDC_GROUPS_CLAIM": "groups",
    "OIDC_GROUP_MAP": {},
    "OIDC_UNMAPPED_USERS": "allow",
    # The groups a user joins when the login creates them (not managed afterwards).
    "OIDC_NEW_USER_GROUPS": ["Public"],
    # No login grants staff or superuser rights, except to these subject ids (taken back when one leaves the
    # list, unless an administrator gave the right); False refuses OIDC logins of staff and superusers (the
    # TOM's own second factor is not asked for there); the provider's name on the login page.
    "OIDC_STAFF_SUBJECTS": [],
    "OIDC_SUPERUSER_SUBJECTS": [],
    "OIDC_ALLOW_STAFF_LOGIN": True,
    "OIDC_PROVIDER_NAME": "single sign-on",
    # The multi-messenger linker (tom_mma.linking): windows in seconds (transient time minus GW time) by a
    # transient's source or messenger ("default" for the rest): GRBs -1..+5 s as LVK's RAVEN searches,
    # neutrino tracks +-500 s, supernova neutrinos +-10 s; and the window between two transients.
    "LINK_GW_WINDOWS_S": {
        "gamma": [-1.0, 5.0],
        "x-ray": [-600.0, 3600.0],
        "neutrino": [-500.0, 500.0],
        "snews": [-10.0, 10.0],
        "snews-gcn": [-10.0, 10.0],
        "superk-sn": [-10.0, 10.0],
        "default": [-1.0, 5.0],
    },
    "LINK_TRANSIENT_WINDOW_S": 10.0,
    # Optical alerts (ZTF, Rubin, Fink; tom_mma.optical, docs/optical.md). The cone (arcsec) that merges an alert
    # with a Target of another survey or a GW candidate when no object id matches; the groups its new Targets go
    # to (None: TARGET_GROUPS); how many alerts' cutouts each Target keeps (newest first; 0 none, None all);
    # whether an alert without its three cutouts is quarantined; the Rubin schema of schemaless records that
    # come without a Confluent frame; how long after a merger an optical candidate may be escalated (days).
    "OPTICAL_MATCH_RADIUS_ARCSEC": 1.5,
    "OPTICAL_TARGET_GROUPS": None,
    "OPTICAL_CUTOUTS_KEPT": 1,
    "OPTICAL_REQUIRE_CUTOUTS": False,
    "RUBIN_SCHEMA_VERSION": "latest",
    "OPTICAL_GW_WINDOW_DAYS": 14.0,
    # The most bytes any compressed part of a message may inflate to (gzipped packets, cutouts and sky maps, Avro
    # deflate blocks; tom_mma.inflate): past it the message is quarantined, having cost at most this much memory
    # plus 1 MiB. 512 MiB holds a flat nside-1024 sky map with its distance layers (403 MB); LVK's multi-order
    # maps are a few MB. Checked by tom_mma.E120.
    "MAX_INFLATED_BYTES": 512 * 1024 * 1024,
    # The most bytes an optical alert's image cutout may have, inflated when gzipped (a ZTF stamp is about 20 KB,
    # a Rubin cutout a few hundred KB): cutouts are kept as FITS files that the TOM opens later. Checked by
    # tom_mma.E121.
    "MAX_CUTOUT_BYTES": 16 * 1024 * 1024,
    # Fink's REST API, as the "Fink" data service (tom_mma.dataservices.fink, docs/dataservices.md) asks it: the
    # API's URL (Fink's public ZTF API; its Rubin API, https://api.lsst.fink-portal.org, speaks other columns and
    # is not read yet) and how long (s) to wait for it to connect and to answer. Checked by tom_mma.E130, E131.
    "FINK_API_URL": "https://api.ztf.fink-portal.org",
    "FINK_API_TIMEOUT_S": 30.0,
}

mma_settings = AppSettings("TOM_MMA", DEFAULTS)
