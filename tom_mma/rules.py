"""Observation rules: when a derived alert should make the TOM request an observation.

A rule is a subclass of :class:`ObservationRule` named by dotted path in ``TOM_MMA['OBSERVATION_RULES']``
(default: :class:`KilonovaScoreRule`). For each classification the TOM ingests, every rule is
evaluated; when one holds, a :class:`~tom_mma.models.ObservationTrigger` row is claimed for
(Target, rule) inside the ingest transaction. The table's unique constraint makes that claim succeed
once per candidate and rule, ever: a replayed stream or a later alert of the same candidate claims
nothing. After the ingest commits, the ``observation_trigger_claimed`` signal sends the trigger to a Celery
task (:mod:`tom_mma.receivers`), never run in the stream's thread, where
:func:`tom_mma.triggers.submit_trigger` sends the request through the TOM's own facility interface
(``TOM_FACILITY_CLASSES``) and records the ``ObservationRecord``; see :mod:`tom_mma.triggers` for retries.

The default rule holds when the kilonova score is at least ``TOM_MMA['OBSERVATION_SCORE_THRESHOLD']``
(default 0.5) and the candidate lies inside the GW event's ``TOM_MMA['OBSERVATION_CREDIBLE_LEVEL']``
(default 0.9) credible region. An alert that names no GW event, or whose event has no sky map yet
(``tom_mma.gw.ranking.credible_level`` returning ``None``), does not fire the rule, unless
``TOM_MMA['OBSERVATION_SCORE_ONLY_WITHOUT_SKYMAP']`` lets the score alone decide in those cases. When an
event's sky map arrives or changes (the ``tom_mma.signals.gw_skymap_updated`` signal, in a task),
:func:`evaluate_rules_for_event` evaluates the rules again for the Targets of the alerts that named it: a
candidate that now lies inside the region gets its request then (still once per candidate and rule).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction
from django.db.models import Count
from django.utils import timezone
from django.utils.module_loading import import_string
from tom_observations.facility import get_service_class
from tom_observations.models import ObservationRecord

from tom_mma import signals
from tom_mma.conf import mma_settings
from tom_mma.followup_gates import classifier_verdict, lvk_gate_for_event
from tom_mma.gw.ranking import credible_level
from tom_mma.models import GWEvent, ObservationTrigger
from tom_mma.schemas.derived_alert import DerivedAlert
from tom_mma.targets import assign_observation_permissions

__all__ = [
    "RuleDecision",
    "ObservationRule",
    "KilonovaScoreRule",
    "FacilityRejected",
    "is_transient_facility_error",
    "load_rules",
    "get_rule",
    "evaluate_rules",
    "evaluate_rules_for_event",
]

logger = logging.getLogger(__name__)


def setting(key: str) -> Any:
    """A ``TOM_MMA`` key this module reads, with its default (:data:`tom_mma.conf.DEFAULTS`)."""
    return getattr(mma_settings, key)


def is_transient_facility_error(exc: BaseException) -> bool:
    """Whether a facility's error says "try again later": no connection, a timeout, an HTTP 5xx.

    ``requests``' errors are ``OSError`` subclasses; an ``HTTPError`` carries the response, whose status
    separates a server's failure (5xx, retried) from a refusal (4xx, not).
    """
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if status is not None:
        return status >= 500 or status == 429
    return isinstance(exc, OSError | TimeoutError)


class FacilityRejected(Exception):
    """The facility's form or validation rejected the request; the message says why."""


@dataclass(frozen=True)
class RuleDecision:
    """What a rule concluded about one alert.

    Parameters
    ----------
    holds : bool
        True if the rule wants an observation.
    reason : str
        Why (kept on the trigger and logged).
    details : mapping
        What the rule saw, e.g. ``{"score": 0.8, "threshold": 0.5, "region": "inside"}``.
    """

    holds: bool
    reason: str
    details: Mapping[str, Any] = field(default_factory=dict)


