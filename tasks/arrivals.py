"""Arrival processes in continuous time: when requests arrive, and at which base station.

Three stationary processes, each with the same knob for load, `rate_per_s` (requests per second for the
whole system, the long-run time average):

- `poisson`: independent exponential inter-arrival times; inter-arrival CV 1, index of dispersion 1.
- `gamma`:   a renewal process with Gamma inter-arrival times of mean 1/λ and coefficient of variation `cv`
             (shape 1/cv², scale cv²/λ). cv = 1 is Poisson, cv > 1 bursty, cv < 1 more regular. It starts
             stationary: the first arrival comes after a forward-recurrence time (a length-biased interval,
             Gamma(shape + 1), times a uniform), so counts over any window have mean λ·window.
- `mmpp`:    a two-state Markov-modulated Poisson process (on/off bursts). The state alternates between on and
             off with exponential sojourns of mean `mean_on_s` and `mean_off_s`; arrivals are Poisson at λ_on in
             the on state and λ_off = f·λ_on in the off state (f = `off_rate_fraction`, 0 = silent while off).
             It starts in the stationary state distribution. With p_on = m_on/(m_on + m_off), p_off = 1 - p_on:
                 λ_on = λ / (p_on + f·p_off),  λ_off = f·λ_on,  mean rate p_on·λ_on + p_off·λ_off = λ.
             Counts over a window of length t (derived here from the rate process's autocovariance
             σ²·exp(-s·u), σ² = p_on·p_off·(λ_on - λ_off)², s = 1/m_on + 1/m_off):
                 Var N(t) / E N(t) = 1 + 2σ²/(λ·s) · (1 - (1 - exp(-s·t)) / (s·t))   (→ 1 + 2σ²/(λ·s) as t → ∞).
             Inter-arrival times are phase-type: with D0 = Q - diag(λ_on, λ_off) (Q the state generator) and the
             state distribution at arrivals π_a = (p_on·λ_on, p_off·λ_off)/λ, E[X^k] = k!·π_a·(-D0)^(-k)·1, so
             CV² = 2λ²·π_a·(-D0)^(-2)·1 - 1 (`interarrival_cv`).

Diurnal modulation (optional, for every process): `diurnal` gives relative rates over one period (e.g. 24 hourly
values), normalised to mean 1, as a step curve or linearly interpolated between interval midpoints (cyclic). The
stationary process is generated in operational time τ at rate λ, and each point is mapped to wall-clock time through
the inverse of the cumulative curve G(t) = ∫ g: t = G⁻¹(τ). For Poisson this is exactly the inhomogeneous Poisson
process of intensity λ·g(t); for the others it is the time-changed process, whose moments above hold in operational
time. The period-average rate stays λ. `diurnal_offset_s` places time 0 in the period.

Origins: each request's base station is drawn independently, uniform or by `origin_weights`.

Draw order from the caller's generator (part of the stream's definition): the arrival times, then the origins.
Everything is vectorised: 1,000,000 arrivals take well under a second.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np

from bench.core.config import option
from bench.core.errors import ConfigError

__all__ = [
    "ArrivalConfig",
    "Arrivals",
    "arrivals",
    "arrival_times",
    "draw_origins",
    "mean_rate",
    "state_rates",
    "interarrival_cv",
    "index_of_dispersion",
    "intensity",
    "expected_count",
]

MAX_CV = 20.0  # beyond it most Gamma inter-arrival times underflow to 0 (shape < 1/400): the process is mostly ties


@dataclass(frozen=True, kw_only=True)
class ArrivalConfig:
    """When requests arrive (a stationary process, optionally with a daily cycle) and where (origin weights)."""

    process: Literal["poisson", "gamma", "mmpp"] = option(
        "poisson",
        help="poisson: exponential inter-arrival times; gamma: renewal process with Gamma inter-arrival times of a given "
        "cv; mmpp: two-state Markov-modulated Poisson process (on/off bursts)",
    )
    rate_per_s: float = option(
        help="mean arrival rate of the whole system in requests per second (the long-run average; with diurnal, "
        "the average over one period)",
        gt=0,
    )
    cv: float | None = option(
        None,
        help=f"gamma only: coefficient of variation of the inter-arrival times (1 = Poisson, > 1 bursty, < 1 more "
        f"regular; at most {MAX_CV:g})",
        gt=0,
        le=MAX_CV,
    )
    mean_on_s: float | None = option(None, help="mmpp only: mean length of an on (burst) period in seconds, exponential", gt=0)
    mean_off_s: float | None = option(None, help="mmpp only: mean length of an off (quiet) period in seconds, exponential", gt=0)
    off_rate_fraction: float | None = option(
        None, help="mmpp only: arrival rate while off as a fraction of the rate while on (0 = no arrivals while off)", ge=0, le=1
    )
    diurnal: tuple[float, ...] | None = option(
        None,
        help="relative arrival rates over one period, equally spaced (e.g. 24 hourly values), normalised to mean 1; "
        "absent = no daily cycle",
        ge=0,
    )
    diurnal_shape: Literal["step", "linear"] = option(
        "step",
        help="step: each diurnal value holds over its whole interval; linear: interpolated between interval midpoints, "
        "wrapping around the period",
    )
    diurnal_period_s: float = option(86400.0, help="length of the diurnal period in seconds (a day)", gt=0)
    diurnal_offset_s: float = option(
        0.0, help="position of time 0 in the diurnal period, in seconds (32400 with a 24-h period: time 0 is 09:00)", ge=0
    )
    origin_weights: tuple[float, ...] | None = option(
        None, help="relative share of the requests arriving at each base station, one value per server; absent = uniform", ge=0
    )

    def __post_init__(self) -> None:
        if self.process == "gamma" and self.cv is None:
            raise ConfigError("cv", None, f"a number > 0 and <= {MAX_CV:g} (required with process = \"gamma\")")
        if self.process != "gamma" and self.cv is not None:
            raise ConfigError("cv", self.cv, 'to be absent unless process = "gamma"')
        for name in ("mean_on_s", "mean_off_s", "off_rate_fraction"):
            value = getattr(self, name)
            if self.process == "mmpp" and value is None:
                raise ConfigError(name, None, 'a value (required with process = "mmpp"; see bench scenario --fields)')
            if self.process != "mmpp" and value is not None:
                raise ConfigError(name, value, 'to be absent unless process = "mmpp"')
        if self.diurnal is None:
            defaults = {"diurnal_shape": "step", "diurnal_period_s": 86400.0, "diurnal_offset_s": 0.0}
            for name, default in defaults.items():
                if getattr(self, name) != default:
                    raise ConfigError(name, getattr(self, name), f"to be left at {default!r} unless diurnal is set")
        elif not (min(self.diurnal) >= 0 and sum(self.diurnal) > 0):
            raise ConfigError("diurnal", list(self.diurnal), "relative rates >= 0, at least one of them > 0")
        if not self.diurnal_offset_s < self.diurnal_period_s:
            raise ConfigError("diurnal_offset_s", self.diurnal_offset_s, f"a number >= 0 and < diurnal_period_s = {self.diurnal_period_s:g}")
        if self.origin_weights is not None and not (min(self.origin_weights) >= 0 and sum(self.origin_weights) > 0):
            raise ConfigError("origin_weights", list(self.origin_weights), "weights >= 0, at least one of them > 0")


class Arrivals(NamedTuple):
    """The requests of one horizon: arrival times (s, ascending, from the horizon's start) and origin base stations."""

    arrival_s: np.ndarray  # float64, sorted ascending, in [0, horizon_s)
    origin: np.ndarray  # int64 in 0..n_origins-1


def arrivals(
    cfg: ArrivalConfig, n_origins: int, horizon_s: float, rng: np.random.Generator, *, start_s: float = 0.0
) -> Arrivals:
    """Draw the arrivals of [start_s, start_s + horizon_s) and their origins; times are returned from start_s.

    `start_s` only matters with a diurnal curve (it moves the window along the day); the processes are stationary.
    """
    times = arrival_times(cfg, horizon_s, rng, start_s=start_s)
    return Arrivals(times, draw_origins(times.shape[0], n_origins, cfg.origin_weights, rng))


def arrival_times(cfg: ArrivalConfig, horizon_s: float, rng: np.random.Generator, *, start_s: float = 0.0) -> np.ndarray:
    """Arrival times in [0, horizon_s) of the window that starts at start_s on the process clock (float64, sorted)."""
    if not (math.isfinite(horizon_s) and horizon_s > 0):
        raise ConfigError("horizon_s", horizon_s, "a finite number > 0")
    if not (math.isfinite(start_s) and start_s >= 0):
        raise ConfigError("start_s", start_s, "a finite number >= 0")
    curve = _curve(cfg)
    if curve is None:
        return _stationary(cfg, horizon_s, rng)
    tau0, tau1 = curve.cumulative(np.array([start_s, start_s + horizon_s]))
    tau = _stationary(cfg, float(tau1 - tau0), rng)
    t = curve.inverse(tau + tau0) - start_s
    np.maximum.accumulate(t, out=t)  # rounding across curve segments must not unsort
    np.clip(t, 0.0, np.nextafter(horizon_s, 0.0), out=t)
    return t


def draw_origins(n: int, n_origins: int, weights: tuple[float, ...] | None, rng: np.random.Generator) -> np.ndarray:
    """The base station of each of n requests: uniform over 0..n_origins-1, or by relative weights (one per station)."""
    if isinstance(n_origins, bool) or not isinstance(n_origins, (int, np.integer)) or n_origins < 1:
        raise ConfigError("n_origins", n_origins, "an integer >= 1 (the number of base stations)")
    if weights is None:
        return rng.integers(0, n_origins, size=n, dtype=np.int64)
    if len(weights) != n_origins:
        raise ConfigError("origin_weights", list(weights), f"{n_origins} values, one per base station (servers.count = {n_origins})")
    p = np.asarray(weights, dtype=np.float64)
    return rng.choice(n_origins, size=n, p=p / p.sum()).astype(np.int64)


# --- theory -------------------------------------------------------------------------------------------------

def mean_rate(cfg: ArrivalConfig) -> float:
    """Long-run mean arrival rate (requests/s); with a diurnal curve, the average over one period."""
    return cfg.rate_per_s


def state_rates(cfg: ArrivalConfig) -> tuple[float, float]:
    """mmpp: the arrival rates (λ_on, λ_off) that give the mean rate `rate_per_s` (module docstring)."""
    if cfg.process != "mmpp":
        raise ValueError("state_rates is defined for process = 'mmpp' only")
    p_on = cfg.mean_on_s / (cfg.mean_on_s + cfg.mean_off_s)
    on = cfg.rate_per_s / (p_on + cfg.off_rate_fraction * (1.0 - p_on))
    return on, cfg.off_rate_fraction * on


def interarrival_cv(cfg: ArrivalConfig) -> float:
    """Coefficient of variation of the stationary inter-arrival time (in operational time if diurnal)."""
    if cfg.process == "poisson":
        return 1.0
    if cfg.process == "gamma":
        return float(cfg.cv)
    on, off = state_rates(cfg)
    r_on, r_off = 1.0 / cfg.mean_on_s, 1.0 / cfg.mean_off_s
    d0 = np.array([[-(r_on + on), r_on], [r_off, -(r_off + off)]])
    p_on = cfg.mean_on_s / (cfg.mean_on_s + cfg.mean_off_s)
    pi_a = np.array([p_on * on, (1.0 - p_on) * off]) / cfg.rate_per_s
    m = np.linalg.inv(-d0)
    second = 2.0 * pi_a @ m @ m @ np.ones(2)
    return float(math.sqrt(second * cfg.rate_per_s**2 - 1.0))


def index_of_dispersion(cfg: ArrivalConfig, window_s: float | None = None) -> float:
    """Var N(t) / E N(t) of the count N(t) in a window of length t (in operational time if diurnal).

    window_s = None gives the limit t → ∞ (poisson 1, gamma cv², mmpp the module docstring's formula). For gamma
    only the limit has a closed form; a finite window raises ValueError.
    """
    if cfg.process == "poisson":
        return 1.0
    if cfg.process == "gamma":
        if window_s is not None:
            raise ValueError("gamma: only the limit window_s = None has a closed form (cv²)")
        return float(cfg.cv) ** 2
    on, off = state_rates(cfg)
    p_on = cfg.mean_on_s / (cfg.mean_on_s + cfg.mean_off_s)
    s = 1.0 / cfg.mean_on_s + 1.0 / cfg.mean_off_s
    excess = 2.0 * p_on * (1.0 - p_on) * (on - off) ** 2 / (cfg.rate_per_s * s)
    if window_s is None:
        return 1.0 + excess
    st = s * window_s
    return 1.0 + excess * (1.0 - (-math.expm1(-st)) / st)


def intensity(cfg: ArrivalConfig, t) -> np.ndarray:
    """The arrival rate (requests/s) at process times t: rate_per_s times the normalised diurnal curve."""
    t = np.asarray(t, dtype=np.float64)
    curve = _curve(cfg)
    return np.full(t.shape, cfg.rate_per_s) if curve is None else cfg.rate_per_s * curve.value(t)


def expected_count(cfg: ArrivalConfig, start_s, end_s) -> np.ndarray:
    """Expected number of arrivals in [start_s, end_s) on the process clock: rate_per_s · (G(end) - G(start))."""
    start_s, end_s = np.asarray(start_s, dtype=np.float64), np.asarray(end_s, dtype=np.float64)
    curve = _curve(cfg)
    if curve is None:
        return cfg.rate_per_s * (end_s - start_s)
    return cfg.rate_per_s * (curve.cumulative(end_s) - curve.cumulative(start_s))


# --- stationary processes in operational time ---------------------------------------------------------------

def _stationary(cfg: ArrivalConfig, span: float, rng: np.random.Generator) -> np.ndarray:
    """Sorted points of the stationary process at rate rate_per_s on [0, span)."""
    if cfg.process == "poisson":
        n = rng.poisson(cfg.rate_per_s * span)
        return np.sort(rng.random(n) * span)
    if cfg.process == "gamma":
        return _gamma_renewal(cfg.rate_per_s, float(cfg.cv), span, rng)
    return _mmpp(cfg, span, rng)


def _gamma_renewal(rate: float, cv: float, span: float, rng: np.random.Generator) -> np.ndarray:
    shape = 1.0 / cv**2
    scale = 1.0 / (rate * shape)
    first = rng.gamma(shape + 1.0, scale) * rng.random()  # forward-recurrence time: stationary start
    chunks = [np.array([first])]
    last = first
    while last < span:
        expected = rate * (span - last)
        m = int(expected + 6.0 * max(cv, 1.0) * math.sqrt(expected) + 16)
        points = last + np.cumsum(rng.gamma(shape, scale, size=m))
        chunks.append(points)
        last = float(points[-1])
    t = np.concatenate(chunks)
    return t[: np.searchsorted(t, span, side="left")]


def _mmpp(cfg: ArrivalConfig, span: float, rng: np.random.Generator) -> np.ndarray:
    on, off = state_rates(cfg)
    means = np.array([cfg.mean_on_s, cfg.mean_off_s])
    rates = np.array([on, off])
    first_state = 0 if rng.random() < cfg.mean_on_s / (cfg.mean_on_s + cfg.mean_off_s) else 1
    states, lengths = [], []
    covered, parity = 0.0, first_state
    while covered < span:
        cycles = (span - covered) / (cfg.mean_on_s + cfg.mean_off_s)
        m = 2 * int(cycles + 6.0 * math.sqrt(cycles) + 8)
        state = (parity + np.arange(m)) % 2
        length = rng.exponential(1.0, size=m) * means[state]
        states.append(state)
        lengths.append(length)
        covered += float(length.sum())
        parity = int(state[-1] + 1) % 2
    state, length = np.concatenate(states), np.concatenate(lengths)
    start = np.concatenate(([0.0], np.cumsum(length[:-1])))
    keep = start < span
    state, start = state[keep], start[keep]
    length = np.minimum(length[keep], span - start)
    counts = rng.poisson(rates[state] * length)
    t = np.repeat(start, counts) + rng.random(int(counts.sum())) * np.repeat(length, counts)
    t.sort()
    return t[: np.searchsorted(t, span, side="left")]


# --- the diurnal curve --------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class _Curve:
    """The normalised periodic rate curve g (mean 1 over a period) as linear pieces g = a + b·(x - x0) on [0, P]."""

    x: np.ndarray  # piece starts, x[0] = 0, plus the end P
    a: np.ndarray  # value at each piece's start
    b: np.ndarray  # slope of each piece
    c: np.ndarray  # ∫ g from 0 to each piece's start, plus the total P
    period: float
    offset: float

    def _within(self, x: np.ndarray) -> np.ndarray:  # ∫_0^x g for x in [0, P]
        j = np.clip(np.searchsorted(self.x, x, side="right") - 1, 0, self.a.size - 1)
        d = x - self.x[j]
        return self.c[j] + self.a[j] * d + 0.5 * self.b[j] * d * d

    def _global(self, x: np.ndarray) -> np.ndarray:  # ∫_0^x g for any x >= 0 (g has mean 1: each period adds P)
        k = np.floor(x / self.period)
        return k * self.period + self._within(x - k * self.period)

    def cumulative(self, t) -> np.ndarray:
        """G(t) = ∫_0^t g(s + offset) ds."""
        t = np.asarray(t, dtype=np.float64)
        return self._global(t + self.offset) - self._global(np.float64(self.offset))

    def inverse(self, tau: np.ndarray) -> np.ndarray:
        """G⁻¹(τ): the earliest t with G(t) = τ (pieces where g = 0 are skipped, as no point falls there)."""
        y = tau + self._global(np.float64(self.offset))
        k = np.floor(y / self.period)
        r = y - k * self.period
        j = np.clip(np.searchsorted(self.c, r, side="right") - 1, 0, self.a.size - 1)
        r = r - self.c[j]
        a, b = self.a[j], self.b[j]
        root = np.sqrt(np.maximum(a * a + 2.0 * b * r, 0.0))
        denom = a + root
        d = np.divide(2.0 * r, denom, out=np.zeros_like(r), where=denom > 0)  # stable root of b/2·d² + a·d = r
        return k * self.period + self.x[j] + d - self.offset

    def value(self, t: np.ndarray) -> np.ndarray:
        x = np.mod(t + self.offset, self.period)
        j = np.clip(np.searchsorted(self.x, x, side="right") - 1, 0, self.a.size - 1)
        return self.a[j] + self.b[j] * (x - self.x[j])


def _curve(cfg: ArrivalConfig) -> _Curve | None:
    if cfg.diurnal is None:
        return None
    v = np.asarray(cfg.diurnal, dtype=np.float64)
    v = v / v.mean()
    n, period = v.size, cfg.diurnal_period_s
    if cfg.diurnal_shape == "step":
        starts = np.arange(n + 1) * (period / n)
        a, b = v, np.zeros(n)
        width = np.diff(starts)
        integral = a * width
    else:
        wrap = 0.5 * (v[0] + v[-1])
        knots = np.concatenate(([0.0], (np.arange(n) + 0.5) * (period / n), [period]))
        values = np.concatenate(([wrap], v, [wrap]))
        starts = knots
        width = np.diff(knots)
        a = values[:-1]
        b = np.diff(values) / width
        integral = 0.5 * width * (values[:-1] + values[1:])
    c = np.concatenate(([0.0], np.cumsum(integral)))
    c[-1] = period  # exact by construction (mean 1); pin it against rounding
    return _Curve(starts, a, b, c, period, cfg.diurnal_offset_s)
