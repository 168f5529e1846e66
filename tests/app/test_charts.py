"""The one SVG chart renderer: accessible markup whose numbers a reader can also get as a
table, with gaps where there is no data."""

from __future__ import annotations

import re

from app.web.charts import Series, bar_chart, line_chart


def test_a_bar_chart_is_an_image_named_and_described_with_its_numbers_as_a_table():
    chart = bar_chart(
        "jobs <per> hour",
        "Jobs per hour",
        "Completed and failed jobs in each of the last 3 hours",
        ["10:00", "11:00", "12:00"],
        [Series("completed", [3, 0, 5]), Series("failed", [1, 0, None])],
    )
    assert 'role="img"' in chart and "<script" not in chart
    cid = re.search(r'<figure class="chart" id="([^"]+)"', chart).group(1)
    assert cid == "jobs--per--hour"  # an id that cannot break out of its attribute
    assert f'aria-labelledby="{cid}-title {cid}-desc"' in chart
    assert f'<title id="{cid}-title">Jobs per hour</title>' in chart
    # Stacked: 10:00 has two segments, 11:00 none, 12:00 one.
    assert chart.count("<rect") == 3
    assert "<td>3</td><td>1</td>" in chart  # the table fallback
    assert '<th scope="row">12:00</th><td>5</td><td>–</td>' in chart


def test_a_line_chart_breaks_where_a_value_is_missing_and_escapes_names():
    chart = line_chart(
        "wait",
        "Queue wait",
        "p50 and p95 of the queue wait per hour",
        ["a", "b", "c", "d"],
        [Series("p50 <median>", [1.5, 2, None, 4]), Series("p95", [None, None, None, None])],
        unit=" s",
    )
    assert chart.count("<polyline") == 1  # a, b joined; d alone; p95 nothing
    assert chart.count("<circle") == 3
    assert "p50 &lt;median&gt;" in chart and "<median>" not in chart
    assert "<td>1.5 s</td>" in chart