class ObservationRule:
    """Base class of observation rules (``TOM_MMA['OBSERVATION_RULES']``).

    Subclasses set :attr:`name` and implement :meth:`evaluate`; they may override
    :meth:`facility_name`, :meth:`observation_type` and :meth:`observation_parameters` to send a
    different request. The request goes through the facility's own form and validation, as a request
    made in the TOM's pages would.
    """

    #: Stable identifier, stored with each trigger (renaming it re-arms the rule for every Target).
    name: ClassVar[str] = ""

    def evaluate(self, alert: DerivedAlert, target: Any) -> RuleDecision:
        """Decide whether ``alert`` (merged into ``target``) warrants an observation."""
        raise NotImplementedError

    def facility_name(self) -> str:
        """The facility's name, as in ``TOM_FACILITY_CLASSES`` (``TOM_MMA['OBSERVATION_FACILITY']``)."""
        return setting("OBSERVATION_FACILITY")

    def observation_type(self, facility: Any) -> str:
        """The facility's observation type (``TOM_MMA['OBSERVATION_TYPE']``, else its first form)."""
        configured = setting("OBSERVATION_TYPE")
        if configured:
            return configured
        return next(iter(facility.get_form_classes_for_display()))

    def observation_parameters(self, target: Any, trigger: ObservationTrigger) -> dict[str, Any]:
        """Form data for the request, besides ``facility``, ``target_id`` and ``observation_type``.

        Default: a ``name`` naming the rule and the Target, then ``TOM_MMA['OBSERVATION_PARAMETERS']``.
        Fields not given take the initial value of the facility form's field, and a window the form asks for
        is :meth:`observation_window`.
        """
        parameters = {"name": f"tom-mma {self.name}: {target.name}"}
        parameters.update(setting("OBSERVATION_PARAMETERS") or {})
        return parameters

    def observation_window(self, facility: Any) -> dict[str, str]:
        """The request's time window, used when the facility's form asks for one and the parameters give none.

        From now, ``TOM_MMA['OBSERVATION_WINDOW_HOURS']`` long, under the facility's start and end keywords
        (``get_start_end_keywords()``, e.g. LCO's ``start`` and ``end``), in the TOM's time zone as its own
        forms expect.
        """
        start = timezone.localtime(timezone.now()).replace(microsecond=0, tzinfo=None)
        end = start + dt.timedelta(hours=float(setting("OBSERVATION_WINDOW_HOURS")))
        start_key, end_key = facility.get_start_end_keywords()
        return {start_key: start.isoformat(), end_key: end.isoformat()}

    def request_observation(self, trigger: ObservationTrigger) -> list[ObservationRecord]:
        """Submit the request for ``trigger`` through the facility interface; create its records.

        Raises
        ------
        FacilityRejected
            If the facility's form or ``validate_observation`` rejects the request.
        """
        target = trigger.target
        facility = get_service_class(self.facility_name())()
        observation_type = self.observation_type(facility)
        form_class = facility.get_form_classes_for_display()[observation_type]
        # the form's own defaults, then the rule's parameters (a bound form ignores field initials); read from
        # an unbound instance, since forms such as LCO's add most of their fields in __init__
        fields = form_class(facility=facility).fields
        defaults = {
            key: form_field.initial
            for key, form_field in fields.items()
            if form_field.initial is not None and not callable(form_field.initial)
        }
        window = {key: value for key, value in self.observation_window(facility).items() if key in fields}
        data = {
            **defaults,
            **window,
            **self.observation_parameters(target, trigger),
            "facility": facility.name,
            "target_id": target.pk,
            "observation_type": observation_type,
        }
        form = form_class(data=data, facility=facility)
        try:
            valid = form.is_valid()
        except Exception as exc:
            # tomtoolkit's OCS/LCO forms validate at the facility even when their own fields are invalid, and
            # then fail on a missing field (KeyError): those fields' errors are the reason
            if is_transient_facility_error(exc) or not form.errors:
                raise
            valid = False
        if not valid:
            raise FacilityRejected(f"the {facility.name} form rejected the request: {form.errors.as_json()}")
        payload = form.observation_payload()
        errors = _validation_errors(facility.validate_observation(payload))
        if errors:
            raise FacilityRejected(f"{facility.name} rejected the request: {errors}")
        observation_ids = facility.submit_observation(payload)
        observations = []
        for observation_id in observation_ids:
            observation = ObservationRecord.objects.create(
                target=target,
                user=None,
                facility=facility.name,
                parameters=form.serialize_parameters(),
                observation_id=observation_id,
            )
            assign_observation_permissions(observation)
            _refresh_status(facility, observation)
            observations.append(observation)
        return observations


def _refresh_status(facility: Any, observation: ObservationRecord) -> None:
    """Give a new request the facility's status at once (the TOM leaves it blank until ``updatestatus``).

    A facility that cannot tell now is no reason to lose the request: it keeps a blank status,
    as the TOM's own form leaves it, and the next ``updatestatus`` fills it in.
    """
    try:
        facility.update_observation_status(observation.observation_id)
    except Exception:  # noqa: BLE001 - facilities raise anything (HTTP errors, KeyError, ...)
        logger.warning("%s could not tell the status of new request %s yet", facility.name, observation.observation_id)


