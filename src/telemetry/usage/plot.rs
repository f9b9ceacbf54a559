//! The `usage --plot` chart: per category, req/s against its limit over time, 429s marked,
//! degraded adaptive tiers shaded.
//!
//! Drawn with plotters into SVG or PNG by the file's extension. Text uses DejaVu Sans built
//! into the binary (the `dejavu` crate), so the chart looks the same on a server without
//! fonts, on Windows and in CI; plotters' system-font loader would need fontconfig.

use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use thiserror::Error;

use super::{runs, tier_spans, Interval, RateLog, Report};
use crate::limiter::Category;
use crate::scheduler::tiers::Tier;

const FONT: &str = "sans-serif";
const WIDTH: u32 = 1200;
const PANEL_HEIGHT: u32 = 320;
/// At most about this many steps across the chart: two pixels each.
const BUCKETS: f64 = 560.0;

/// Why no chart was written.
#[derive(Debug, Error)]
pub enum PlotError {
    #[error("--plot {0}: the file name must end in .svg or .png")]
    Format(String),
    #[error("nothing to plot: the log has no usage lines in the chosen window")]
    Empty,
    #[error("cannot draw {path}: {detail}")]
    Draw { path: String, detail: String },
    #[error("cannot write {path}: {source}; pick a file in a folder that exists and is writable")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// Whether a chart can be written to `path`, checked before any report is printed: its
/// extension names a format, and the file can be created.
///
/// # Errors
/// An unknown extension, or the file cannot be created.
pub fn check_target(path: &Path) -> Result<(), PlotError> {
    let name = path.display().to_string();
    if !matches!(extension_of(path).as_deref(), Some("svg" | "png")) {
        return Err(PlotError::Format(name));
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map(drop)
        .map_err(|source| PlotError::Write { path: name, source })
}

fn extension_of(path: &Path) -> Option<String> {
    path.extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
}

/// Draws `log`, whose figures are `report`, into `path` (`.svg` or `.png`).
///
/// # Errors
/// An unknown extension, no usage lines, or the file cannot be written.
pub fn plot(log: &RateLog, report: &Report, path: &Path) -> Result<(), PlotError> {
    let name = path.display().to_string();
    let extension = extension_of(path);
    if !matches!(extension.as_deref(), Some("svg" | "png")) {
        return Err(PlotError::Format(name));
    }
    let categories: Vec<Category> = report.categories.iter().map(|c| c.category).collect();
    if log.intervals.is_empty() || categories.is_empty() {
        return Err(PlotError::Empty);
    }
    register_font();
    let size = (WIDTH, PANEL_HEIGHT * categories.len() as u32 + 40);
    let draw_error = |detail: String| PlotError::Draw {
        path: name.clone(),
        detail,
    };
    if extension.as_deref() == Some("svg") {
        let root = SVGBackend::new(path, size).into_drawing_area();
        draw(&root, log, report, &categories).map_err(draw_error)?;
        root.present().map_err(|e| draw_error(e.to_string()))
    } else {
        let root = BitMapBackend::new(path, size).into_drawing_area();
        draw(&root, log, report, &categories).map_err(draw_error)?;
        root.present().map_err(|e| draw_error(e.to_string()))
    }
}

fn register_font() {
    static REGISTERED: OnceLock<()> = OnceLock::new();
    REGISTERED.get_or_init(|| {
        // DejaVu Sans is a valid font; if it ever failed to load, text would be missing,
        // not the chart.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
    });
}

/// Seconds from `origin` to `time`, as the chart's x coordinate.
fn x_of(origin: SystemTime, time: SystemTime) -> f64 {
    match time.duration_since(origin) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// Wall-clock label (UTC) for chart coordinate `x`.
fn label_of(origin: SystemTime, x: f64, with_date: bool) -> String {
    let time = Duration::try_from_secs_f64(x.max(0.0))
        .ok()
        .and_then(|d| origin.checked_add(d))
        .unwrap_or(origin);
    let text = super::rfc3339(time);
    if text.len() < 20 {
        return text;
    }
    // 2026-11-22T18:34:22Z
    if with_date {
        format!("{} {}", &text[5..10], &text[11..19])
    } else {
        text[11..19].to_owned()
    }
}

/// Merges consecutive intervals of each run into buckets at least `width` long, so a week of
/// 10 s lines draws as a line rather than a solid block. A bucket's rate is its requests over
/// its time (the mean, not a mean of rates), and its limit the highest in it.
fn downsample(runs: &[Vec<&Interval>], width: Duration) -> Vec<Vec<Interval>> {
    runs.iter()
        .map(|run| {
            let mut buckets: Vec<Interval> = Vec::new();
            let mut open: Option<Interval> = None;
            for interval in run {
                let bucket = match open.take() {
                    None => (*interval).clone(),
                    Some(mut bucket) => {
                        bucket.requests = bucket.requests.saturating_add(interval.requests);
                        // The bucket spans from its first start to this end, gaps included.
                        let start = bucket.start().min(interval.start());
                        bucket.end = interval.end;
                        bucket.duration = bucket.end.duration_since(start).unwrap_or_default();
                        bucket.limit = bucket.limit.max(interval.limit);
                        bucket
                    }
                };
                if bucket.duration >= width {
                    buckets.push(bucket);
                } else {
                    open = Some(bucket);
                }
            }
            buckets.extend(open);
            buckets
        })
        .collect()
}

/// Shading for the degraded tiers: each span as it is when they are few, or else, so a week
/// of short slow spells does not paint the chart solid, per `width`-wide cell with a strength
/// that follows the share of the cell's time spent in the tier.
fn shade(spans: &[(f64, f64, Tier)], width: f64) -> Vec<(f64, f64, Tier, f64)> {
    const EXACT: f64 = 0.18;
    if spans.len() as f64 <= BUCKETS / 4.0 || width <= 0.0 {
        return spans.iter().map(|&(a, b, t)| (a, b, t, EXACT)).collect();
    }
    let cells = (BUCKETS as usize) + 1;
    let mut share = vec![[0.0f64; 2]; cells];
    for &(a, b, tier) in spans {
        let slot = usize::from(tier == Tier::Crawl);
        let first = ((a / width) as usize).min(cells - 1);
        let last = ((b / width) as usize).min(cells - 1);
        for (cell, shares) in share.iter_mut().enumerate().take(last + 1).skip(first) {
            let (lo, hi) = (cell as f64 * width, (cell + 1) as f64 * width);
            shares[slot] += (b.min(hi) - a.max(lo)).max(0.0) / width;
        }
    }
    let mut out = Vec::new();
    for (cell, shares) in share.iter().enumerate() {
        for (slot, tier) in [Tier::Slow, Tier::Crawl].into_iter().enumerate() {
            if shares[slot] > 0.0 {
                let (lo, hi) = (cell as f64 * width, (cell + 1) as f64 * width);
                out.push((lo, hi, tier, 0.05 + 0.3 * shares[slot].min(1.0)));
            }
        }
    }
    out
}

/// The limit in force over each run, as a step line: the configured one from the run's
/// start, then each value the server's remaining budget set. `bucketed` charts, too long to
/// show every change, get the lowest limit in force during each bucket instead.
fn effective_limits(
    runs: &[Vec<&Interval>],
    origin: SystemTime,
    follows: &[(f64, f64)],
    bucketed: bool,
) -> Vec<Vec<(f64, f64)>> {
    runs.iter()
        .filter_map(|run| {
            let first = run.first()?;
            // Each run starts at the configured limit: changes before it do not carry over.
            let start = x_of(origin, first.start());
            let mut next = follows.partition_point(|f| f.0 < start);
            let mut level = f64::from(first.limit);
            let mut points = if bucketed {
                Vec::new()
            } else {
                vec![(start, level)]
            };
            for bucket in run {
                let end = x_of(origin, bucket.end);
                let mut low = level;
                while let Some(&(x, limit)) = follows.get(next).filter(|f| f.0 <= end) {
                    if !bucketed {
                        points.extend([(x, level), (x, limit)]);
                    }
                    level = limit;
                    low = low.min(limit);
                    next += 1;
                }
                if bucketed {
                    points.extend([(x_of(origin, bucket.start()), low), (end, low)]);
                }
            }
            if !bucketed {
                points.push((x_of(origin, run.last()?.end), level));
            }
            Some(points)
        })
        .collect()
}

type DrawResult = Result<(), String>;

type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Draws one step line per run, labelled once in the legend.
fn draw_steps<DB: DrawingBackend>(
    chart: &mut Chart<'_, DB>,
    runs: Vec<Vec<(f64, f64)>>,
    color: RGBColor,
    dashed: bool,
    label: &str,
) -> DrawResult {
    let style = color.stroke_width(2);
    for (i, points) in runs.into_iter().enumerate() {
        let series = if dashed {
            chart.draw_series(DashedLineSeries::new(points, 6, 4, style))
        } else {
            chart.draw_series(LineSeries::new(points, style))
        }
        .map_err(|e| e.to_string())?;
        if i == 0 {
            series
                .label(label)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], style));
        }
    }
    Ok(())
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    log: &RateLog,
    report: &Report,
    categories: &[Category],
) -> DrawResult {
    let text = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(text)?;
    let (Some(first), Some(last)) = (report.first, report.last) else {
        return Ok(());
    };
    let span = x_of(first, last).max(1.0);
    let with_date = span > 86_400.0;
    let title = format!(
        "bitget-poller rate usage, {} to {} UTC",
        super::rfc3339(first),
        super::rfc3339(last)
    );
    let body = root.titled(&title, (FONT, 22).into_font()).map_err(text)?;
    let panels = body.split_evenly((categories.len(), 1));
    let tier_spans: Vec<(f64, f64, Tier)> = tier_spans(log)
        .into_iter()
        .filter_map(|span| match span.tier {
            Some(tier @ (Tier::Slow | Tier::Crawl)) => {
                Some((x_of(first, span.start), x_of(first, span.end), tier))
            }
            _ => None,
        })
        .collect();
    let shades = shade(&tier_spans, span / BUCKETS);
    for (panel, category) in panels.iter().zip(categories) {
        let usage = report
            .categories
            .iter()
            .find(|c| c.category == *category)
            .ok_or("category vanished")?;
        let intervals: Vec<&Interval> = log
            .intervals
            .iter()
            .filter(|i| i.category == *category)
            .collect();
        let bucket = Duration::from_secs_f64(span / BUCKETS);
        let merged = downsample(&runs(&intervals), bucket);
        let runs: Vec<Vec<&Interval>> = merged.iter().map(|run| run.iter().collect()).collect();
        let peak = runs
            .iter()
            .flatten()
            .map(|i| i.per_second().max(f64::from(i.limit)))
            .fold(1.0, f64::max);
        let top = peak * 1.2;
        let downsampled = merged.iter().flatten().count() < intervals.len();
        let averaged = if downsampled {
            format!(
                ", req/s averaged over {} buckets",
                super::short_duration(bucket)
            )
        } else {
            String::new()
        };
        let caption = format!(
            "{}: mean {:.2}/s, p95 {:.2}/s, {:.1}% of {}/s, {} × 429, {} waited{averaged}",
            category.name(),
            usage.mean_per_s,
            usage.p95_per_s,
            usage.used_pct,
            usage.limit,
            usage.rate_limited,
            usage.waited
        );
        let mut chart = ChartBuilder::on(panel)
            .caption(caption, (FONT, 16).into_font())
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..span, 0.0..top)
            .map_err(text)?;
        let x_label = |x: &f64| label_of(first, *x, with_date);
        chart
            .configure_mesh()
            .x_labels(8)
            .y_labels(6)
            .x_label_formatter(&x_label)
            .y_desc("req/s")
            .label_style((FONT, 12).into_font())
            .axis_desc_style((FONT, 13).into_font())
            .max_light_lines(2)
            .light_line_style(RGBColor(240, 240, 240))
            .draw()
            .map_err(text)?;
        for (tier, color) in [
            (Tier::Slow, RGBColor(255, 170, 0)),
            (Tier::Crawl, RGBColor(220, 30, 30)),
        ] {
            let spans: Vec<_> = shades.iter().filter(|s| s.2 == tier).collect();
            if spans.is_empty() {
                continue;
            }
            chart
                .draw_series(spans.iter().map(|(a, b, _, alpha)| {
                    Rectangle::new([(*a, 0.0), (*b, top)], color.mix(*alpha).filled())
                }))
                .map_err(text)?
                .label(format!("{tier} tier"))
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 16, y + 5)], color.mix(0.3).filled())
                });
        }
        let step = |pick: fn(&Interval) -> f64| {
            runs.iter()
                .map(|run| {
                    run.iter()
                        .flat_map(|i| {
                            [
                                (x_of(first, i.start()), pick(i)),
                                (x_of(first, i.end), pick(i)),
                            ]
                        })
                        .collect::<Vec<_>>()
                })
                .collect::<Vec<_>>()
        };
        let inside = |time: SystemTime| {
            runs.iter().any(|run| {
                run.first().is_some_and(|i| i.start() <= time)
                    && run.last().is_some_and(|i| time <= i.end)
            })
        };
        let follows: Vec<(f64, f64)> = log
            .limit_follows
            .iter()
            .filter(|f| f.1 == *category && inside(f.0))
            .map(|f| (x_of(first, f.0), f64::from(f.2)))
            .collect();
        if !follows.is_empty() {
            let steps = effective_limits(&runs, first, &follows, downsampled);
            draw_steps(
                &mut chart,
                steps,
                RGBColor(230, 120, 0),
                false,
                "limit followed",
            )?;
        }
        let limits = step(|i| f64::from(i.limit));
        draw_steps(&mut chart, limits, RGBColor(90, 90, 90), true, "limit")?;
        let rates = step(Interval::per_second);
        draw_steps(&mut chart, rates, RGBColor(31, 119, 180), false, "req/s")?;
        let rejections: Vec<f64> = log
            .rate_limited
            .iter()
            .filter(|r| r.1 == *category)
            .map(|r| x_of(first, r.0))
            .collect();
        if !rejections.is_empty() {
            chart
                .draw_series(
                    rejections
                        .iter()
                        .map(|x| Cross::new((*x, top * 0.93), 5, RED.stroke_width(2))),
                )
                .map_err(text)?
                .label("429")
                .legend(|(x, y)| Cross::new((x + 8, y), 5, RED.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font((FONT, 12).into_font())
            .draw()
            .map_err(text)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn interval(end_s: u64, requests: u64, limit: u32) -> Interval {
        Interval {
            end: UNIX_EPOCH + Duration::from_secs(1_795_341_600 + end_s),
            category: Category::Market,
            requests,
            duration: Duration::from_secs(10),
            limit,
            used_pct: 100.0 * requests as f64 / (f64::from(limit.max(1)) * 10.0),
            waited: 0,
            wait: Duration::ZERO,
            tier: Some(Tier::Normal),
            foreign_pct: None,
            margin_ms: None,
            offset_ms: None,
            backend: None,
        }
    }

    #[test]
    fn long_logs_are_merged_into_buckets_within_runs_at_their_mean_rate() {
        let lines: Vec<Interval> = [10, 20, 30, 40, 50, 60, 500, 510]
            .iter()
            .zip([100, 200, 300, 100, 100, 100, 50, 50])
            .map(|(&end, req)| interval(end, req, if end == 20 { 15 } else { 20 }))
            .collect();
        let refs: Vec<&Interval> = lines.iter().collect();
        let merged = downsample(&super::runs(&refs), Duration::from_secs(25));
        // Two runs (the gap before 490 s breaks them); 30 s buckets in the first.
        let shape: Vec<Vec<(u64, f64, u32)>> = merged
            .iter()
            .map(|run| {
                run.iter()
                    .map(|b| (b.duration.as_secs(), b.per_second(), b.limit))
                    .collect()
            })
            .collect();
        assert_eq!(
            shape,
            [vec![(30, 20.0, 20), (30, 10.0, 20)], vec![(20, 5.0, 20)]]
        );
        let runs: Vec<Vec<&Interval>> = merged.iter().map(|r| r.iter().collect()).collect();
        let origin = UNIX_EPOCH + Duration::from_secs(1_795_341_600);
        // The followed limit fell to 4 at 35 s and rose back at 38 s: the second bucket shows 4.
        let follows = [(35.0, 4.0), (38.0, 20.0)];
        let steps = effective_limits(&runs, origin, &follows, true);
        assert_eq!(
            steps[0],
            [(0.0, 20.0), (30.0, 20.0), (30.0, 4.0), (60.0, 4.0)]
        );
        assert_eq!(steps[1], [(490.0, 20.0), (510.0, 20.0)]);
        // Unbucketed, every change is a step of its own, at its own time.
        let original = super::runs(&refs);
        let exact = effective_limits(&original, origin, &follows, false);
        assert_eq!(
            exact[0],
            [
                (0.0, 20.0),
                (35.0, 20.0),
                (35.0, 4.0),
                (38.0, 4.0),
                (38.0, 20.0),
                (60.0, 20.0)
            ]
        );
    }

    #[test]
    fn many_short_tier_spells_are_shaded_by_their_share_of_each_cell() {
        let few = [(10.0, 20.0, Tier::Slow)];
        assert_eq!(shade(&few, 1.0), [(10.0, 20.0, Tier::Slow, 0.18)]);
        // 200 one-second slow spells, one every 10 s; cells 10 s wide: a 10 % share each.
        let many: Vec<_> = (0..200)
            .map(|i| (f64::from(i) * 10.0, f64::from(i) * 10.0 + 1.0, Tier::Slow))
            .collect();
        let shaded = shade(&many, 10.0);
        assert_eq!(shaded.len(), 200);
        assert!(shaded
            .iter()
            .all(|s| s.2 == Tier::Slow && (s.3 - (0.05 + 0.3 * 0.1)).abs() < 1e-9));
    }
}
