"""Seeded generators of synthetic light curves: kilonovae and the transients that fool kilonova searches.

Everything here is deterministic given a :class:`numpy.random.Generator`. The physics is deliberately
simple and documented in ``docs/classifier.md``; every model gives AB magnitudes in the canonical bands
``u g r i z y J H K`` (:data:`~tom_mma_broker.classifier.features.BANDS`).

**Kilonovae** (positives), two published model families, half each:

- ``"HN20"``: the Hotokezaka & Nakar (2020, ApJ 891, 152) heating/diffusion model of a power-law density
  profile, from the PyPI package ``kilonova-heating-rate`` (a blackbody of the effective temperature it
  returns). Parameter ranges as in that paper and Setzer et al. (2023): ejecta 0.01-0.1 Msun, inner
  velocity 0.05-0.15 c, outer 0.2-0.4 c, density index 3-4.5, two opacity zones (inner lanthanide-rich
  3-10 cm^2/g, outer lanthanide-poor 0.1-1 cm^2/g).
- ``"2comp"``: two Arnett-like components (blue and red) of r-process heating (Korobkin et al. 2012)
  times a thermalisation efficiency (Barnes et al. 2016), each a blackbody photosphere ``R = v t`` with a
  temperature floor (Villar et al. 2017).

Both at 40-300 Mpc (uniform in log distance), observed from 0-3 days after the merger.

**Contaminants** (negatives, :data:`NEGATIVE_KINDS`): SNe Ia, II, Ibc, Ibn/Icn and superluminous, FBOTs,
GRB afterglows on and off axis, shock-cooling supernovae, M-dwarf flares, dwarf novae and AGN flickering.

Every light curve is then observed by :func:`~tom_mma_broker.classifier.surveys.observe` (re-exported here)
with a random survey (:data:`~tom_mma_broker.classifier.surveys.SURVEYS`): ZTF-like, Rubin-like, or a
heterogeneous multi-telescope follow-up after a survey discovery, with its cadence, bands, depths, photometric
noise and upper limits, the same for every class so that the cadence teaches nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .features import BAND_WAVELENGTH_AA, GWContext, Observation
from .surveys import SURVEYS, MagModel, observe

__all__ = [
    "KILONOVA",
    "NEGATIVE_KINDS",
    "SURVEYS",
    "Example",
    "kilonova_model",
    "make_example",
    "make_light_curve",
    "negative_model",
    "observe",
]


KILONOVA = "kilonova"
NEGATIVE_KINDS = (
    "SN Ia",
    "SN Ibc",
    "SN II",
    "SN Ibn/Icn",
    "SLSN",
    "FBOT",
    "afterglow",
    "off-axis afterglow",
    "shock-cooling SN",
    "M-dwarf flare",
    "dwarf nova",
    "AGN",
)
"""The kinds of synthetic negatives, drawn in equal numbers."""


# physical constants (cgs)
_C = 2.99792458e10
_H = 6.62607015e-27
_K = 1.380649e-16
_SIGMA_SB = 5.670374e-5
_MSUN = 1.98841e33
_MPC = 3.0857e24
_DAY = 86400.0


@dataclass(frozen=True)
class Example:
    """One synthetic light curve with what the simulation knows about it.

    Parameters
    ----------
    kind
        :data:`KILONOVA` or one of :data:`NEGATIVE_KINDS`.
    observations
        The observed points (detections and upper limits), sorted by time.
    context
        A GW context: for a kilonova its own merger and distance; for a contaminant an unrelated event
        whose region it lies in (merger 0-3 days before its first detection, distance drawn as for
        kilonovae). The credible level is uniform in 0-0.9 for both.
    survey
        One of :data:`SURVEYS`.
    """

    kind: str
    observations: list[Observation]
    context: GWContext
    survey: str


def _planck_nu(wavelength_aa: float, temperature: np.ndarray) -> np.ndarray:
    """Planck function B_nu (erg/s/cm^2/Hz/sr) at a wavelength, for an array of temperatures."""
    nu = _C / (wavelength_aa * 1e-8)
    x = np.minimum(_H * nu / (_K * np.maximum(temperature, 1.0)), 700.0)
    return 2 * _H * nu**3 / _C**2 / np.expm1(x)


def _ab_mag(flux_nu: np.ndarray) -> np.ndarray:
    """AB magnitude of a flux density (erg/s/cm^2/Hz); inf for no flux."""
    with np.errstate(divide="ignore"):
        return np.where(flux_nu > 0, -2.5 * np.log10(np.maximum(flux_nu, 1e-300)) - 48.6, np.inf)


# ---------------------------------------------------------------------------------------------- kilonova


def _arnett_luminosity(t_days: np.ndarray, mass_g: float, velocity_c: float, opacity: float) -> np.ndarray:
    """Bolometric luminosity (erg/s) of radioactively heated ejecta, Arnett-like diffusion."""
    beta = 13.8  # geometric factor of the diffusion time (Arnett 1982; Villar et al. 2017)
    t_diff = math.sqrt(2 * opacity * mass_g / (beta * velocity_c * _C * _C)) / _DAY  # days
    a, b, d = 1.3, 0.2, 1.1
    tt = np.maximum(t_days, 1e-3)
    rate = 4e18 * (0.5 - np.arctan((tt * _DAY - 1.3) / 0.11) / math.pi) ** 1.3
    thermalisation = 0.36 * (np.exp(-a * tt) + np.log1p(2 * b * tt**d) / (2 * b * tt**d))
    heating = mass_g * rate * thermalisation
    # L(t) = exp(-x^2) int_0^x 2 H(x') x' exp(x'^2) dx' with x = t / t_diff, stepped exactly for a heating
    # rate constant over each interval of the grid (stable however narrow the kernel is at late times)
    x2 = (tt / t_diff) ** 2
    lum = np.empty(len(tt))
    previous, x2_prev = 0.0, 0.0
    for n in range(len(tt)):
        decay = math.exp(min(x2_prev - x2[n], 0.0))
        h = heating[n] if n == 0 else 0.5 * (heating[n] + heating[n - 1])
        previous = previous * decay + h * (1.0 - decay)
        lum[n], x2_prev = previous, x2[n]
    return lum


_KN_GRID = np.geomspace(0.02, 40.0, 120)


def _two_component(rng: np.random.Generator) -> tuple[list[tuple[np.ndarray, np.ndarray]], dict[str, float]]:
    total_mass = rng.uniform(0.01, 0.1)
    blue_fraction = rng.uniform(0.2, 0.8)
    params = {
        "m_blue": total_mass * blue_fraction,
        "m_red": total_mass * (1 - blue_fraction),
        "v_blue": rng.uniform(0.2, 0.3),
        "v_red": rng.uniform(0.1, 0.2),
        "kappa_blue": 10 ** rng.uniform(-1.0, 0.0),
        "kappa_red": rng.uniform(3.0, 10.0),
        "tfloor_blue": rng.uniform(3000.0, 5000.0),
        "tfloor_red": rng.uniform(1500.0, 3000.0),
    }
    components = []
    for part in ("blue", "red"):
        lum = _arnett_luminosity(_KN_GRID, params[f"m_{part}"] * _MSUN, params[f"v_{part}"], params[f"kappa_{part}"])
        radius = params[f"v_{part}"] * _C * _KN_GRID * _DAY
        temp = (lum / (4 * math.pi * _SIGMA_SB * radius**2)) ** 0.25
        floor = params[f"tfloor_{part}"]
        # below the floor temperature the photosphere recedes into the ejecta
        radius = np.where(temp < floor, np.sqrt(lum / (4 * math.pi * _SIGMA_SB * floor**4)), radius)
        components.append((radius, np.maximum(temp, floor)))
    return components, params


def _hotokezaka_nakar(rng: np.random.Generator) -> tuple[list[tuple[np.ndarray, np.ndarray]], dict[str, float]]:
    from astropy import units as u
    from astropy.constants import c
    from kilonova_heating_rate import lightcurve

    params = {
        "mass": rng.uniform(0.01, 0.1),
        "v_min": rng.uniform(0.05, 0.15),
        "v_max": rng.uniform(0.2, 0.4),
        "n": rng.uniform(3.0, 4.5),
        "kappa_inner": rng.uniform(3.0, 10.0),
        "kappa_outer": 10 ** rng.uniform(-1.0, 0.0),
        "v_split": rng.uniform(0.15, 0.25),
    }
    v_split = min(max(params["v_split"], params["v_min"] + 0.02), params["v_max"] - 0.02)
    velocities = np.array([params["v_min"], v_split, params["v_max"]]) * c
    opacities = np.array([params["kappa_inner"], params["kappa_outer"]]) * u.cm**2 / u.g
    lum, temp, radius = lightcurve(_KN_GRID * u.day, params["mass"] * u.Msun, velocities, opacities, params["n"])
    return [(np.asarray(radius.to_value(u.cm)), np.asarray(temp.to_value(u.K)))], params


def kilonova_model(rng: np.random.Generator, family: str | None = None) -> tuple[MagModel, dict[str, float]]:
    """Draw a kilonova of a published model family at a random distance.

    Parameters
    ----------
    rng
        The random generator.
    family
        ``"HN20"`` or ``"2comp"`` (see the module docstring); None draws one, half each.

    Returns
    -------
    model, parameters
        ``model(t_days_since_merger, band)`` gives AB magnitudes; ``parameters`` are the draws, with
        ``family`` and ``distance_mpc``.
    """
    if family is None:
        family = "HN20" if rng.random() < 0.5 else "2comp"
    components, params = _hotokezaka_nakar(rng) if family == "HN20" else _two_component(rng)
    params = {**params, "family": family, "distance_mpc": 40.0 * 7.5 ** rng.uniform(0.0, 1.0)}
    dist_cm = params["distance_mpc"] * _MPC

    def model(t: np.ndarray, band: str) -> np.ndarray:
        flux_grid = sum(
            math.pi * (radius / dist_cm) ** 2 * _planck_nu(BAND_WAVELENGTH_AA[band], temp)
            for radius, temp in components
        )
        flux = np.interp(t, _KN_GRID, flux_grid, left=0.0, right=0.0)
        return _ab_mag(np.where(t > 0, flux, 0.0))

    return model, params


# -------------------------------------------------------------------------------------------- negatives


def _blackbody_transient(
    lum: Callable[[np.ndarray], np.ndarray], temp: Callable[[np.ndarray], np.ndarray]
) -> Callable[[np.ndarray, str], np.ndarray]:
    """Relative flux density of a blackbody of luminosity lum(t) (arbitrary units) and temperature temp(t)."""

    def flux(t: np.ndarray, band: str) -> np.ndarray:
        temperature = temp(t)
        return lum(t) / temperature**4 * _planck_nu(BAND_WAVELENGTH_AA[band], temperature) * 1e15

    return flux


def _bazin(t: np.ndarray, t0: float, rise: float, fall: float) -> np.ndarray:
    """Bazin et al. (2009) light-curve shape, zero before explosion (t <= 0)."""
    shape = np.exp(-(t - t0) / fall) / (1 + np.exp(np.clip(-(t - t0) / rise, -700, 700)))
    return np.where(t > 0, shape, 0.0)


# (rise e-folding, decline e-folding, early and late temperature, cooling time, peak in rise units)
_BAZIN_KINDS = {
    "SN Ia": ((1.5, 3.5), (12, 35), (9000, 13000), (4500, 6000), (12, 25), (4.0, 6.0)),
    "SN Ibc": ((1.0, 3.0), (10, 25), (8000, 11000), (4500, 5500), (8, 20), (4.0, 6.0)),
    "SN II": ((1.0, 3.0), (60, 150), (12000, 18000), (4500, 5500), (8, 20), (4.0, 6.0)),
    "SLSN": ((5, 12), (40, 100), (12000, 18000), (6000, 8000), (30, 80), (4.0, 6.0)),
    # interacting, helium/carbon-rich: rise in 2-8 days, fade 0.05-0.15 mag/day, hot
    "SN Ibn/Icn": ((0.5, 1.5), (7, 20), (12000, 20000), (7000, 10000), (8, 25), (2.5, 5.0)),
    # AT2018cow-like: rise in 1-3 days, fade 0.1-0.5 mag/day, stays hot (blue)
    "FBOT": ((0.3, 1.0), (2.0, 8.0), (20000, 35000), (12000, 18000), (5, 20), (2.0, 4.0)),
}


def _afterglow(rng: np.random.Generator, off_axis: bool) -> Callable[[np.ndarray, str], np.ndarray]:
    """f_nu ~ nu^-beta t^-alpha; off axis: a rise as t^3 to a peak at 1-10 days, then the same decline."""
    alpha, beta = rng.uniform(0.8, 2.2), rng.uniform(0.5, 1.2)
    t_peak = rng.uniform(1.0, 10.0) if off_axis else 0.0

    def afterglow(t: np.ndarray, band: str) -> np.ndarray:
        nu_ratio = BAND_WAVELENGTH_AA["r"] / BAND_WAVELENGTH_AA[band]
        tt = np.maximum(t, 1e-3)
        if off_axis:
            shape = np.where(tt < t_peak, (tt / t_peak) ** 3, (tt / t_peak) ** -alpha)
        else:
            shape = tt**-alpha
        return np.where(t > 0, nu_ratio**-beta * shape, 0.0)

    return afterglow


def _supernova_flux(kind: str, rng: np.random.Generator) -> Callable[[np.ndarray, str], np.ndarray]:
    """Relative flux of a contaminant; t in days since its start."""
    u = rng.uniform
    if kind in _BAZIN_KINDS:
        rise_r, fall_r, early_r, late_r, cool_r, peak_r = _BAZIN_KINDS[kind]
        rise, fall, t_early, t_late, cool = u(*rise_r), u(*fall_r), u(*early_r), u(*late_r), u(*cool_r)
        t0 = rise * u(*peak_r)
        return _blackbody_transient(
            lambda t: _bazin(t, t0, rise, fall), lambda t: t_late + (t_early - t_late) * np.exp(-t / cool)
        )
    if kind in ("afterglow", "off-axis afterglow"):
        return _afterglow(rng, kind == "off-axis afterglow")
    if kind == "shock-cooling SN":
        # a cooling envelope (1-4 days, 20000 K -> 6000 K) then a stripped-envelope supernova
        tau_sc, t_hot, cool_sc = u(0.7, 2.5), u(15000, 25000), u(1.0, 3.0)
        first = _blackbody_transient(
            lambda t: np.where(t > 0, np.exp(-t / tau_sc), 0.0),
            lambda t: 6000 + (t_hot - 6000) * np.exp(-t / cool_sc),
        )
        second = _supernova_flux("SN Ibc", rng)
        ratio = 10 ** rng.uniform(-0.4, 1.0)
        late = np.linspace(1, 60, 120)
        norm = second(late, "r").max() / first(np.array([0.05]), "r")[0]

        def shock_cooling(t: np.ndarray, band: str) -> np.ndarray:
            return ratio * norm * first(t, band) + second(t, band)

        return shock_cooling
    if kind == "M-dwarf flare":
        # minutes to an hour of rise, an exponential decay of 0.01-0.2 days, a 9000-15000 K blackbody
        rise, decay, temp = u(0.002, 0.02), u(0.01, 0.2), u(9000, 15000)
        return _blackbody_transient(
            lambda t: np.where(t > 0, np.where(t < rise, t / rise, np.exp(-np.maximum(t - rise, 0.0) / decay)), 0.0),
            lambda t: np.full_like(t, temp, dtype=float),
        )
    if kind == "dwarf nova":
        # a rise in 0.5-1.5 days, a plateau of 2-12 days, a decline of 0.2-1 mag/day (accretion disc, hot)
        rise, plateau, decline, temp = u(0.5, 1.5), u(2.0, 12.0), u(0.2, 1.0), u(8000, 15000)

        def shape(t: np.ndarray) -> np.ndarray:
            mag = np.where(
                t < rise, 3.0 * (1 - t / rise), np.where(t < rise + plateau, 0.0, decline * (t - rise - plateau))
            )
            return np.where(t > 0, 10 ** (-0.4 * np.minimum(mag, 30.0)), 0.0)

        return _blackbody_transient(shape, lambda t: np.full_like(t, temp, dtype=float))
    if kind == "AGN":
        # damped random walk of the difference flux (tau 20-200 days), blue power law f_nu ~ nu^0.3..1
        tau, slope_nu = u(20.0, 200.0), u(0.3, 1.0)
        grid = np.arange(-300.0, 400.0, 0.25)
        steps = rng.normal(0.0, 1.0, len(grid))
        walk = np.empty(len(grid))
        a = math.exp(-0.25 / tau)
        walk[0] = steps[0]
        for n in range(1, len(grid)):
            walk[n] = a * walk[n - 1] + math.sqrt(1 - a * a) * steps[n]
        walk = np.maximum(walk, 0.0)  # a difference image detects the brightening only

        def agn(t: np.ndarray, band: str) -> np.ndarray:
            nu_ratio = BAND_WAVELENGTH_AA["r"] / BAND_WAVELENGTH_AA[band]
            return nu_ratio**slope_nu * np.interp(t, grid, walk)

        return agn
    raise ValueError(f"unknown kind {kind!r}")


def negative_model(kind: str, rng: np.random.Generator) -> MagModel:
    """A contaminant scaled to a peak r magnitude of 0 (the survey sets the zero point)."""
    flux = _supernova_flux(kind, rng)
    # an on-axis afterglow is brightest at its start: its scale is set at 0.3 days
    grid = (
        np.array([0.3])
        if kind == "afterglow"
        else np.concatenate([np.linspace(0.001, 2, 200), np.linspace(2.1, 200, 400)])
    )
    peak = _ab_mag(np.array([flux(grid, "r").max()]))[0]

    def model(t: np.ndarray, band: str) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            return _ab_mag(flux(t, band)) - peak

    return model


def make_example(kind: str, rng: np.random.Generator, survey: str | None = None) -> Example:
    """A synthetic light curve of one kind with its GW context (see :class:`Example`).

    Kilonovae are observed from 0-3 days after the merger for 3-15 days; supernovae from 25 days before
    to 80 days after explosion for 5-60 days; flares, dwarf novae and AGN at any phase; the other fast
    transients from 0-3 days after their start for 4-30 days. A light curve may have no detection at all
    (too faint for the survey): callers draw again.

    Examples
    --------
    >>> a = make_example("kilonova", np.random.default_rng(7))
    >>> b = make_example("kilonova", np.random.default_rng(7))
    >>> a == b, a.kind, 40 <= a.context.distance_mpc <= 300
    (True, 'kilonova', True)
    """
    mjd0 = rng.uniform(58000.0, 61000.0)
    level = rng.uniform(0.0, 0.9)
    if kind == KILONOVA:
        model, params = kilonova_model(rng)
        observations, used = observe(
            model,
            rng,
            t_first=rng.uniform(0.0, 3.0),
            duration=rng.uniform(3.0, 15.0),
            mjd0=mjd0,
            survey=survey,
            host_ebv_scale=0.05,
        )
        return Example(kind, observations, GWContext(mjd0, params["distance_mpc"], level), used)
    model = negative_model(kind, rng)
    if kind in ("SN Ia", "SN Ibc", "SN II", "SLSN", "SN Ibn/Icn"):
        t_first, duration = rng.uniform(-25.0, 80.0), rng.uniform(5.0, 60.0)
    elif kind in ("M-dwarf flare",):
        t_first, duration = rng.uniform(-0.05, 0.1), rng.uniform(3.0, 20.0)
    elif kind == "AGN":
        t_first, duration = rng.uniform(-100.0, 100.0), rng.uniform(5.0, 60.0)
    elif kind == "dwarf nova":
        t_first, duration = rng.uniform(-1.0, 10.0), rng.uniform(4.0, 30.0)
    else:
        t_first, duration = rng.uniform(0.0, 3.0), rng.uniform(4.0, 30.0)
    # peak apparent magnitude: from well above a survey's depth to just at it
    offset = rng.uniform(16.0, 22.5)
    # supernovae and other extragalactic transients are often reddened by their hosts (mean E(B-V) 0.2);
    # kilonovae, mostly far from star-forming regions, little (0.05); Galactic sources not at all
    host = 0.0 if kind in ("M-dwarf flare", "dwarf nova") else 0.2
    observations, used = observe(
        model, rng, t_first=t_first, duration=duration, offset_mag=offset, mjd0=mjd0, survey=survey, host_ebv_scale=host
    )
    first = next((o.mjd for o in observations if not o.upper_limit), mjd0 + t_first)
    distance = 40.0 * 7.5 ** rng.uniform(0.0, 1.0)
    return Example(kind, observations, GWContext(first - rng.uniform(0.02, 3.0), distance, level), used)


def make_light_curve(kind: str, rng: np.random.Generator, survey: str | None = None) -> list[Observation]:
    """The observations of :func:`make_example` alone.

    Examples
    --------
    >>> make_light_curve("SN Ia", np.random.default_rng(3)) == make_light_curve("SN Ia", np.random.default_rng(3))
    True
    """
    return make_example(kind, rng, survey).observations
