"""Router evaluation metrics over a router's operating points (cost, quality).

A router with a price knob (lambda) traces a curve of operating points as the
knob is swept. Definitions used here:

- PGR (RouteLLM): (q - q_weak) / (q_strong - q_weak). RouteLLM's x axis is the
  share of calls sent to the strong model; with several models we use the cost
  share between the weak and strong models, x = (c - c_weak) / (c_strong - c_weak),
  which is the same thing when there are two models.
- APGR: the area under PGR(x) for x in [0, 1], where PGR(x) is that of the best
  operating point costing at most x (a point the router actually reaches; 0
  where it reaches none). Integrated on a fine grid.
- CPT(p): the smallest x at which some operating point has PGR >= p (inf when none).
- AIQ (RouterBench): the area under the router's non-decreasing convex hull in
  the cost-quality plane over [c_min, c_max], divided by (c_max - c_min). The hull
  is flat after its last point and 0 before its first. Mixing two operating points
  at random realises any point on the segment between them, hence the hull.
"""

from __future__ import annotations

import numpy as np

Points = np.ndarray  # (k, 2): cost, quality


def as_points(points) -> Points:
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return p[np.lexsort((-p[:, 1], p[:, 0]))]  # by cost, best quality first


def best_quality_within(points, budget: float) -> float | None:
    p = as_points(points)
    ok = p[p[:, 0] <= budget + 1e-12]
    return float(ok[:, 1].max()) if len(ok) else None


def cost_to_reach(points, target: float) -> float | None:
    p = as_points(points)
    ok = p[p[:, 1] >= target - 1e-12]
    return float(ok[:, 0].min()) if len(ok) else None


def nondecreasing_hull(points) -> Points:
    """Upper convex hull of the points that is non-decreasing in quality as cost grows."""
    p = as_points(points)
    start = int(np.argmin(p[:, 0]))  # cheapest point, best quality among equals
    hull = [p[start]]
    for pt in p[start + 1:]:
        if pt[1] <= hull[-1][1]:
            continue  # costs more, no better: never on a non-decreasing hull
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            # drop the middle point when it lies on or below the chord to the new point
            if (x2 - x1) * (pt[1] - y1) - (y2 - y1) * (pt[0] - x1) >= 0:
                hull.pop()
            else:
                break
        hull.append(pt)
    return np.array(hull)


def aiq(points, c_min: float, c_max: float) -> float:
    hull = nondecreasing_hull(points)
    grid = np.linspace(c_min, c_max, 2001)
    q = np.interp(grid, hull[:, 0], hull[:, 1], left=0.0, right=hull[-1, 1])
    if len(hull) == 1:
        q = np.where(grid >= hull[0, 0], hull[0, 1], 0.0)
    else:
        q = np.where(grid < hull[0, 0], 0.0, q)
    return float(np.trapezoid(q, grid) / (c_max - c_min)) if c_max > c_min else float(q[-1])


def pgr_points(points, weak: tuple[float, float], strong: tuple[float, float]) -> np.ndarray:
    """(k, 2) array of (x, PGR) for each operating point."""
    p = as_points(points)
    (cw, qw), (cs, qs) = weak, strong
    x = (p[:, 0] - cw) / (cs - cw)
    return np.stack([x, (p[:, 1] - qw) / (qs - qw)], axis=1)


def apgr(points, weak: tuple[float, float], strong: tuple[float, float], steps: int = 1001) -> float:
    xp = pgr_points(points, weak, strong)
    grid = np.linspace(0.0, 1.0, steps)
    vals = np.array([xp[xp[:, 0] <= x + 1e-12, 1].max(initial=-np.inf) for x in grid])
    vals = np.where(np.isfinite(vals), vals, 0.0)
    return float(np.trapezoid(vals, grid))


def cpt(points, weak: tuple[float, float], strong: tuple[float, float], pgr: float) -> float:
    xp = pgr_points(points, weak, strong)
    ok = xp[xp[:, 1] >= pgr - 1e-12, 0]
    return float(max(ok.min(), 0.0)) if len(ok) else float("inf")
