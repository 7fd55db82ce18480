//! The throughput plot: an inline SVG of jobs ended per minute, drawn on the server.

use std::fmt::Write as _;

use crate::Throughput;

const W: u64 = 600;
const H: u64 = 120;
const PAD: u64 = 24;

/// An SVG of the jobs done, parked and cancelled per window, with its scale.
pub(super) fn throughput(t: &Throughput) -> String {
    let series = [("done", &t.done), ("parked", &t.parked), ("cancelled", &t.cancelled)];
    let max = series.iter().flat_map(|(_, s)| s.iter()).copied().max().unwrap_or(0).max(1);
    let n = t.done.len().max(2) as u64;
    let x = |i: usize| PAD + (i as u64) * (W - 2 * PAD) / (n - 1);
    let y = |v: u64| H - PAD - v * (H - 2 * PAD) / max;
    let total: u64 = t.done.iter().sum();
    let minutes = t.done.len();
    let mut svg = format!(
        "<svg class=\"plot\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"jobs ended per minute\">\
         <title>jobs ended per minute over the last {minutes} minutes: {total} done</title>\
         <line class=\"axis\" x1=\"{PAD}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\"/>\
         <text x=\"{PAD}\" y=\"{ly}\">-{minutes} min</text><text x=\"{r}\" y=\"{ly}\" text-anchor=\"end\">now</text>\
         <text x=\"2\" y=\"{top}\">{max}/min</text>",
        b = H - PAD,
        r = W - PAD,
        ly = H - 6,
        top = PAD - 8,
    );
    for (name, values) in series {
        if values.iter().all(|&v| v == 0) && name != "done" {
            continue;
        }
        let _ = write!(svg, "<polyline class=\"{name}\" points=\"");
        for (i, &v) in values.iter().enumerate() {
            let _ = write!(svg, "{},{} ", x(i), y(v));
        }
        svg.push_str("\"/>");
    }
    svg.push_str("</svg>");
    svg
}
