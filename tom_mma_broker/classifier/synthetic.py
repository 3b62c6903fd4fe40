"""Seeded generators of synthetic light curves: kilonovae and the transients that are not.

Everything here is deterministic given a :class:`numpy.random.Generator`. The physics is deliberately
simple and documented in ``docs/classifier.md``:

- **Kilonova** (positive): two components (blue, lanthanide-poor; red, lanthanide-rich), each an
  Arnett-like diffusion of r-process heating (Korobkin et al. 2012, ``~2e10 (t/day)^-1.3 erg/s/g``)
  times a thermalisation efficiency (Barnes et al. 2016 form), radiated by a blackbody photosphere
  ``R = v t`` with a temperature floor (Villar et al. 2017 style). Ejecta mass 0.01-0.1 Msun in all,
  velocity 0.2-0.3 c (blue) and 0.1-0.2 c (red), grey opacity 0.1-1 (blue) and 3-10 (red) cm^2/g,
  distance 40-200 Mpc, observed from 0-3 days after the merger.
- **Supernovae** (negative): Ia, Ibc, II (plateau) and superluminous, as a blackbody whose luminosity has a
  Bazin rise and exponential decline (weeks) and whose temperature cools over weeks.
- **Other fast transients** (negative): fast blue optical transients (days, stay hot), GRB afterglows
  (power law in time and frequency, constant colour) and shock-cooling supernovae (a fast-fading, cooling
  first peak over 1-4 days before a Ibc/IIb supernova): the real look-alikes of a kilonova.

Every light curve is then observed by :func:`observe` with a random survey: cadence, bands, depth,
photometric noise and upper limits, the same for all classes so that cadence teaches nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .features import Observation

__all__ = [
    "BAND_WAVELENGTH_AA",
    "KILONOVA",
    "NEGATIVE_KINDS",
    "kilonova_model",
    "make_light_curve",
    "observe",
]

BAND_WAVELENGTH_AA = {"g": 4750.0, "r": 6250.0, "i": 7650.0}
"""Effective wavelengths of the simulated bands (Angstrom)."""

# Galactic extinction A_band / E(B-V) (Schlafly & Finkbeiner 2011, R_V = 3.1, SDSS-like filters)
_EXTINCTION_COEFF = {"g": 3.30, "r": 2.29, "i": 1.70}

KILONOVA = "kilonova"
NEGATIVE_KINDS = ("SN Ia", "SN Ibc", "SN II", "SLSN", "FBOT", "afterglow", "shock-cooling SN")
"""The kinds of synthetic negatives, drawn with equal probability."""

# physical constants (cgs)
_C = 2.99792458e10
_H = 6.62607015e-27
_K = 1.380649e-16
_SIGMA_SB = 5.670374e-5
_MSUN = 1.98841e33
_MPC = 3.0857e24
_DAY = 86400.0

# a model: (times in days since explosion / merger, band) -> AB magnitude (inf where no flux)
MagModel = Callable[[np.ndarray, str], np.ndarray]


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
    # r-process heating rate of Korobkin et al. (2012), ~2e10 (t/day)^-1.3 erg/s/g after an hour, with the
    # thermalisation efficiency of Barnes et al. (2016, their fitting form, mid-range coefficients)
    a, b, d = 1.3, 0.2, 1.1
    tt = np.maximum(t_days, 1e-3)
    rate = 4e18 * (0.5 - np.arctan((tt * _DAY - 1.3) / 0.11) / math.pi) ** 1.3
    thermalisation = 0.36 * (np.exp(-a * tt) + np.log1p(2 * b * tt**d) / (2 * b * tt**d))
    heating = mass_g * rate * thermalisation
    # L(t) = int_0^t 2 L_in(t') (t'/td) exp((t'^2 - t^2)/td^2) dt'/td on the grid (lower triangle)
    x = tt / t_diff
    w = np.gradient(tt) / t_diff
    expo = np.exp(np.minimum(x[None, :] ** 2 - x[:, None] ** 2, 0.0))
    kernel = np.tril(expo) * (2 * heating * x * w)[None, :]
    return kernel.sum(axis=1)


def kilonova_model(rng: np.random.Generator) -> tuple[MagModel, dict[str, float]]:
    """Draw a two-component kilonova at a random distance.

    Returns
    -------
    model, parameters
        ``model(t_days_since_merger, band)`` gives AB magnitudes; ``parameters`` are the draws.
    """
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
        "distance_mpc": 40.0 * 5.0 ** rng.uniform(0.0, 1.0),
    }
    grid = np.geomspace(0.02, 40.0, 160)
    components = []
    for part in ("blue", "red"):
        lum = _arnett_luminosity(grid, params[f"m_{part}"] * _MSUN, params[f"v_{part}"], params[f"kappa_{part}"])
        radius = params[f"v_{part}"] * _C * grid * _DAY
        temp = (lum / (4 * math.pi * _SIGMA_SB * radius**2)) ** 0.25
        floor = params[f"tfloor_{part}"]
        # below the floor temperature the photosphere recedes into the ejecta
        radius = np.where(temp < floor, np.sqrt(lum / (4 * math.pi * _SIGMA_SB * floor**4)), radius)
        components.append((radius, np.maximum(temp, floor)))
    dist_cm = params["distance_mpc"] * _MPC

    def model(t: np.ndarray, band: str) -> np.ndarray:
        flux_grid = sum(
            math.pi * (radius / dist_cm) ** 2 * _planck_nu(BAND_WAVELENGTH_AA[band], temp)
            for radius, temp in components
        )
        flux = np.interp(t, grid, flux_grid, left=0.0, right=0.0)
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


def _supernova_flux(kind: str, rng: np.random.Generator) -> Callable[[np.ndarray, str], np.ndarray]:
    """Relative flux of a supernova-like or other non-kilonova transient; t in days since explosion."""
    u = rng.uniform
    if kind in ("SN Ia", "SN Ibc", "SN II", "SLSN"):
        rise, fall, t_early, t_late, cool = {
            "SN Ia": (u(1.5, 3.5), u(12, 35), u(9000, 13000), u(4500, 6000), u(12, 25)),
            "SN Ibc": (u(1.0, 3.0), u(10, 25), u(8000, 11000), u(4500, 5500), u(8, 20)),
            "SN II": (u(1.0, 3.0), u(60, 150), u(12000, 18000), u(4500, 5500), u(8, 20)),
            "SLSN": (u(5, 12), u(40, 100), u(12000, 18000), u(6000, 8000), u(30, 80)),
        }[kind]
        t0 = rise * u(4.0, 6.0)  # peak roughly 15-20 days after explosion for Ia-like rises

        return _blackbody_transient(
            lambda t: _bazin(t, t0, rise, fall), lambda t: t_late + (t_early - t_late) * np.exp(-t / cool)
        )
    if kind == "FBOT":
        # AT2018cow-like: rise in 1-3 days, fade 0.1-0.5 mag/day, stays hot (blue)
        rise, fall = u(0.3, 1.0), u(2.0, 8.0)
        t_early, t_late, cool = u(20000, 35000), u(12000, 18000), u(5, 20)
        t0 = rise * u(2.0, 4.0)
        return _blackbody_transient(
            lambda t: _bazin(t, t0, rise, fall), lambda t: t_late + (t_early - t_late) * np.exp(-t / cool)
        )
    if kind == "afterglow":
        # f_nu ~ nu^-beta t^-alpha: fast power-law fading, constant colour
        alpha, beta = u(0.8, 2.0), u(0.5, 1.2)

        def afterglow(t: np.ndarray, band: str) -> np.ndarray:
            nu_ratio = BAND_WAVELENGTH_AA["r"] / BAND_WAVELENGTH_AA[band]
            return np.where(t > 0, nu_ratio**-beta * np.maximum(t, 1e-3) ** -alpha, 0.0)

        return afterglow
    if kind == "shock-cooling SN":
        # a cooling envelope (1-4 days, 20000 K -> 6000 K) then a stripped-envelope supernova
        tau_sc, t_hot, cool_sc = u(0.7, 2.5), u(15000, 25000), u(1.0, 3.0)
        first = _blackbody_transient(
            lambda t: np.where(t > 0, np.exp(-t / tau_sc), 0.0),
            lambda t: 6000 + (t_hot - 6000) * np.exp(-t / cool_sc),
        )
        second = _supernova_flux("SN Ibc", rng)
        ratio = 10 ** rng.uniform(-0.4, 1.0)  # first peak up to 2.5 mag brighter than its effect later
        late = np.linspace(1, 60, 120)
        norm = second(late, "r").max() / first(np.array([0.05]), "r")[0]

        def shock_cooling(t: np.ndarray, band: str) -> np.ndarray:
            return ratio * norm * first(t, band) + second(t, band)

        return shock_cooling
    raise ValueError(f"unknown kind {kind!r}")


def negative_model(kind: str, rng: np.random.Generator) -> MagModel:
    """A non-kilonova transient scaled to a random peak r magnitude of 0 (the survey sets the zero point)."""
    flux = _supernova_flux(kind, rng)
    grid = np.concatenate([np.linspace(0.01, 2, 60), np.linspace(2.1, 200, 400)])
    peak = _ab_mag(np.array([flux(grid, "r").max()]))[0]

    def model(t: np.ndarray, band: str) -> np.ndarray:
        return _ab_mag(flux(t, band)) - peak

    return model


# ------------------------------------------------------------------------------------------------ survey


def observe(
    model: MagModel,
    rng: np.random.Generator,
    *,
    t_first: float,
    duration: float,
    offset_mag: float = 0.0,
    mjd0: float | None = None,
) -> list[Observation]:
    """Observe a model with a random survey, from ``t_first`` (days since explosion) for ``duration`` days.

    The survey draws a cadence (0.3-3 days between visits, log-uniform), a set of bands, a 5-sigma depth
    (20-23 mag) with per-visit scatter, Galactic extinction, photometric noise (SNR 5 at the depth, 0.01 mag
    floor) and, with probability 0.5, a non-detection 1-10 days before the first visit. Points fainter than
    the depth become upper limits at the depth.
    """
    cadence = math.exp(rng.uniform(math.log(0.3), math.log(3.0)))
    band_sets = (("g", "r"), ("g", "r", "i"), ("r", "i"), ("g", "i"), ("g",), ("r",), ("i",))
    bands = band_sets[rng.choice(len(band_sets), p=[0.35, 0.3, 0.1, 0.05, 0.05, 0.1, 0.05])]
    depth = rng.uniform(20.0, 23.0)
    ebv = rng.uniform(0.0, 0.15)
    mjd0 = rng.uniform(58000.0, 61000.0) if mjd0 is None else mjd0

    visits = [t_first]
    while visits[-1] < t_first + duration:
        visits.append(visits[-1] + cadence * rng.uniform(0.5, 1.5))
    times, names = [], []
    if rng.random() < 0.5:
        # an earlier non-detection (survey history), possibly before the explosion
        times.append(t_first - rng.uniform(1.0, 10.0))
        names.append(str(rng.choice(bands)))
    for visit in visits:
        seen = [band for band in bands if rng.random() < 0.8] or [str(rng.choice(bands))]
        for n, band in enumerate(seen):
            times.append(visit + n * rng.uniform(0.002, 0.03))
            names.append(band)
    t = np.array(times)
    observations = []
    for band in sorted(set(names)):
        sel = np.array([name == band for name in names])
        true_mag = model(t[sel], band) + offset_mag + _EXTINCTION_COEFF[band] * ebv
        limit = depth + rng.normal(0.0, 0.3, sel.sum())
        with np.errstate(over="ignore"):
            snr = 5.0 * 10 ** (-0.4 * (true_mag - limit))
        sigma = np.hypot(0.01, 1.0857 / np.maximum(snr, 1e-6))
        measured = true_mag + rng.normal(0.0, 1.0, sel.sum()) * np.where(np.isfinite(sigma), sigma, 0.0)
        for ti, m, s, lim, sn in zip(t[sel], measured, sigma, limit, snr, strict=True):
            if sn >= 5.0 and np.isfinite(m) and m < lim:
                observations.append(Observation(float(mjd0 + ti), band, float(m), float(s), False))
            else:
                observations.append(Observation(float(mjd0 + ti), band, float(lim), None, True))
    observations.sort(key=lambda o: (o.mjd, o.band))
    return observations


def make_light_curve(kind: str, rng: np.random.Generator) -> list[Observation]:
    """A synthetic light curve of one kind (:data:`KILONOVA` or one of :data:`NEGATIVE_KINDS`).

    Kilonovae are observed from 0-3 days after the merger for 4-15 days; supernovae from 25 days before
    to 80 days after explosion for 5-60 days; the other fast transients from 0-3 days after their start
    for 4-30 days. A light curve may have no detection at all (too faint for the survey): callers skip
    those.

    Examples
    --------
    >>> lc1 = make_light_curve("kilonova", np.random.default_rng(7))
    >>> lc2 = make_light_curve("kilonova", np.random.default_rng(7))
    >>> lc1 == lc2
    True
    """
    if kind == KILONOVA:
        model, _ = kilonova_model(rng)
        return observe(model, rng, t_first=rng.uniform(0.0, 3.0), duration=rng.uniform(4.0, 15.0))
    model = negative_model(kind, rng)
    if kind in ("SN Ia", "SN Ibc", "SN II", "SLSN"):
        t_first, duration = rng.uniform(-25.0, 80.0), rng.uniform(5.0, 60.0)
    else:
        t_first, duration = rng.uniform(0.0, 3.0), rng.uniform(4.0, 30.0)
    # peak apparent magnitude relative to the survey: from well above the depth to just at it
    offset = rng.uniform(16.0, 22.0)
    return observe(model, rng, t_first=t_first, duration=duration, offset_mag=offset)
