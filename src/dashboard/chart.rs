//! Bar charts as inline SVG, drawn on the server: no script, readable without JavaScript,
//! styled by the page's CSS (so dark mode follows the system), with a title and description
//! for screen readers and a tooltip per bar.

use super::html::Html;

/// Chart widths in SVG units: full-width cards, and half-width ones (larger text when small).
pub const WIDE: f64 = 720.0;
pub const NARROW: f64 = 420.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 48.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 30.0;
/// At most this many x-axis labels, so they never overlap.
const MAX_X_LABELS: usize = 8;

pub struct Bar {
    /// Short x-axis label: `Jan 28`, `1–2 min`.
    pub label: String,
    /// Full description for the tooltip: `2024-01-28: 5 visits`.
    pub tooltip: String,
    pub value: i64,
}

/// A round step for `max` split into at most five intervals: 1, 2 or 5 times a power of ten.
pub fn tick_step(max: i64) -> i64 {
    let mut step = 1;
    loop {
        for factor in [1, 2, 5] {
            if max <= step * factor * 5 {
                return step * factor;
            }
        }
        step *= 10;
    }
}

/// Geometry of one chart, separate from drawing so tests can check it.
pub struct Layout {
    pub width: f64,
    pub y_max: i64,
    pub step: i64,
    pub slot_width: f64,
    pub bar_width: f64,
    pub label_every: usize,
}

pub fn layout(bars: &[Bar], width: f64) -> Layout {
    let max = bars.iter().map(|b| b.value).max().unwrap_or(0).max(1);
    let step = tick_step(max);
    let y_max = (max + step - 1) / step * step;

    let slot_width = (width - LEFT - RIGHT) / bars.len().max(1) as f64;
    let bar_width = (slot_width * 0.8).clamp(1.0, 48.0);
    let label_every = bars.len().div_ceil(MAX_X_LABELS).max(1);
    Layout {
        width,
        y_max,
        step,

        slot_width,
        bar_width,
        label_every,
    }
}

impl Layout {
    /// The y coordinate of a value.
    pub fn y(&self, value: i64) -> f64 {
        TOP + (HEIGHT - TOP - BOTTOM) * (1.0 - value as f64 / self.y_max as f64)
    }

    /// The x coordinate of the centre of bar `index`.
    pub fn x(&self, index: usize) -> f64 {
        LEFT + self.slot_width * (index as f64 + 0.5)
    }
}

