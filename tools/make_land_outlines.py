"""Convert Natural Earth 1:110m country outlines into seatrial's offline basemap, `src/seatrial/data/ne_110m_land.json`.

A one-off tool, run by a developer, never at run time: the JSON it writes is shipped as package data and read by
`seatrial.audit.map.land_outlines`, so the audit map draws land without any network access.

Source: Natural Earth 1:110m Cultural Vectors, Admin 0 - Countries (https://www.naturalearthdata.com), public domain
("No permission is needed to use Natural Earth"). The copy used is the `naturalearth_lowres` shapefile that ships
as a test fixture in the pyogrio wheel (pyogrio/tests/fixtures/naturalearth_lowres/, copied there from GeoPandas,
recorded there as public domain).

Needs `pyshp` (`pip install pyshp`) to read the shapefile. pyshp is NOT a dependency of seatrial: only this script
uses it. Usage:

    python tools/make_land_outlines.py path/to/naturalearth_lowres.shp  [out.json]
    python tools/make_land_outlines.py path/to/pyogrio-0.13.0-....whl   [out.json]

Output: one JSON object with a header (source, licence, crs, precision) and `polygons`, a list of polygons, each a
list of rings (the first the exterior, the rest holes), each ring a list of [lon, lat] in degrees (WGS84) rounded to
`precision` (0.01 deg, about 1 km, far finer than the 1:110m source's own accuracy). Consecutive points that become
equal after rounding are dropped; every ring is closed. `names` gives each polygon's country.
"""
from __future__ import annotations

import io
import itertools
import json
import sys
import zipfile
from pathlib import Path

import shapefile  # pyshp

FIXTURE = "pyogrio/tests/fixtures/naturalearth_lowres/naturalearth_lowres"
OUT = Path(__file__).resolve().parents[1] / "src" / "seatrial" / "data" / "ne_110m_land.json"
DIGITS = 2


def _reader(src: Path) -> shapefile.Reader:
    "A shapefile reader on a .shp path or on the fixture inside a pyogrio wheel, in the .cpg file's text encoding."
    if src.suffix == ".whl":
        z = zipfile.ZipFile(src)
        part = {ext: io.BytesIO(z.read(f"{FIXTURE}.{ext}")) for ext in ("shp", "shx", "dbf")}
        encoding = z.read(f"{FIXTURE}.cpg").decode().strip()
        return shapefile.Reader(shp=part["shp"], shx=part["shx"], dbf=part["dbf"], encoding=encoding)
    cpg = src.with_suffix(".cpg")
    encoding = cpg.read_text().strip() if cpg.exists() else "utf-8"
    return shapefile.Reader(str(src.with_suffix("")), encoding=encoding)


def _signed_area(ring: list[list[float]]) -> float:
    "Shoelace area: negative for clockwise rings (shapefile exteriors), positive for holes."
    return 0.5 * sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(ring, ring[1:] + ring[:1]))


def _round_ring(points: list[tuple[float, float]]) -> list[list[float]]:
    "Round to DIGITS decimals, drop repeated points, close the ring."
    out: list[list[float]] = []
    for x, y in points:
        p = [round(float(x), DIGITS), round(float(y), DIGITS)]
        if not out or p != out[-1]: out.append(p)
    if out and out[0] != out[-1]: out.append(out[0])
    return out


def convert(src: Path) -> dict:
    "Read the Natural Earth shapefile; return the JSON-ready basemap."
    polygons, names = [], []
    reader = _reader(src)
    for rec, shape in zip(reader.records(), reader.shapes()):
        bounds = [*shape.parts, len(shape.points)]
        current: list[list[list[float]]] | None = None
        for a, b in itertools.pairwise(bounds):
            ring = _round_ring(shape.points[a:b])
            if len(ring) < 4: continue  # collapsed to a point or a line by rounding
            if _signed_area(ring) < 0 or current is None:  # clockwise: a new exterior (shapefile convention)
                current = [ring]
                polygons.append(current)
                names.append(rec["name"])
            else:
                current.append(ring)
    return {
        "source": "Natural Earth 1:110m Admin 0 - Countries (naturalearthdata.com), via the naturalearth_lowres "
                  "fixture of pyogrio 0.13.0 (copied from GeoPandas)",
        "licence": "public domain (Natural Earth: no permission is needed to use it)",
        "crs": "EPSG:4326, [lon, lat] in degrees",
        "precision": 10.0 ** -DIGITS,
        "made_by": "tools/make_land_outlines.py",
        "polygons": polygons,
        "names": names,
    }


def main(argv: list[str]) -> None:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        raise SystemExit(0 if argv else 2)
    out = Path(argv[1]) if len(argv) > 1 else OUT
    data = convert(Path(argv[0]))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, separators=(",", ":")) + "\n", encoding="utf-8")
    rings = sum(len(p) for p in data["polygons"])
    pts = sum(len(r) for p in data["polygons"] for r in p)
    print(f"wrote {out}: {len(data['polygons'])} polygons, {rings} rings, {pts} points, {out.stat().st_size:,} bytes")


if __name__ == "__main__":
    main(sys.argv[1:])
