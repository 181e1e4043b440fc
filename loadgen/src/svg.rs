//! The latency chart, written by hand as SVG: one polyline per series; x is
//! the percentile on a log "1/(1-p)" axis (ticks 50% … 99.999%, the right
//! edge is the max), y is latency in ms on a log axis; legend and title.

use std::fmt::Write;

use crate::histo::CurvePoint;

/// One curve on the chart.
#[derive(Clone, Debug)]
pub struct Series {
    pub label: String,
    pub points: Vec<CurvePoint>,
    /// Palette index.
    pub color: usize,
    pub dashed: bool,
}

const PALETTE: [&str; 8] = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 600.0;
const LEFT: f64 = 90.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 60.0;
const BOTTOM: f64 = 80.0;

/// Percentile ticks: (x = log10(1/(1-p)), label).
const X_TICKS: [(f64, &str); 7] = [
    (0.0, "0%"),
    (std::f64::consts::LOG10_2, "50%"),
    (1.0, "90%"),
    (2.0, "99%"),
    (3.0, "99.9%"),
    (4.0, "99.99%"),
    (5.0, "99.999%"),
];

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\t' && c != '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn x_of_quantile(q: f64) -> Option<f64> {
    if q >= 1.0 {
        None
    } else {
        Some((1.0 / (1.0 - q.max(0.0))).log10())
    }
}

