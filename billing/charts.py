"""Geometry for the server-rendered SVG spend chart (no JavaScript, no chart library).

`stacked_bars` turns daily amounts into rectangles in a fixed viewBox; the template only draws
them. Bars stack "credit" under "own money"; the y axis has round ticks.
"""

from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

WIDTH, HEIGHT = 720, 240
# Plot margins, for the axis labels. The SVG scales to its card, so on a phone (a ~310 px card)
# one unit is ~0.43 px: responsive.css raises the labels' font size there to stay >= 11 px, and
# these margins leave room for that (decision 0029). Day labels hang below the axis.
LEFT, RIGHT, TOP, BOTTOM = 76, 8, 14, 34
LABEL_GAP = 6  # between the x axis and the top of a day label (dominant-baseline: hanging)


@dataclass
class Bar:
    label: str  # the day, for the x axis and the tooltip
    x: float
    width: float
    credit_y: float
    credit_h: float
    own_y: float
    own_h: float
    credit: Decimal
    own: Decimal
    show_label: bool
    cx: float  # centre, for the day label
    slot_x: float  # the whole column, so hovering anywhere above a day shows its tooltip
    slot_w: float


@dataclass
class Tick:
    y: float
    value: Decimal


@dataclass
class Chart:
    width: int
    height: int
    left: int
    right_x: int
    base_y: float
    bars: list[Bar]
    ticks: list[Tick]
    empty: bool
    top: int = TOP
    plot_h: int = HEIGHT - TOP - BOTTOM

    @property
    def label_y(self) -> float:
        return self.base_y + LABEL_GAP

    @property
    def tick_x(self) -> int:
        return self.left - 8


def nice_step(value: Decimal) -> Decimal:
    """The smallest of 1, 2, 2.5, 5 × 10ⁿ at or above `value` (n ≥ 0, so at least 1)."""
    if value <= 1:
        return Decimal(1)
    scale = Decimal(10) ** (len(str(int(value))) - 1)
    for step in (1, 2, Decimal("2.5"), 5):
        if value <= step * scale:
            return step * scale
    return 10 * scale


def axis(top: Decimal, ticks: int = 4) -> tuple[Decimal, Decimal]:
    """(step, ceiling): a round step with at most `ticks` steps reaching at least `top`."""
    step = nice_step(top / ticks)
    steps = max(1, int((top / step).to_integral_value(rounding=ROUND_CEILING)))
    return step, step * steps


def stacked_bars(days, *, label_every: int = 5) -> Chart:
    """`days`: objects with `.day`, `.credit` and `.own` (see billing.history.DaySpend)."""
    days = list(days)
    top = max((d.credit + d.own for d in days), default=Decimal(0))
    step, ceiling = axis(top)
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM
    base_y = TOP + plot_h
    slot = plot_w / max(len(days), 1)
    bar_w = round(slot * 0.7, 2)

    def height(amount: Decimal) -> float:
        return round(float(amount / ceiling) * plot_h, 2)

    bars = []
    for i, d in enumerate(days):
        credit_h, own_h = height(d.credit), height(d.own)
        x = round(LEFT + i * slot + (slot - bar_w) / 2, 2)
        bars.append(
            Bar(
                label=d.day.strftime("%b %-d"),
                x=x,
                width=bar_w,
                credit_y=round(base_y - credit_h, 2),
                credit_h=credit_h,
                own_y=round(base_y - credit_h - own_h, 2),
                own_h=own_h,
                credit=d.credit,
                own=d.own,
                show_label=(len(days) - 1 - i) % label_every == 0,
                cx=round(LEFT + i * slot + slot / 2, 2),
                slot_x=round(LEFT + i * slot, 2),
                slot_w=round(slot, 2),
            )
        )
    n = int(ceiling / step)
    ticks = [Tick(y=round(base_y - plot_h * k / n, 2), value=step * k) for k in range(n + 1)]
    return Chart(WIDTH, HEIGHT, LEFT, WIDTH - RIGHT, base_y, bars, ticks, empty=top == 0)
