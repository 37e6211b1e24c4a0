"""Arrival processes: mean rate, inter-arrival CV and count dispersion against theory; diurnal profile; seeds; config.

Tolerances are 5 standard errors (a false alarm about once in 1.7 million runs; the seeds are fixed anyway):
- a count N over a long horizon T has Var N ≈ λ·T·IDC(∞) (IDC: index of dispersion of counts);
- the sample CV of n i.i.d. Gamma gaps with CV c has standard error sqrt(c²(1 + c²) / (2n)) (delta method on
  (mean, variance), with the Gamma's third and fourth moments);
- where samples are dependent (MMPP gaps), the standard error comes from batch means or independent replications.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.core.config import from_dict
from bench.core.errors import ConfigError
from tasks.arrivals import (
    ArrivalConfig,
    arrival_times,
    arrivals,
    draw_origins,
    expected_count,
    index_of_dispersion,
    intensity,
    interarrival_cv,
    mean_rate,
    state_rates,
)

Z = 5.0


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(seed))


def gaps(t: np.ndarray) -> np.ndarray:
    return np.diff(t)


def sample_cv(x: np.ndarray) -> float:
    return float(x.std() / x.mean())


def batch_means_cv(x: np.ndarray, batches: int = 50) -> tuple[float, float]:
    """CV estimate and its standard error from `batches` contiguous batches (valid for weakly dependent gaps)."""
    parts = np.array_split(x, batches)
    cvs = np.array([sample_cv(p) for p in parts])
    return sample_cv(x), float(cvs.std(ddof=1) / math.sqrt(batches))


# --- stationary processes ---------------------------------------------------------------------------------

def test_poisson_rate_and_interarrival_cv():
    cfg = ArrivalConfig(rate_per_s=500.0)
    horizon = 2000.0
    t = arrival_times(cfg, horizon, rng(1))
    expected = mean_rate(cfg) * horizon  # 1,000,000
    assert abs(t.size - expected) <= Z * math.sqrt(expected)
    g = gaps(t)
    assert abs(sample_cv(g) - 1.0) <= Z * math.sqrt(1.0 / g.size)  # c²(1+c²)/2 = 1 at c = 1
    assert t[0] >= 0 and t[-1] < horizon and np.all(g >= 0)
    assert interarrival_cv(cfg) == 1.0 and index_of_dispersion(cfg) == 1.0 and index_of_dispersion(cfg, 3.0) == 1.0


@pytest.mark.parametrize("cv", [0.5, 3.0])
def test_gamma_rate_and_interarrival_cv(cv):
    cfg = ArrivalConfig(process="gamma", rate_per_s=400.0, cv=cv)
    horizon = 2500.0
    t = arrival_times(cfg, horizon, rng(2))
    expected = 400.0 * horizon
    assert abs(t.size - expected) <= Z * math.sqrt(expected * index_of_dispersion(cfg))  # renewal: IDC(∞) = cv²
    g = gaps(t)
    assert abs(g.mean() - 1 / 400.0) <= Z * cv / 400.0 / math.sqrt(g.size)
    assert abs(sample_cv(g) - cv) <= Z * math.sqrt(cv**2 * (1 + cv**2) / (2 * g.size))
    assert interarrival_cv(cfg) == cv and index_of_dispersion(cfg) == pytest.approx(cv**2)


def test_gamma_starts_stationary_so_short_windows_have_the_full_mean():
    """A renewal process started at an arrival would over- or under-count early windows; the forward-recurrence
    start makes E N(t) = λ t for every t. Replications of a window of 2 mean gaps, cv 3 (far from Poisson)."""
    cfg = ArrivalConfig(process="gamma", rate_per_s=1.0, cv=3.0)
    g = rng(3)
    counts = np.array([arrival_times(cfg, 2.0, g).size for _ in range(20000)])
    se = counts.std(ddof=1) / math.sqrt(counts.size)
    assert abs(counts.mean() - 2.0) <= Z * se


def test_mmpp_state_rates_give_the_mean_rate():
    cfg = ArrivalConfig(process="mmpp", rate_per_s=10.0, mean_on_s=2.0, mean_off_s=6.0, off_rate_fraction=0.2)
    on, off = state_rates(cfg)
    assert off == pytest.approx(0.2 * on)
    assert 0.25 * on + 0.75 * off == pytest.approx(10.0)
    # off_rate_fraction = 1 is Poisson: CV 1, IDC 1
    flat = ArrivalConfig(process="mmpp", rate_per_s=10.0, mean_on_s=2.0, mean_off_s=6.0, off_rate_fraction=1.0)
    assert interarrival_cv(flat) == pytest.approx(1.0) and index_of_dispersion(flat, 5.0) == pytest.approx(1.0)


def test_mmpp_interrupted_poisson_cv_agrees_with_the_dispersion_formula():
    """With λ_off = 0 every arrival happens in the on state, so the process is a renewal process, whose squared
    inter-arrival CV equals its limiting index of dispersion: two independent derivations (the MAP moments and the
    rate process's autocovariance) must agree, and both equal the interrupted-Poisson form 1 + 2·λ_on·r_on/(r_on + r_off)²."""
    for on_s, off_s in [(1.0, 1.0), (0.5, 4.0), (3.0, 0.2)]:
        cfg = ArrivalConfig(process="mmpp", rate_per_s=10.0, mean_on_s=on_s, mean_off_s=off_s, off_rate_fraction=0.0)
        lam_on, _ = state_rates(cfg)
        r_on, r_off = 1 / on_s, 1 / off_s
        assert interarrival_cv(cfg) ** 2 == pytest.approx(index_of_dispersion(cfg), rel=1e-10)
        assert interarrival_cv(cfg) ** 2 == pytest.approx(1 + 2 * lam_on * r_on / (r_on + r_off) ** 2, rel=1e-10)


@pytest.mark.parametrize("fraction", [0.0, 0.1])
def test_mmpp_rate_and_interarrival_cv(fraction):
    cfg = ArrivalConfig(process="mmpp", rate_per_s=200.0, mean_on_s=0.5, mean_off_s=2.0, off_rate_fraction=fraction)
    horizon = 5000.0
    t = arrival_times(cfg, horizon, rng(4))
    expected = 200.0 * horizon  # 1,000,000
    assert abs(t.size - expected) <= Z * math.sqrt(expected * index_of_dispersion(cfg))
    est, se = batch_means_cv(gaps(t))
    assert abs(est - interarrival_cv(cfg)) <= Z * se
    assert interarrival_cv(cfg) > 1.5  # really bursty: the check would catch a Poisson stand-in


def test_mmpp_index_of_dispersion_over_a_window():
    """Var N(t)/E N(t) over 20,000 independent stationary windows against the stated formula; the standard error of
    the sample variance comes from the sample's fourth central moment."""
    cfg = ArrivalConfig(process="mmpp", rate_per_s=20.0, mean_on_s=1.0, mean_off_s=1.0, off_rate_fraction=0.25)
    window = 1.5
    g = rng(5)
    counts = np.array([arrival_times(cfg, window, g).size for _ in range(20000)], dtype=np.float64)
    m, v = counts.mean(), counts.var(ddof=1)
    m4 = np.mean((counts - m) ** 4)
    se_v = math.sqrt((m4 - v**2) / counts.size)
    idc = index_of_dispersion(cfg, window)
    assert idc > 2.0  # far from Poisson
    assert abs(m - 20.0 * window) <= Z * math.sqrt(v / counts.size)
    assert abs(v / m - idc) <= Z * se_v / m + Z * math.sqrt(v / counts.size) * idc / m


# --- diurnal modulation ---------------------------------------------------------------------------------

HOURLY = (4, 2, 1, 0, 0, 1, 3, 6, 9, 10, 10, 9, 7, 8, 9, 10, 10, 11, 12, 11, 9, 8, 6, 5)


def hour_counts(t: np.ndarray, start: float, offset: float, period: float) -> np.ndarray:
    phase = np.mod(t + start + offset, period)
    return np.bincount((phase // (period / 24)).astype(np.int64), minlength=24)


def test_diurnal_step_reproduces_the_hourly_profile():
    period, offset, start, days = 2400.0, 700.0, 1234.0, 10  # a compressed day keeps the test fast
    cfg = ArrivalConfig(rate_per_s=40.0, diurnal=HOURLY, diurnal_period_s=period, diurnal_offset_s=offset)
    t = arrival_times(cfg, days * period, rng(6), start_s=start)
    counts = hour_counts(t, start, offset, period)
    expected = 40.0 * days * (period / 24) * np.asarray(HOURLY) / np.mean(HOURLY)
    assert np.all(counts[np.asarray(HOURLY) == 0] == 0)
    assert np.all(np.abs(counts - expected) <= Z * np.sqrt(expected) + 1e-9)
    assert abs(t.size - 40.0 * days * period) <= Z * math.sqrt(40.0 * days * period)


def test_diurnal_linear_matches_an_independent_integral_of_the_interpolated_curve():
    period, days = 2400.0, 10
    cfg = ArrivalConfig(rate_per_s=40.0, diurnal=HOURLY, diurnal_shape="linear", diurnal_period_s=period)
    # independent reference: np.interp through the midpoints, wrapped, integrated on a fine grid
    v = np.asarray(HOURLY, dtype=np.float64) / np.mean(HOURLY)
    mids = (np.arange(24) + 0.5) * period / 24
    xp = np.concatenate(([mids[-1] - period], mids, [mids[0] + period]))
    fp = np.concatenate(([v[-1]], v, [v[0]]))
    grid = np.linspace(0, period, 240001)
    assert np.allclose(intensity(cfg, grid[:-1]), 40.0 * np.interp(grid[:-1], xp, fp))
    fine = np.interp(grid, xp, fp)
    cum = np.concatenate(([0.0], np.cumsum(0.5 * (fine[1:] + fine[:-1]) * np.diff(grid))))
    per_hour = 40.0 * days * np.diff(cum[::10000])
    assert np.allclose(expected_count(cfg, np.arange(24) * 100.0, np.arange(1, 25) * 100.0) * days, per_hour, rtol=1e-6)
    t = arrival_times(cfg, days * period, rng(7))
    counts = hour_counts(t, 0.0, 0.0, period)
    assert np.all(np.abs(counts - per_hour) <= Z * np.sqrt(per_hour))


def test_diurnal_bursty_process_keeps_rate_and_profile():
    period, days, cv = 2400.0, 10, 2.0
    cfg = ArrivalConfig(process="gamma", rate_per_s=40.0, cv=cv, diurnal=HOURLY, diurnal_period_s=period)
    t = arrival_times(cfg, days * period, rng(8))
    counts = hour_counts(t, 0.0, 0.0, period)
    expected = 40.0 * days * (period / 24) * np.asarray(HOURLY) / np.mean(HOURLY)
    assert np.all(np.abs(counts - expected) <= Z * cv * np.sqrt(expected) + 1e-9)  # count variance ≈ cv² · mean


def test_diurnal_curve_inverse_is_exact():
    """Mapping through G⁻¹ then G returns the operational times (both shapes, with an offset and zero-rate hours)."""
    from tasks.arrivals import _curve  # the module's own helper, tested directly

    for shape in ("step", "linear"):
        cfg = ArrivalConfig(rate_per_s=1.0, diurnal=HOURLY, diurnal_shape=shape, diurnal_offset_s=5000.0)
        curve = _curve(cfg)
        tau = np.sort(rng(9).random(10000) * 3 * 86400)
        t = curve.inverse(tau)
        assert np.all(np.diff(t) >= 0)
        assert np.allclose(curve.cumulative(t), tau, rtol=0, atol=1e-6)
        assert curve.cumulative(np.array([86400.0]))[0] == pytest.approx(86400.0)


# --- origins, determinism, speed ----------------------------------------------------------------------------

def test_origins_uniform_and_weighted():
    n = 200000
    o = draw_origins(n, 4, None, rng(10))
    share = np.bincount(o, minlength=4) / n
    assert np.all(np.abs(share - 0.25) <= Z * math.sqrt(0.25 * 0.75 / n))
    w = (1.0, 0.0, 3.0, 4.0)
    o = draw_origins(n, 4, w, rng(11))
    share = np.bincount(o, minlength=4) / n
    p = np.asarray(w) / sum(w)
    assert share[1] == 0
    assert np.all(np.abs(share - p) <= Z * np.sqrt(p * (1 - p) / n) + 1e-12)
    with pytest.raises(ConfigError, match="origin_weights"):
        draw_origins(10, 3, w, rng(0))


@pytest.mark.parametrize(
    "cfg",
    [
        ArrivalConfig(rate_per_s=50.0),
        ArrivalConfig(process="gamma", rate_per_s=50.0, cv=2.0, diurnal=HOURLY),
        ArrivalConfig(process="mmpp", rate_per_s=50.0, mean_on_s=1.0, mean_off_s=3.0, off_rate_fraction=0.0, origin_weights=(1, 2, 3)),
    ],
)
def test_determined_by_the_generator(cfg):
    a = arrivals(cfg, 3, 100.0, rng(12))
    b = arrivals(cfg, 3, 100.0, rng(12))
    c = arrivals(cfg, 3, 100.0, rng(13))
    assert np.array_equal(a.arrival_s, b.arrival_s) and np.array_equal(a.origin, b.origin)
    assert not np.array_equal(a.arrival_s[:10], c.arrival_s[:10])
    assert a.arrival_s.dtype == np.float64 and a.origin.dtype == np.int64 and a.origin.shape == a.arrival_s.shape
    assert np.all(np.diff(a.arrival_s) >= 0) and a.arrival_s[0] >= 0 and a.arrival_s[-1] < 100.0


# a million arrivals each (20 origins x 100 s x 10^4 per s x 1/2 on average): tests/benchmarks/test_arrivals_speed.py times them
MILLION = {
    "poisson": ArrivalConfig(rate_per_s=1e4),
    "gamma": ArrivalConfig(process="gamma", rate_per_s=1e4, cv=3.0),
    "mmpp": ArrivalConfig(process="mmpp", rate_per_s=1e4, mean_on_s=1.0, mean_off_s=3.0, off_rate_fraction=0.1),
    "gamma-diurnal": ArrivalConfig(process="gamma", rate_per_s=1e4, cv=2.0, diurnal=HOURLY, diurnal_shape="linear", diurnal_period_s=50.0),
}


@pytest.mark.parametrize("cfg", MILLION.values(), ids=MILLION.keys())
def test_a_million_arrivals_in_one_call(cfg):
    """Every process draws a million arrivals in one vectorised call (its speed: tests/benchmarks/test_arrivals_speed.py)."""
    a = arrivals(cfg, 20, 100.0, rng(14))
    assert a.arrival_s.size > 500_000 and np.all(np.diff(a.arrival_s) >= 0)


# --- configuration ----------------------------------------------------------------------------------------

def test_config_from_toml_table():
    cfg = from_dict(ArrivalConfig, {"process": "mmpp", "rate_per_s": 3, "mean_on_s": 10, "mean_off_s": 50, "off_rate_fraction": 0,
                                    "diurnal": [1, 2, 3], "diurnal_shape": "linear", "origin_weights": [1, 1]})
    assert cfg.rate_per_s == 3.0 and cfg.diurnal == (1.0, 2.0, 3.0) and cfg.off_rate_fraction == 0.0


@pytest.mark.parametrize(
    "data, field",
    [
        ({"process": "gamma", "rate_per_s": 1}, "cv"),
        ({"rate_per_s": 1, "cv": 2}, "cv"),
        ({"process": "gamma", "rate_per_s": 1, "cv": 25}, "cv"),
        ({"process": "mmpp", "rate_per_s": 1, "mean_on_s": 1, "mean_off_s": 1}, "off_rate_fraction"),
        ({"rate_per_s": 1, "mean_on_s": 1}, "mean_on_s"),
        ({"process": "mmpp", "rate_per_s": 1, "mean_on_s": 1, "mean_off_s": 1, "off_rate_fraction": 1.5}, "off_rate_fraction"),
        ({"rate_per_s": 0}, "rate_per_s"),
        ({"process": "hawkes", "rate_per_s": 1}, "process"),
        ({"rate_per_s": 1, "diurnal": [0, 0]}, "diurnal"),
        ({"rate_per_s": 1, "diurnal": [1, -1]}, "diurnal[1]"),
        ({"rate_per_s": 1, "diurnal_period_s": 3600}, "diurnal_period_s"),
        ({"rate_per_s": 1, "diurnal": [1, 2], "diurnal_offset_s": 86400}, "diurnal_offset_s"),
        ({"rate_per_s": 1, "origin_weights": [0, 0]}, "origin_weights"),
        ({"rate_per_s": 1, "lambda": 2}, "lambda"),
    ],
)
def test_config_errors_name_the_field(data, field):
    with pytest.raises(ConfigError) as info:
        from_dict(ArrivalConfig, data, "tasks.arrivals")
    assert info.value.field == f"tasks.arrivals.{field}"
    assert "\n" not in str(info.value)


def test_bad_horizon_is_a_config_error():
    with pytest.raises(ConfigError, match="horizon_s"):
        arrival_times(ArrivalConfig(rate_per_s=1.0), 0.0, rng(0))
    with pytest.raises(ConfigError, match="n_origins"):
        arrivals(ArrivalConfig(rate_per_s=1.0), 0, 1.0, rng(0))