/// The whole chart as an SVG document.
pub fn render(title: &str, subtitle: &str, series: &[Series]) -> String {
    // X domain: up to the deepest finite percentile (at least 99.999%), plus
    // a margin where each curve ends at its max.
    let deepest = series
        .iter()
        .flat_map(|s| s.points.iter())
        .filter_map(|p| x_of_quantile(p.quantile))
        .fold(5.0_f64, f64::max)
        .min(9.0);
    let x_finite_max = deepest.ceil();
    let x_max = x_finite_max + 0.5;
    // Y domain: decades around the values (1 µs floor).
    let values = series.iter().flat_map(|s| s.points.iter()).map(|p| p.value_ms.max(0.001));
    let (mut lo, mut hi) = values.fold((f64::INFINITY, 0.0_f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() || hi <= 0.0 {
        lo = 0.1;
        hi = 10.0;
    }
    let y_lo = lo.log10().floor();
    let mut y_hi = hi.log10().ceil();
    if y_hi <= y_lo {
        y_hi = y_lo + 1.0;
    }
    let pw = WIDTH - LEFT - RIGHT;
    let ph = HEIGHT - TOP - BOTTOM;
    let sx = |x: f64| LEFT + x.clamp(0.0, x_max) / x_max * pw;
    let sy = |v_ms: f64| {
        let l = v_ms.max(0.001).log10().clamp(y_lo, y_hi);
        TOP + ph - (l - y_lo) / (y_hi - y_lo) * ph
    };

    let mut s = String::with_capacity(16 * 1024);
    let _ = writeln!(s, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="26" text-anchor="middle" font-size="18" font-weight="bold">{}</text>"#,
        WIDTH / 2.0,
        escape(title)
    );
    if !subtitle.is_empty() {
        let _ = writeln!(
            s,
            r##"<text x="{}" y="45" text-anchor="middle" font-size="12" fill="#555">{}</text>"##,
            WIDTH / 2.0,
            escape(subtitle)
        );
    }

    // Grid and ticks.
    let _ = writeln!(s, r##"<g stroke="#ddd" stroke-width="1">"##);
    for d in (y_lo as i32)..=(y_hi as i32) {
        for m in [1.0, 2.0, 5.0] {
            let v = m * 10f64.powi(d);
            if v.log10() > y_hi + 1e-9 {
                continue;
            }
            let y = sy(v);
            let dash = if m == 1.0 { "" } else { r#" stroke-dasharray="2,3""# };
            let _ = writeln!(s, r#"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}"{dash}/>"#, LEFT + pw);
        }
    }
    for (x, _) in X_TICKS.iter().filter(|(x, _)| *x <= x_finite_max) {
        let px = sx(*x);
        let _ = writeln!(s, r#"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{:.1}"/>"#, TOP + ph);
    }
    let _ = writeln!(s, "</g>");
    let _ = writeln!(s, r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>"##);
    let few_decades = y_hi - y_lo <= 3.0;
    for d in (y_lo as i32)..=(y_hi as i32) {
        for m in [1.0, 2.0, 5.0] {
            let v = m * 10f64.powi(d);
            if v.log10() > y_hi + 1e-9 || (m != 1.0 && !few_decades) {
                continue;
            }
            let label = if d >= 0 { format!("{v:.0}") } else { format!("{v:.*}", (-d) as usize) };
            let style = if m == 1.0 { "" } else { r##" fill="#777" font-size="10""## };
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end"{style}>{label}</text>"#,
                LEFT - 8.0,
                sy(v) + 4.0
            );
        }
    }
    let mut x_ticks: Vec<(f64, String)> =
        X_TICKS.iter().filter(|(x, _)| *x <= x_finite_max).map(|(x, l)| (*x, l.to_string())).collect();
    for extra in 6..=(x_finite_max as i32) {
        x_ticks.push((extra as f64, format!("99.{}%", "9".repeat(extra as usize - 2))));
    }
    x_ticks.push((x_max, "max".to_string()));
    for (x, label) in &x_ticks {
        let _ =
            writeln!(s, r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{label}</text>"#, sx(*x), TOP + ph + 18.0);
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile (log scale of 1/(1-p))</text>"#,
        LEFT + pw / 2.0,
        HEIGHT - 30.0
    );
    let _ = writeln!(
        s,
        r#"<text x="20" y="{:.1}" text-anchor="middle" transform="rotate(-90 20 {:.1})">latency (ms, log scale)</text>"#,
        TOP + ph / 2.0,
        TOP + ph / 2.0
    );

    // Curves.
    for se in series {
        if se.points.is_empty() {
            continue;
        }
        let color = PALETTE[se.color % PALETTE.len()];
        let mut pts = String::new();
        for p in &se.points {
            let x = x_of_quantile(p.quantile).map(|x| x.min(x_finite_max)).unwrap_or(x_max);
            let _ = write!(pts, "{:.1},{:.1} ", sx(x), sy(p.value_ms));
        }
        let dash = if se.dashed { r#" stroke-dasharray="8,4""# } else { "" };
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2"{dash} points="{}"><title>{}</title></polyline>"#,
            pts.trim_end(),
            escape(&se.label)
        );
    }
    if series.iter().all(|se| se.points.is_empty()) {
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="16" fill="#999">no samples</text>"##,
            LEFT + pw / 2.0,
            TOP + ph / 2.0
        );
    }

    // Legend (top left, inside the plot where curves are lowest).
    let lh = 18.0;
    let lw = series.iter().map(|se| se.label.chars().count()).max().unwrap_or(0) as f64 * 7.0 + 50.0;
    let lx = LEFT + 12.0;
    let ly = TOP + 12.0;
    let _ = writeln!(
        s,
        r##"<rect x="{lx}" y="{ly}" width="{lw:.1}" height="{:.1}" fill="white" fill-opacity="0.85" stroke="#999"/>"##,
        lh * series.len() as f64 + 8.0
    );
    for (i, se) in series.iter().enumerate() {
        let y = ly + 4.0 + lh * i as f64 + lh / 2.0;
        let color = PALETTE[se.color % PALETTE.len()];
        let dash = if se.dashed { r#" stroke-dasharray="8,4""# } else { "" };
        let _ = writeln!(
            s,
            r#"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{color}" stroke-width="2"{dash}/>"#,
            lx + 8.0,
            lx + 36.0
        );
        let _ = writeln!(s, r#"<text x="{:.1}" y="{:.1}">{}</text>"#, lx + 42.0, y + 4.0, escape(&se.label));
    }
    let _ = writeln!(s, "</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(scale: f64) -> Vec<CurvePoint> {
        [0.0, 0.5, 0.9, 0.99, 0.999, 0.9999, 1.0]
            .iter()
            .map(|&q| CurvePoint { quantile: q, value_ms: scale * (1.0 + q * 10.0) })
            .collect()
    }

    #[test]
    fn the_chart_is_well_formed_xml_with_one_polyline_per_series() {
        let svg = render(
            "Run <1> & \"friends\"",
            "subtitle",
            &[
                Series { label: "produce".into(), points: curve(0.2), color: 0, dashed: false },
                Series { label: "end-to-end".into(), points: curve(1.5), color: 1, dashed: true },
            ],
        );
        let doc = roxmltree::Document::parse(&svg).expect("well-formed XML");
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        assert_eq!(doc.descendants().filter(|n| n.has_tag_name("polyline")).count(), 2);
        let texts: Vec<&str> = doc.descendants().filter_map(|n| n.text()).collect();
        for tick in
            ["50%", "90%", "99%", "99.9%", "99.99%", "99.999%", "latency (ms, log scale)", "Run <1> & \"friends\""]
        {
            assert!(texts.contains(&tick), "missing {tick}");
        }
    }

    #[test]
    fn an_empty_chart_is_still_valid() {
        let svg = render("t", "", &[Series { label: "produce".into(), points: vec![], color: 0, dashed: false }]);
        roxmltree::Document::parse(&svg).expect("well-formed XML");
        assert!(svg.contains("no samples"));
    }
}
