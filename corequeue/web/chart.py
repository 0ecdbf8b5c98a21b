"""Geometry for the overview's throughput chart: stacked bars per minute, drawn as SVG by the
template (no JavaScript library). Pure: numbers in, shapes out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from corequeue.store.monitoring import MinuteBucket

WIDTH, HEIGHT = 1100, 230
LEFT, RIGHT, TOP, BOTTOM = 44, 24, 10, 26


@dataclass(frozen=True, slots=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    kind: str  # css class: succeeded, failed, cancelled


@dataclass(frozen=True, slots=True)
class Column:
    x: float
    width: float
    title: str  # tooltip text
    rects: tuple[Rect, ...]


@dataclass(frozen=True, slots=True)
class Tick:
    position: float
    label: str


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    plot_left: float
    plot_right: float
    plot_top: float
    plot_bottom: float
    columns: tuple[Column, ...]
    y_ticks: tuple[Tick, ...]
    x_ticks: tuple[Tick, ...]
    peak: int
    total: int
    failed: int

    @property
    def failure_rate(self) -> float | None:
        return self.failed / self.total if self.total else None


def nice_ceiling(value: int) -> int:
    """The top of the y axis: four equal whole steps of 1, 2, 3 or 5 x 10^k covering ``value``."""
    step = 1
    while True:
        for factor in (1, 2, 3, 5):
            if 4 * factor * step >= value:
                return 4 * factor * step
        step *= 10


def throughput_chart(buckets: Sequence[MinuteBucket], *, label_every: int = 15) -> Chart:
    """Stacked bars (succeeded, failed, cancelled) for each minute, oldest on the left."""
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM
    peak = max((b.finished for b in buckets), default=0)
    top = nice_ceiling(peak)
    slot = plot_w / max(len(buckets), 1)
    gap = min(2.0, slot * 0.2)
    columns = []
    x_ticks = []
    for i, b in enumerate(buckets):
        x = LEFT + i * slot
        base = float(TOP + plot_h)
        rects = []
        for kind, n in (
            ("succeeded", b.succeeded),
            ("failed", b.failed),
            ("cancelled", b.cancelled),
        ):
            if n:
                h = plot_h * n / top
                base -= h
                rects.append(
                    Rect(
                        round(x + gap / 2, 2),
                        round(base, 2),
                        round(slot - gap, 2),
                        round(h, 2),
                        kind,
                    )
                )
        title = (
            f"{b.start:%H:%M} UTC: {b.succeeded} succeeded, {b.failed} failed, "
            f"{b.cancelled} cancelled"
        )
        columns.append(Column(round(x, 2), round(slot, 2), title, tuple(rects)))
        if (len(buckets) - 1 - i) % label_every == 0:
            x_ticks.append(Tick(round(x + slot / 2, 2), f"{b.start:%H:%M}"))
    y_ticks = tuple(
        Tick(round(TOP + plot_h * (1 - f), 2), str(int(top * f))) for f in (0, 0.25, 0.5, 0.75, 1)
    )
    return Chart(
        WIDTH,
        HEIGHT,
        LEFT,
        WIDTH - RIGHT,
        TOP,
        TOP + plot_h,
        tuple(columns),
        y_ticks,
        tuple(x_ticks),
        peak,
        sum(b.finished for b in buckets),
        sum(b.failed for b in buckets),
    )
