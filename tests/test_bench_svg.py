"""The benchmarks' SVG line chart: valid XML, one line per series at the right places."""

import xml.dom.minidom

import pytest

from bench.svg import BOTTOM, LEFT, RIGHT, TOP, H, W, line_chart


def _points(poly) -> list[tuple[float, float]]:
    return [tuple(map(float, p.split(","))) for p in poly.getAttribute("points").split()]


def test_series_are_scaled_into_the_plot_area(tmp_path):
    path = line_chart(tmp_path / "c.svg", "cost <against> quality", "cost", "quality",
                      {"a & b": [(2.0, 0.5), (0.0, 0.1), (1.0, 0.3)], "c": [(0.0, 0.2), (2.0, 0.2)]},
                      hlines={"target": 0.6}, markers={"best single": (3.0, 0.4)})
    doc = xml.dom.minidom.parse(str(path))  # escaping of <, > and & keeps it well-formed
    polys = doc.getElementsByTagName("polyline")
    assert len(polys) == 2
    a = _points(polys[0])
    # sorted by x; the lowest x sits on the left edge; the marker (x=3) widens the x range
    span = W - LEFT - RIGHT
    assert [round(x) for x, _ in a] == [LEFT, round(LEFT + span / 3), round(LEFT + 2 * span / 3)]
    dots = doc.getElementsByTagName("circle")  # each measured point, then the marker
    assert len(dots) == 3 + 2 + 1
    assert float(dots[-1].getAttribute("cx")) == pytest.approx(W - RIGHT)
    # y grows downwards: the smallest value (0.1) is at the bottom, the target line (0.6) at the top
    assert a[0][1] == pytest.approx(H - BOTTOM)
    assert a[0][1] > a[1][1] > a[2][1] > TOP
    texts = [t.firstChild.data for t in doc.getElementsByTagName("text")]
    assert "a & b" in texts and "cost <against> quality" in texts and any("target" in t for t in texts)


def test_a_chart_with_no_points_is_refused(tmp_path):
    with pytest.raises(ValueError):
        line_chart(tmp_path / "c.svg", "t", "x", "y", {"empty": []})
    assert not (tmp_path / "c.svg").exists()


def test_y_min_pins_the_axis_bottom(tmp_path):
    path = line_chart(tmp_path / "c.svg", "t", "tokens", "ms", {"kv": [(256, 20.0), (8192, 40.0)]}, y_min=0.0)
    doc = xml.dom.minidom.parse(str(path))
    (poly,) = doc.getElementsByTagName("polyline")
    (_, y_low), (_, y_high) = _points(poly)
    plot_h = H - TOP - BOTTOM
    assert y_low == pytest.approx(TOP + plot_h / 2)  # 20 of 0..40 is half way up
    assert y_high == pytest.approx(TOP)
    texts = [t.firstChild.data for t in doc.getElementsByTagName("text")]
    assert "8,192" in texts and "0" in texts  # thousands get separators, not 8.19e+03


def test_log_y_spaces_decades_evenly(tmp_path):
    path = line_chart(tmp_path / "c.svg", "t", "load", "s", {"p": [(0.5, 0.2), (0.6, 2.0), (0.7, 20.0)]}, log_y=True)
    doc = xml.dom.minidom.parse(str(path))
    ys = [y for _, y in _points(doc.getElementsByTagName("polyline")[0])]
    assert ys[0] - ys[1] == pytest.approx(ys[1] - ys[2])  # x10 each step: equal steps up
    texts = [t.firstChild.data for t in doc.getElementsByTagName("text")]
    assert {"0.1", "1", "10", "100"} <= set(texts)  # ticks at whole decades around the data
    with pytest.raises(ValueError):
        line_chart(tmp_path / "d.svg", "t", "x", "y", {"p": [(0, 0.0), (1, 1.0)]}, log_y=True)
