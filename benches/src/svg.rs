//! A small SVG line chart (throughput against client count, one line per target), written by
//! hand so the report needs no plotting library.

use std::fmt::Write as _;

/// One line of the chart.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub colour: &'static str,
    /// (x, y) points; x is placed on a log scale.
    pub points: Vec<(f64, f64)>,
}

/// One panel: a title and its series.
#[derive(Debug, Clone)]
pub struct Panel {
    pub title: String,
    pub series: Vec<Series>,
}

const W: f64 = 460.0;
const H: f64 = 300.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;

/// Panels side by side, sharing nothing but the style. `y_label` names the vertical axis.
pub fn chart(panels: &[Panel], y_label: &str) -> String {
    let width = W * panels.len().max(1) as f64;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{H}" "#
    );
    let _ = writeln!(
        out,
        r#"viewBox="0 0 {width} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="{width}" height="{H}" fill="white"/>"#);
    for (i, panel) in panels.iter().enumerate() {
        draw_panel(&mut out, panel, i as f64 * W, y_label);
    }
    out.push_str("</svg>\n");
    out
}

fn draw_panel(out: &mut String, panel: &Panel, x0: f64, y_label: &str) {
    let pts = panel.series.iter().flat_map(|s| s.points.iter());
    let xs: Vec<f64> = pts.clone().map(|p| p.0.max(1.0).log10()).collect();
    let y_max = pts.map(|p| p.1).fold(0.0, f64::max);
    if xs.is_empty() || y_max <= 0.0 {
        return;
    }
    let (x_lo, x_hi) = (
        xs.iter().copied().fold(f64::INFINITY, f64::min),
        xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    );
    let x_span = (x_hi - x_lo).max(1e-9);
    let y_top = nice_ceiling(y_max);
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let px = |x: f64| x0 + LEFT + (x.max(1.0).log10() - x_lo) / x_span * plot_w;
    let py = |y: f64| TOP + plot_h - y / y_top * plot_h;

    let _ = writeln!(
        out,
        r#"<text x="{}" y="20" text-anchor="middle" font-weight="bold">{}</text>"#,
        x0 + W / 2.0,
        escape(&panel.title)
    );
    // Axes, horizontal grid lines and their labels.
    for k in 0..=4 {
        let y = y_top * f64::from(k) / 4.0;
        let _ = writeln!(
            out,
            concat!(
                r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#ddd"/>"##,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{:.0}</text>"#
            ),
            x0 + LEFT,
            py(y),
            x0 + W - RIGHT,
            py(y),
            x0 + LEFT - 6.0,
            py(y) + 4.0,
            y
        );
    }
    let mut ticks: Vec<f64> = panel
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .collect();
    ticks.sort_by(f64::total_cmp);
    ticks.dedup();
    for x in ticks {
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{x}</text>"#,
            px(x),
            TOP + plot_h + 18.0
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">clients (log scale)</text>"#,
        x0 + LEFT + plot_w / 2.0,
        H - 8.0
    );
    let _ = writeln!(
        out,
        r#"<text transform="translate({:.1},{:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
        x0 + 16.0,
        TOP + plot_h / 2.0,
        escape(y_label)
    );
    for (i, s) in panel.series.iter().enumerate() {
        let path: Vec<String> = s
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>"#,
            s.colour,
            path.join(" ")
        );
        for &(x, y) in &s.points {
            let _ = writeln!(
                out,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{}"/>"#,
                px(x),
                py(y),
                s.colour
            );
        }
        let ly = TOP + 14.0 * i as f64;
        let _ = writeln!(
            out,
            concat!(
                r#"<rect x="{:.1}" y="{:.1}" width="10" height="10" fill="{}"/>"#,
                r#"<text x="{:.1}" y="{:.1}">{}</text>"#
            ),
            x0 + W - RIGHT - 110.0,
            ly,
            s.colour,
            x0 + W - RIGHT - 95.0,
            ly + 9.0,
            escape(&s.name)
        );
    }
}

/// The smallest of 1, 2 or 5 times a power of ten that is at least `v`.
fn nice_ceiling(v: f64) -> f64 {
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|&c| c >= v)
        .unwrap_or(10.0 * p)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_ceilings() {
        assert_eq!(nice_ceiling(7.0), 10.0);
        assert_eq!(nice_ceiling(1500.0), 2000.0);
        assert_eq!(nice_ceiling(2000.0), 2000.0);
        assert_eq!(nice_ceiling(0.3), 0.5);
    }

    #[test]
    fn a_chart_is_one_svg_with_a_line_per_series() {
        let panel = Panel {
            title: "a & b".into(),
            series: vec![
                Series {
                    name: "x".into(),
                    colour: "red",
                    points: vec![(1.0, 10.0), (10.0, 50.0), (100.0, 40.0)],
                },
                Series {
                    name: "y".into(),
                    colour: "blue",
                    points: vec![(1.0, 5.0), (10.0, 20.0)],
                },
            ],
        };
        let svg = chart(&[panel.clone(), panel], "tps");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<polyline").count(), 4);
        assert!(svg.contains("a &amp; b"));
    }
}