def _validation_errors(result: Any) -> Any:
    """The errors in what ``validate_observation`` returned (facilities differ: a dict, a list...)."""
    if isinstance(result, Mapping):
        return result.get("errors") or None
    if isinstance(result, list | tuple):
        return list(result) or None
    return None  # True / None: nothing to report


class KilonovaScoreRule(ObservationRule):
    """Score at least the threshold, and inside the GW event's credible region.

    Without a GW event or its sky map the rule does not hold (the trigger is not claimed, so the rule is
    evaluated again when the sky map arrives), unless ``TOM_MMA['OBSERVATION_SCORE_ONLY_WITHOUT_SKYMAP']``
    lets the score alone decide.
    """

    name = "kilonova-score"

    def credible_level(self, superevent_id: str, ra: float, dec: float) -> float | None:
        """The smallest credible level of the event's sky map whose region contains (ra, dec).

        ``None`` while unknown: the event unknown or retracted, or no sky map yet.
        """
        level = credible_level(superevent_id, ra, dec)
        return None if level is None else float(level)

    def evaluate(self, alert: DerivedAlert, target: Any) -> RuleDecision:
        """Hold for a score at the threshold or above, inside the region (see the class docstring)."""
        threshold = float(setting("OBSERVATION_SCORE_THRESHOLD"))
        score = alert.kilonova_score
        details: dict[str, Any] = {"score": score, "threshold": threshold, "gw_event": alert.gw_event}
        verdict = classifier_verdict(score, alert.features, threshold)  # the classifier's operating point
        details.update(verdict.details)
        if not verdict.passes:
            return RuleDecision(False, verdict.reason, details)
        score_only = bool(setting("OBSERVATION_SCORE_ONLY_WITHOUT_SKYMAP"))
        if not alert.gw_event:
            details["region"] = "no event"
            if score_only:
                return RuleDecision(True, f"score {score:.3f} >= {threshold:.3f}; no GW event named", details)
            return RuleDecision(False, "no GW event named: the candidate must lie inside its credible region", details)
        level_limit = float(setting("OBSERVATION_CREDIBLE_LEVEL"))
        level = self.credible_level(alert.gw_event, alert.candidate.ra, alert.candidate.dec)
        details["credible_level_limit"] = level_limit
        if level is None:
            details["region"] = "unknown"
            if score_only:
                return RuleDecision(
                    True,
                    f"score {score:.3f} >= {threshold:.3f}; sky map of {alert.gw_event} unknown, score alone decides",
                    details,
                )
            return RuleDecision(
                False,
                f"sky map of {alert.gw_event} not known yet: evaluated again when it arrives",
                details,
            )
        details["credible_level"] = level
        if level <= level_limit:
            details["region"] = "inside"
            gate = lvk_gate_for_event(alert.gw_event)  # what kind of event: significant, FAR, CBC, HasNS...
            details["lvk_gate"] = {**gate.details, "passes": gate.passes, "reason": gate.reason}
            if not gate.passes:
                return RuleDecision(False, f"{alert.gw_event} not followed up: {gate.reason}", details)
            return RuleDecision(
                True,
                f"{verdict.reason}; "
                f"inside the {level_limit:.0%} region of {alert.gw_event} (level {level:.3f}); {gate.reason}",
                details,
            )
        details["region"] = "outside"
        return RuleDecision(
            False, f"outside the {level_limit:.0%} region of {alert.gw_event} (level {level:.3f})", details
        )


def load_rules() -> list[ObservationRule]:
    """Instances of the rules in ``TOM_MMA['OBSERVATION_RULES']``.

    Raises
    ------
    ImproperlyConfigured
        If a path does not import, is not an ``ObservationRule`` subclass, or two rules share a name.
    """
    rules: list[ObservationRule] = []
    for path in setting("OBSERVATION_RULES") or ():
        try:
            cls = import_string(path)
        except ImportError as exc:
            raise ImproperlyConfigured(f"TOM_MMA['OBSERVATION_RULES']: cannot import {path!r}: {exc}")
        if not (isinstance(cls, type) and issubclass(cls, ObservationRule)):
            raise ImproperlyConfigured(
                f"TOM_MMA['OBSERVATION_RULES']: {path!r} is not a subclass of tom_mma.rules.ObservationRule"
            )
        if not cls.name:
            raise ImproperlyConfigured(f"TOM_MMA['OBSERVATION_RULES']: {path!r} has no name")
        if any(rule.name == cls.name for rule in rules):
            raise ImproperlyConfigured(f"TOM_MMA['OBSERVATION_RULES']: two rules are named {cls.name!r}")
        rules.append(cls())
    return rules


