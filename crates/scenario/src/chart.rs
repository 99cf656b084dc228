//! The timeline chart: pending pods, nodes by instance type, and cost per hour over simulated
//! time, stacked in one SVG (plotters' SVG backend needs no fonts or image libraries).

use std::collections::BTreeMap;

use plotters::prelude::*;

use crate::sample::Sample;

/// Why the chart could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("drawing the chart: {0}")]
pub struct ChartError(String);

fn err(e: impl std::fmt::Display) -> ChartError {
    ChartError(e.to_string())
}

/// One line of a panel: its legend, its (minute, value) points and its colour.
type Line<'a> = (&'a str, &'a [(f64, f64)], RGBColor);

/// How many instance types get their own line; the rest are summed as "other".
const TYPES_SHOWN: usize = 6;

/// Renders the samples as an SVG document.
pub fn svg(title: &str, samples: &[Sample]) -> Result<String, ChartError> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (1000, 900)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let root = root.titled(title, ("sans-serif", 22)).map_err(err)?;
        let panels = root.split_evenly((3, 1));
        let minutes: Vec<f64> = samples.iter().map(|s| s.at.as_secs_f64() / 60.0).collect();
        let end = minutes.last().copied().unwrap_or(1.0).max(1.0);

        let pending: Vec<(f64, f64)> = samples
            .iter()
            .zip(&minutes)
            .map(|(s, m)| (*m, count(s.pending_pods)))
            .collect();
        let running: Vec<(f64, f64)> = samples
            .iter()
            .zip(&minutes)
            .map(|(s, m)| (*m, count(s.running_pods)))
            .collect();
        panel(
            &panels[0],
            "Pods",
            "pods",
            end,
            &[("pending", &pending, RED), ("running", &running, BLUE)],
        )?;

        let by_type = node_series(samples, &minutes);
        let palette = [BLUE, GREEN, MAGENTA, CYAN, RED, BLACK, YELLOW];
        let series: Vec<Line<'_>> = by_type
            .iter()
            .zip(palette.iter().cycle())
            .map(|((name, points), color)| (name.as_str(), points.as_slice(), *color))
            .collect();
        panel(&panels[1], "Ready nodes by instance type", "nodes", end, &series)?;

        let cost: Vec<(f64, f64)> = samples
            .iter()
            .zip(&minutes)
            .map(|(s, m)| (*m, dollars(s.cost_per_hour_nano_usd)))
            .collect();
        panel(
            &panels[2],
            "Cost of running instances",
            "$/h",
            end,
            &[("$/h", &cost, GREEN)],
        )?;
        root.present().map_err(err)?;
    }
    Ok(out)
}

// Counts in a chart are far below 2^52: the conversion is exact.
#[allow(clippy::cast_precision_loss)]
fn count(n: usize) -> f64 {
    n as f64
}

#[allow(clippy::cast_precision_loss)]
fn dollars(nano: u64) -> f64 {
    nano as f64 / 1e9
}

/// One line per common instance type (most node-minutes first), the rest as "other".
fn node_series(samples: &[Sample], minutes: &[f64]) -> Vec<(String, Vec<(f64, f64)>)> {
    let mut weight: BTreeMap<&str, usize> = BTreeMap::new();
    for sample in samples {
        for (name, n) in &sample.nodes_by_type {
            *weight.entry(name).or_default() += n;
        }
    }
    let mut ranked: Vec<(&str, usize)> = weight.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let shown: Vec<&str> = ranked.iter().take(TYPES_SHOWN).map(|(n, _)| *n).collect();
    let mut series: Vec<(String, Vec<(f64, f64)>)> = shown
        .iter()
        .map(|name| {
            let points = samples
                .iter()
                .zip(minutes)
                .map(|(s, m)| (*m, count(s.nodes_by_type.get(*name).copied().unwrap_or(0))))
                .collect();
            ((*name).to_owned(), points)
        })
        .collect();
    if ranked.len() > TYPES_SHOWN {
        let points = samples
            .iter()
            .zip(minutes)
            .map(|(s, m)| {
                let other: usize = s
                    .nodes_by_type
                    .iter()
                    .filter(|(name, _)| !shown.contains(&name.as_str()))
                    .map(|(_, n)| n)
                    .sum();
                (*m, count(other))
            })
            .collect();
        series.push(("other".to_owned(), points));
    }
    series
}

fn panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    caption: &str,
    unit: &str,
    end: f64,
    series: &[Line<'_>],
) -> Result<(), ChartError> {
    let top = series
        .iter()
        .flat_map(|(_, points, _)| points.iter().map(|p| p.1))
        .fold(1.0_f64, f64::max)
        * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 16))
        .margin(8)
        .x_label_area_size(28)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..end, 0.0..top)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("simulated minutes")
        .y_desc(unit)
        .draw()
        .map_err(err)?;
    for (name, points, color) in series {
        let color = *color;
        chart
            .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))
            .map_err(err)?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use jiff::SignedDuration;

    use super::*;

    #[test]
    fn the_chart_has_a_line_per_series_and_the_legend() {
        let samples: Vec<Sample> = (0..5)
            .map(|i| Sample {
                at: SignedDuration::from_mins(i),
                pending_pods: usize::try_from(5 - i).unwrap(),
                running_pods: usize::try_from(i).unwrap(),
                nodes_by_type: BTreeMap::from([("m5.large".to_owned(), 1), ("c5.xlarge".to_owned(), 2)]),
                cost_per_hour_nano_usd: 436_000_000,
                ..Sample::default()
            })
            .collect();
        let svg = svg("test", &samples).unwrap();
        assert!(svg.starts_with("<svg"));
        for text in [
            "pending",
            "running",
            "m5.large",
            "c5.xlarge",
            "$/h",
            "simulated minutes",
        ] {
            assert!(svg.contains(text), "missing {text}");
        }
        // Each series is drawn twice with a 2-pixel stroke: its line and its legend sample.
        let thick = svg
            .lines()
            .filter(|l| l.starts_with("<polyline") && l.contains("stroke-width=\"2\""))
            .count();
        assert_eq!(thick, 10, "one line and one legend entry per series");
    }
}
