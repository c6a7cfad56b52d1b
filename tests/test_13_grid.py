"""The config's ``grid`` and its resolution for a selection (SPEC §4, §6b; issue #14): pure, no pixels."""

from __future__ import annotations

from typing import Any

import pytest
from pyproj import CRS, Transformer

from icecube_cloud.errors import ConfigError
from icecube_cloud.grid import resolve_grid
from icecube_cloud.gridspec import parse_grid
from icecube_cloud.model import GridSpec

# Two footprints near Seville (UTM zone 29N / 30N border is at 6 W: these are in 29N).


def _box(w: float, s: float, e: float, n: float) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}


A = _box(-6.30, 37.40, -6.20, 37.48)
B = _box(-6.25, 37.45, -6.15, 37.52)


def test_defaults() -> None:
    assert parse_grid("grid", {}) == GridSpec()
    given = {"crs": "EPSG:32629", "resolution": 3, "bbox": [-6.3, 37.4, -6.2, 37.5]}
    spec = parse_grid("grid", {**given, "resampling": "bilinear"})
    assert spec == GridSpec(
        crs="EPSG:32629", resolution=3.0, bbox=(-6.3, 37.4, -6.2, 37.5), resampling="bilinear"
    )
    assert spec.to_dict()["bbox"] == [-6.3, 37.4, -6.2, 37.5]


@pytest.mark.parametrize(
    ("value", "key", "words"),
    [
        ([1, 2], "grid", "expected an object"),
        ({"resolutoin": 3}, "grid.resolutoin", "did you mean 'resolution'"),
        ({"crs": "EPSG:999999"}, "grid.crs", "not a coordinate reference system"),
        ({"crs": 32629}, "grid.crs", "expected"),
        ({"resolution": 0}, "grid.resolution", "> 0"),
        ({"resolution": True}, "grid.resolution", "finite number"),
        ({"resolution": "3"}, "grid.resolution", "finite number"),
        ({"bbox": [-6.3, 37.4, -6.2]}, "grid.bbox", "4 numbers"),
        ({"bbox": [-6.3, 37.4, -6.3, 37.5]}, "grid.bbox", "no area"),
        ({"resampling": "bilinar"}, "grid.resampling", "did you mean 'bilinear'"),
        ({"resampling": "fancy"}, "grid.resampling", "nearest"),
    ],
)
def test_bad_grid_names_the_field(value: Any, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_grid("grid", value)
    assert err.value.key == key and words in str(err.value) and err.value.exit_code == 2


def test_utm_zone_resolution_and_edges_on_multiples() -> None:
    grid = resolve_grid(GridSpec(resolution=10.0), [A, B], [3.0, 3.0])
    assert grid.crs == "EPSG:32629"  # the zone of the footprints' centroid
    a, b, c, d, e, f = grid.transform
    assert (a, b, d, e) == (10.0, 0.0, 0.0, -10.0)  # north-up, y descending
    assert c % 10 == 0 and f % 10 == 0  # pixel edges on multiples of the resolution
    # The grid covers the union of the footprints: every corner falls inside it.
    to_utm = Transformer.from_crs("EPSG:4326", "EPSG:32629", always_xy=True)
    ny, nx = grid.shape
    for ring in (A, B):
        for lon, lat in ring["coordinates"][0]:
            x, y = to_utm.transform(lon, lat)
            assert c <= x <= c + nx * a and f + ny * e <= y <= f
    assert CRS.from_wkt(grid.crs_wkt).to_epsg() == 32629
    assert grid.geo_transform == (c, a, b, f, d, e)
    assert grid.x()[0] == c + 5 and grid.y()[0] == f - 5 and len(grid.y()) == ny


def test_default_resolution_and_explicit_bbox_and_crs() -> None:
    grid = resolve_grid(GridSpec(), [A, B], [2.0, 3.0, 3.0])
    assert grid.resolution == 3.0  # the median of the products' pixel size
    asked = GridSpec(crs="EPSG:32630", resolution=20, bbox=(-6.3, 37.4, -6.2, 37.45))
    boxed = resolve_grid(asked, [A, B], [3])
    assert boxed.crs == "EPSG:32630" and boxed.resolution == 20
    ny, nx = boxed.shape
    assert 200 < nx * 20 < 9_500 and 5_000 < ny * 20 < 6_500  # ~9 km by ~5.6 km
    degrees = resolve_grid(GridSpec(crs="EPSG:4326"), [A], [11.132])
    assert degrees.resolution == pytest.approx(1e-4)  # metres -> degrees of latitude


def test_same_site_grids_align() -> None:
    """Two cubes of one site on the same resolution share pixel edges (they can be stacked)."""
    one = resolve_grid(GridSpec(resolution=5.0), [A], [1])
    two = resolve_grid(GridSpec(resolution=5.0), [B], [1])
    assert one.crs == two.crs
    assert (one.transform[2] - two.transform[2]) % 5 == 0
    assert (one.transform[5] - two.transform[5]) % 5 == 0


def test_absurd_grids_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="too large") as err:
        resolve_grid(GridSpec(resolution=0.001, bbox=(-7.0, 37.0, -6.0, 38.0)), [A], [1])
    assert err.value.key == "grid"
