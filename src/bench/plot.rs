//! The latency percentile distribution as a small SVG: percentile on a
//! "number of nines" axis (50%, 90%, 99%, ... 99.999%), latency on a log
//! axis, one line per curve.

use std::fmt::Write;

use super::Curve;

const WIDTH: f64 = 860.0;
const HEIGHT: f64 = 520.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 240.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 60.0;
const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// Renders `curves` (latency in ns by percentile) as an SVG document.
pub fn to_svg(title: &str, curves: &[Curve]) -> String {
    let values = curves
        .iter()
        .flat_map(|c| c.points.iter().map(|&(_, v)| v.max(1)));
    let low = values.clone().min().unwrap_or(1) as f64;
    let high = values.max().unwrap_or(10) as f64;
    let (y_low, y_high) = (
        low.log10().floor(),
        high.log10().ceil().max(low.log10().floor() + 1.0),
    );
    let x_max = 5.0; // five nines
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |percentile: f64| {
        let nines = -(1.0 - percentile / 100.0).max(1e-5).log10();
        LEFT + nines.min(x_max) / x_max * plot_w
    };
    let y = |ns: u64| {
        let v = (ns.max(1) as f64).log10();
        TOP + plot_h - (v - y_low) / (y_high - y_low) * plot_h
    };

    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{LEFT}\" y=\"18\" font-size=\"14\">{}</text>\n",
        escape(title)
    );
    // Axes and grid.
    for (label, percentile) in [
        ("0%", 0.0),
        ("90%", 90.0),
        ("99%", 99.0),
        ("99.9%", 99.9),
        ("99.99%", 99.99),
        ("99.999%", 99.999),
    ] {
        let at = x(percentile);
        let _ = writeln!(
            svg,
            "<line x1=\"{at:.1}\" y1=\"{TOP}\" x2=\"{at:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{at:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{label}</text>",
            TOP + plot_h,
            TOP + plot_h + 18.0
        );
    }
    let mut decade = y_low;
    while decade <= y_high {
        let ns = 10f64.powf(decade) as u64;
        let at = y(ns);
        let _ = writeln!(
            svg,
            "<line x1=\"{LEFT}\" y1=\"{at:.1}\" x2=\"{:.1}\" y2=\"{at:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT + plot_w,
            LEFT - 6.0,
            at + 4.0,
            human(ns)
        );
        decade += 1.0;
    }
    let _ = write!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">percentile</text>\n\
         <text x=\"16\" y=\"{:.1}\" transform=\"rotate(-90 16 {:.1})\" text-anchor=\"middle\">latency</text>\n",
        LEFT + plot_w / 2.0,
        HEIGHT - 15.0,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0
    );
    // Curves and legend.
    for (index, curve) in curves.iter().enumerate() {
        let color = COLORS[index % COLORS.len()];
        let points: Vec<String> = curve
            .points
            .iter()
            .map(|&(percentile, ns)| format!("{:.1},{:.1}", x(percentile), y(ns)))
            .collect();
        let legend_y = TOP + 10.0 + index as f64 * 18.0;
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" points=\"{}\"/>\n\
             <line x1=\"{:.1}\" y1=\"{legend_y:.1}\" x2=\"{:.1}\" y2=\"{legend_y:.1}\" stroke=\"{color}\" stroke-width=\"3\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text>\n",
            points.join(" "),
            WIDTH - RIGHT + 15.0,
            WIDTH - RIGHT + 35.0,
            WIDTH - RIGHT + 40.0,
            legend_y + 4.0,
            escape(&curve.name)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn human(ns: u64) -> String {
    match ns {
        0..1_000 => format!("{ns} ns"),
        1_000..1_000_000 => format!("{} us", ns / 1_000),
        1_000_000..1_000_000_000 => format!("{} ms", ns / 1_000_000),
        _ => format!("{} s", ns / 1_000_000_000),
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_one_line_per_curve_inside_the_frame() {
        let curves = vec![
            Curve {
                name: "a<b".into(),
                points: vec![(0.0, 100), (99.0, 1_000), (99.999, 50_000)],
            },
            Curve {
                name: "c".into(),
                points: vec![(0.0, 0), (100.0, 2_000_000)],
            },
        ];
        let svg = to_svg("t", &curves);
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("a&lt;b"));
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        for number in svg
            .split(['"', ' ', ','])
            .filter_map(|s| s.parse::<f64>().ok())
        {
            assert!(
                number.is_finite() && (-90.0..=WIDTH).contains(&number),
                "{number}"
            );
        }
    }
}