def get_rule(name: str) -> ObservationRule:
    """The configured rule called ``name``; ``LookupError`` if none is."""
    for rule in load_rules():
        if rule.name == name:
            return rule
    raise LookupError(f"no rule named {name!r} in TOM_MMA['OBSERVATION_RULES']")


def evaluate_rules(alert: DerivedAlert, alert_record: Any, target: Any) -> list[ObservationTrigger]:
    """Evaluate every rule for an ingested classification; claim a trigger for each that holds.

    Must run inside the ingest transaction: each newly claimed trigger is a ``pending`` row of that
    transaction, and the ``observation_trigger_claimed`` signal is sent after its commit (a task submits it,
    never the caller's thread), so that no facility is called for an ingest that rolls back, and no network
    call holds the transaction open.

    Returns
    -------
    list of ObservationTrigger
        The triggers claimed now (an empty list on a replay, or when the rule fired before).
    """
    claimed = []
    for rule in load_rules():
        decision = rule.evaluate(alert, target)
        if not decision.holds:
            logger.info("alert %s: rule %s does not hold: %s", alert.alert_id, rule.name, decision.reason)
            continue
        try:
            with transaction.atomic():
                trigger = ObservationTrigger.objects.create(
                    target=target,
                    rule=rule.name,
                    alert=alert_record,
                    facility=rule.facility_name(),
                    reason=decision.reason,
                    details=dict(decision.details),
                )
        except IntegrityError:
            logger.info(
                "alert %s: rule %s holds (%s) but already requested an observation of target %s",
                alert.alert_id,
                rule.name,
                decision.reason,
                target.pk,
            )
            continue
        logger.info(
            "alert %s: rule %s holds (%s); observation of target %s requested (trigger %s)",
            alert.alert_id,
            rule.name,
            decision.reason,
            target.pk,
            trigger.pk,
        )
        trigger_id = trigger.pk
        transaction.on_commit(
            lambda trigger_id=trigger_id: signals.observation_trigger_claimed.send_robust(
                sender=ObservationTrigger, trigger_id=trigger_id
            ),
            robust=True,
        )
        claimed.append(trigger)
    return claimed


def evaluate_rules_for_event(superevent_id: str) -> list[ObservationTrigger]:
    """Evaluate the rules again for every Target with a classification alert naming ``superevent_id``.

    Called (in a task) when the event's sky map arrives or changes: a candidate that did
    not qualify while the map was unknown may now lie inside the credible region. Each Target's alerts
    are evaluated in the order they were made until a rule claims its trigger, as they would have been had
    the map been there; a Target that already has a trigger for every rule is skipped. Retracted alerts
    evaluate nothing. Each Target is handled in its own transaction; requests are sent after its commit.

    Returns
    -------
    list of ObservationTrigger
        The triggers claimed now (none on a replay of the same sky map).
    """
    from tom_mma.models import DerivedAlertRecord

    event = GWEvent.objects.filter(superevent_id=superevent_id).only("skymap").first()
    rules = {rule.name for rule in load_rules()}
    done = set(
        ObservationTrigger.objects.filter(rule__in=rules)
        .values("target_id")
        .annotate(n=Count("rule", distinct=True))
        .filter(n=len(rules))
        .values_list("target_id", flat=True)
    )
    alert_records = (
        DerivedAlertRecord.objects.filter(
            kind=DerivedAlertRecord.Kind.CLASSIFICATION, gw_event=superevent_id, retracted=False, target__isnull=False
        )
        .exclude(target_id__in=done)
        .select_related("target")
        .order_by("target_id", "latest_point_mjd", "received", "pk")
    )
    by_target: dict[int, list[Any]] = {}
    for alert_record in alert_records:
        by_target.setdefault(alert_record.target_id, []).append(alert_record)
    claimed: list[ObservationTrigger] = []
    for alerts in by_target.values():
        with transaction.atomic():
            for alert_record in alerts:
                triggers = evaluate_rules(DerivedAlert.from_dict(alert_record.raw), alert_record, alert_record.target)
                claimed.extend(triggers)
                if triggers:
                    break
    if event is not None:
        GWEvent.objects.filter(pk=event.pk, skymap_id=event.skymap_id).update(rules_skymap_id=event.skymap_id)
    logger.info(
        "%s: rules evaluated again for %d target(s) after its sky map changed; %d trigger(s) claimed",
        superevent_id,
        len(by_target),
        len(claimed),
    )
    return claimed
