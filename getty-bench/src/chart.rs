//! The SVG bar chart: one group per workload, one bar per server, each normalised to raw-tokio
//! = 1.0 so that higher is always better.

use std::path::Path;

use getty::BoxError;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::child::Target;
use crate::report::Results;
use crate::servers::ServerImpl;
use crate::workloads::{Metric, Workload};

const SIZE: (u32, u32) = (1100, 560);
const FONT: &str = "sans-serif";

/// One bar per server: teal for getty, warm for tokio-util, grey for the raw ceiling.
fn color(imp: ServerImpl) -> RGBColor {
    match imp {
        ServerImpl::GettyTokio => RGBColor(0, 128, 128),
        ServerImpl::GettySmol => RGBColor(102, 194, 165),
        ServerImpl::TokioUtilPerFrame => RGBColor(244, 109, 67),
        ServerImpl::TokioUtilBatched => RGBColor(253, 174, 97),
        ServerImpl::RawTokio => RGBColor(128, 128, 128),
    }
}

/// What a workload's bars show, higher being better.
fn group_label(workload: Workload) -> &'static str {
    match workload {
        Workload::Latency => "latency (1/p50)",
        Workload::Small => "small (msg/s)",
        Workload::Bulk => "bulk (MB/s)",
        Workload::Idle => "idle (1/RSS per conn)",
        Workload::Many => "many (conn/s)",
        Workload::Call => "call",
    }
}

/// A score of `imp` on `workload` where higher is better (before normalisation).
fn score(results: &Results, workload: Workload, imp: ServerImpl) -> Option<f64> {
    let target = Target { imp, threads: 1 };
    let median = |metric| results.median(metric, target);
    let score = match workload {
        Workload::Latency => 1.0 / median(Metric::P50)?,
        Workload::Small => median(Metric::SmallRate)?,
        Workload::Bulk => median(Metric::BulkRate)?,
        Workload::Idle => 1.0 / median(Metric::IdleRss)?,
        Workload::Many => median(Metric::ManyServed)? / median(Metric::ManySeconds)?,
        // A client measurement with a table of its own; no bars.
        Workload::Call => return None,
    };
    (score.is_finite() && score > 0.0).then_some(score)
}

/// Draws the chart of `workloads` x `servers` into `path`. Workloads without a raw-tokio score
/// have no group.
pub fn write_svg(
    path: &Path,
    results: &Results,
    workloads: &[Workload],
    servers: &[ServerImpl],
) -> Result<(), BoxError> {
    let groups: Vec<(Workload, Vec<(ServerImpl, f64)>)> = workloads
        .iter()
        .filter_map(|&w| {
            let reference = score(results, w, ServerImpl::RawTokio)?;
            let bars = servers
                .iter()
                .filter_map(|&imp| Some((imp, score(results, w, imp)? / reference)))
                .collect();
            Some((w, bars))
        })
        .collect();
    let highest = groups
        .iter()
        .flat_map(|(_, bars)| bars.iter().map(|b| b.1))
        .fold(1.0, f64::max);

    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let n = groups.len().max(1) as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "getty-rs echo servers, relative to raw-tokio = 1.0 (higher is better)",
            (FONT, 22),
        )
        .margin(20)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..n, 0f64..highest * 1.45)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc("relative to raw-tokio")
        .label_style((FONT, 13))
        .draw()?;
    chart.draw_series(std::iter::once(PathElement::new(
        vec![(0.0, 1.0), (n, 1.0)],
        BLACK.mix(0.5),
    )))?;

    let width = 0.8 / servers.len().max(1) as f64;
    let value_style =
        TextStyle::from((FONT, 11).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
    for (s, &imp) in servers.iter().enumerate() {
        let fill = color(imp).filled();
        let mut bars = Vec::new();
        let mut values = Vec::new();
        for (g, (_, group)) in groups.iter().enumerate() {
            let Some(&(_, v)) = group.iter().find(|(i, _)| *i == imp) else {
                continue;
            };
            let x0 = g as f64 + 0.1 + s as f64 * width;
            bars.push(Rectangle::new([(x0, 0.0), (x0 + width * 0.9, v)], fill));
            values.push(Text::new(
                format!("{v:.2}"),
                (x0 + width * 0.45, v),
                value_style.clone(),
            ));
        }
        chart
            .draw_series(bars)?
            .label(imp.name())
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], fill));
        chart.draw_series(values)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FONT, 13))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;

    // Group names under the axis, placed in pixels (the x axis itself has no labels).
    let name_style = TextStyle::from((FONT, 14).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
    for (g, (workload, _)) in groups.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(g as f64 + 0.5, 0.0));
        root.draw(&Text::new(
            group_label(*workload),
            (x, y + 10),
            name_style.clone(),
        ))?;
    }
    root.present()?;
    Ok(())
}
