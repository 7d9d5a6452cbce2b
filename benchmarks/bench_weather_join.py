"""Weather along tracks: seatrial.features.join_grid vs xarray's own `ds.interp` (the peer).

A realistic grid: 1 degree x 3-hourly over one year (2920 steps) on a North Atlantic box
(lat 0..70, lon -80..40), six float32 variables (the fleet's), held in memory. Tracks: vessels
reporting every 15 minutes for a year, moving smoothly (about 12 kn) inside the box.
Both methods get the same indexers (the peer's times cast to the grid's datetime unit, see below);
we report points per second, the ratio, and the largest absolute difference of their values.

Run:  python benchmarks/bench_weather_join.py [--points 1000000 5000000] [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
import pandas as pd
import xarray as xr

from seatrial.features import OutsideGridWarning, join_grid

VARIABLES = ["wind_u", "wind_v", "hs_m", "current_u", "current_v", "sst_c"]


def make_grid(seed: int = 0) -> xr.Dataset:
    "A year of 3-hourly 1-degree fields: smooth large-scale patterns plus noise, float32."
    rng = np.random.default_rng(seed)
    times = pd.date_range("2025-01-01", periods=2920, freq="3h")
    lat, lon = np.arange(0.0, 71.0), np.arange(-80.0, 41.0)
    shape = (len(times), len(lat), len(lon))
    h = np.arange(len(times))[:, None, None] / 8.0
    base = np.sin(np.deg2rad(lat))[None, :, None] * np.cos(np.deg2rad(lon))[None, None, :]
    data = {}
    for k, v in enumerate(VARIABLES):
        field = (5 + k) * base * np.cos(2 * np.pi * h / (20 + k)) + rng.standard_normal(shape, dtype=np.float32)
        data[v] = (("time", "lat", "lon"), field.astype(np.float32))
    return xr.Dataset(data, coords={"time": times, "lat": lat, "lon": lon})


def make_tracks(n: int, seed: int = 1) -> pd.DataFrame:
    "n reports, 15 minutes apart per vessel, smooth tracks folded into the grid's box."
    rng = np.random.default_rng(seed)
    per_vessel = 35040  # a year of 15-minute reports
    n_vessels = -(-n // per_vessel)
    start = pd.Timestamp("2025-01-01", tz="UTC")
    step = np.arange(per_vessel)
    frames = []
    for _ in range(n_vessels):
        heading = np.cumsum(rng.normal(0, 0.05, per_vessel)) + rng.uniform(0, 2 * np.pi)
        dist = 12 / 60 / 4  # 12 kn for 15 min, in degrees (1 deg ~ 60 nm)
        lat = 5 + np.cumsum(dist * np.cos(heading)) + rng.uniform(0, 60)
        lon = -75 + np.cumsum(dist * np.sin(heading)) + rng.uniform(0, 110)

        def fold(x, lo, hi):
            span = hi - lo
            y = np.mod(x - lo, 2 * span)
            return lo + np.where(y > span, 2 * span - y, y)

        frames.append(pd.DataFrame({
            "time": start + pd.to_timedelta(step * 15, unit="min"),
            "lat": fold(lat, 0.5, 69.5), "lon": fold(lon, -79.5, 39.5),
        }))
    return pd.concat(frames, ignore_index=True).iloc[:n]


def peer_interp(ds: xr.Dataset, df: pd.DataFrame) -> xr.Dataset:
    # xarray returns NaN everywhere if the indexer's datetime unit differs from the grid's
    # (pandas 3 grids are datetime64[us]; this telemetry is datetime64[ns]), so cast it first.
    t = df["time"].dt.tz_convert(None).to_numpy().astype(ds["time"].dtype)
    return ds.interp(time=xr.DataArray(t, dims="points"),
                     lat=xr.DataArray(df["lat"].to_numpy(), dims="points"),
                     lon=xr.DataArray(df["lon"].to_numpy(), dims="points"), method="linear").load()


def timed(fn, repeat: int):
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, nargs="+", default=[1_000_000, 5_000_000])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--peer-repeat", type=int, default=1)
    args = ap.parse_args()
    # the last 3 h of the year lie past the grid's last step: those rows are NaN in both methods
    warnings.simplefilter("ignore", OutsideGridWarning)
    ds = make_grid()
    print(f"grid: {dict(ds.sizes)}, {len(VARIABLES)} vars, {ds.nbytes / 1e6:.0f} MB in memory; "
          f"cpus {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}")
    print("| points | join_grid s | join_grid Mpts/s | ds.interp s | ds.interp Mpts/s | ratio | max abs diff |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n in args.points:
        df = make_tracks(n)
        t_ours, ours = timed(lambda df=df: join_grid(df, ds, VARIABLES), args.repeat)
        t_peer, peer = timed(lambda df=df: peer_interp(ds, df), args.peer_repeat)
        diff = max(float(np.nanmax(np.abs(ours[v].to_numpy() - peer[v].to_numpy()))) for v in VARIABLES)
        nan_mismatch = sum(int((ours[v].isna().to_numpy() != np.isnan(peer[v].to_numpy())).sum()) for v in VARIABLES)
        print(f"| {n:,} | {t_ours:.3f} | {n / t_ours / 1e6:.2f} | {t_peer:.2f} | {n / t_peer / 1e6:.2f} | "
              f"{t_peer / t_ours:.1f}x | {diff:.1e} (NaN: {int(ours[VARIABLES[0]].isna().sum())}, mismatches {nan_mismatch}) |", flush=True)


if __name__ == "__main__":
    main()