/// An SVG bar chart `width` units wide. `id` must be unique in the page (it names the
/// accessible title).
pub fn bar_chart(
    id: &'static str,
    width: f64,
    title: &str,
    description: &str,
    bars: &[Bar],
    empty_note: &str,
) -> Html {
    let layout = layout(bars, width);
    let mut svg = Html::with_capacity(512 + bars.len() * 160);
    svg.raw("<svg class=\"chart\" viewBox=\"0 0 ")
        .number(layout.width)
        .raw(" ")
        .number(HEIGHT)
        .raw("\" role=\"img\" aria-labelledby=\"")
        .raw(id)
        .raw("-title ")
        .raw(id)
        .raw("-desc\"><title id=\"")
        .raw(id)
        .raw("-title\">")
        .text(title)
        .raw("</title><desc id=\"")
        .raw(id)
        .raw("-desc\">")
        .text(description)
        .raw("</desc>");

    // Horizontal grid lines with their values.
    let mut tick = 0;
    while tick <= layout.y_max {
        let y = layout.y(tick);
        svg.raw("<line class=\"grid\" x1=\"")
            .number(LEFT)
            .raw("\" x2=\"")
            .number(layout.width - RIGHT)
            .raw("\" y1=\"")
            .number(y)
            .raw("\" y2=\"")
            .number(y)
            .raw("\"/><text class=\"axis\" x=\"")
            .number(LEFT - 6.0)
            .raw("\" y=\"")
            .number(y + 4.0)
            .raw("\" text-anchor=\"end\">")
            .count(tick)
            .raw("</text>");
        tick += layout.step;
    }

    let baseline = layout.y(0);
    for (index, bar) in bars.iter().enumerate() {
        let top = layout.y(bar.value);
        svg.raw("<rect class=\"bar\" x=\"")
            .number(layout.x(index) - layout.bar_width / 2.0)
            .raw("\" y=\"")
            .number(top)
            .raw("\" width=\"")
            .number(layout.bar_width)
            .raw("\" height=\"")
            .number(baseline - top)
            .raw("\"><title>")
            .text(&bar.tooltip)
            .raw("</title></rect>");
        if index % layout.label_every == 0 {
            svg.raw("<text class=\"axis\" x=\"")
                .number(layout.x(index))
                .raw("\" y=\"")
                .number(HEIGHT - 10.0)
                .raw("\" text-anchor=\"middle\">")
                .text(&bar.label)
                .raw("</text>");
        }
    }
    if bars.iter().all(|bar| bar.value == 0) {
        svg.raw("<text class=\"empty\" x=\"")
            .number((LEFT + layout.width - RIGHT) / 2.0)
            .raw("\" y=\"")
            .number((TOP + baseline) / 2.0)
            .raw("\" text-anchor=\"middle\">")
            .text(empty_note)
            .raw("</text>");
    }
    svg.raw("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bars(values: &[i64]) -> Vec<Bar> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| Bar {
                label: format!("d{i}"),
                tooltip: format!("day {i}: {v}"),
                value: *v,
            })
            .collect()
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(tick_step(1), 1);
        assert_eq!(tick_step(5), 1);
        assert_eq!(tick_step(7), 2);
        assert_eq!(tick_step(23), 5);
        assert_eq!(tick_step(51), 20);
        assert_eq!(tick_step(1234), 500);
    }

    #[test]
    fn bars_stay_inside_the_plot_and_scale_with_their_values() {
        let series = bars(&[0, 5, 10, 3]);
        let layout = layout(&series, WIDE);
        assert_eq!(layout.y_max, 10);
        assert_eq!(layout.y(10), TOP);
        assert_eq!(layout.y(0), HEIGHT - BOTTOM);
        assert!(
            (layout.y(0) - layout.y(5) - (layout.y(5) - layout.y(10))).abs() < 1e-9,
            "linear"
        );
        for index in 0..series.len() {
            let x = layout.x(index);
            assert!(
                x - layout.bar_width / 2.0 >= LEFT && x + layout.bar_width / 2.0 <= WIDE - RIGHT
            );
        }
        let svg = bar_chart("c", WIDE, "Visits", "desc", &series, "nothing");
        assert_eq!(svg.as_str().matches("<rect").count(), 4);
        assert!(!svg.as_str().contains("nothing"), "not empty");
    }

    #[test]
    fn an_empty_series_says_so_and_a_single_day_is_one_bar() {
        let svg = bar_chart(
            "c",
            WIDE,
            "Visits",
            "desc",
            &bars(&[0, 0, 0]),
            "No visits yet",
        );
        assert!(svg.as_str().contains(">No visits yet</text>"));
        let svg = bar_chart("c", WIDE, "Visits", "desc", &[], "No visits yet");
        assert!(svg.as_str().contains(">No visits yet</text>"));
        assert_eq!(svg.as_str().matches("<rect").count(), 0);

        let single = bars(&[4]);
        let layout = layout(&single, WIDE);
        assert_eq!(
            layout.bar_width, 48.0,
            "a lone bar is not as wide as the chart"
        );
        assert!(
            (layout.x(0) - (LEFT + (WIDE - LEFT - RIGHT) / 2.0)).abs() < 1e-9,
            "and is centred"
        );
    }

    #[test]
    fn labels_are_thinned_and_everything_is_escaped() {
        let many = bars(&[1; 365]);
        let svg = bar_chart("c", WIDE, "t", "d", &many, "");
        assert!(svg.as_str().matches("text-anchor=\"middle\"").count() <= MAX_X_LABELS);
        let hostile = [Bar {
            label: "<b>".into(),
            tooltip: "\"><script>".into(),
            value: 1,
        }];
        let svg = bar_chart("c", WIDE, "<t>", "<d>", &hostile, "");
        assert!(
            !svg.as_str().contains("<script")
                && !svg.as_str().contains("<b>")
                && !svg.as_str().contains("<t>")
        );
    }
}
