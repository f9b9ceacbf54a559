//! The sharing curve: two bitget-poller instances on one IP that do not talk to each other,
//! with 0–30 ms of arrival jitter, in the limiter's discrete-event model (the real limiter
//! core, a Bitget-like meter, simulated time). The second starts 5 s after the first.
//!
//! ```sh
//! cargo bench --bench share_curve            # prints the table, writes docs/share-curve.png
//! ```

use std::error::Error;

use bitget_poller::limiter::model::{Outcome, Scenario};
use plotters::prelude::*;
use plotters::style::FontStyle;

const S: u64 = 1_000_000;
const SECONDS: u64 = 60;
const FONT: &str = "DejaVu Sans";

fn main() -> Result<(), Box<dyn Error>> {
    let scenario = Scenario {
        starts_us: vec![0, 5 * S],
        offsets_us: vec![3_000_000, -250_000],
        jitter_down_us: 5_000,
        ..Scenario::alone(20, SECONDS, 30, 5)
    };
    let outcome = scenario.run();
    println!("second  A/s  B/s  sum  A-limit  B-limit  429s");
    for s in 0..SECONDS as usize {
        let (a, b) = (&outcome.clients[0], &outcome.clients[1]);
        println!(
            "{s:6} {:4} {:4} {:4} {:8} {:8} {:5}",
            a.accepted_per_second[s],
            b.accepted_per_second[s],
            a.accepted_per_second[s] + b.accepted_per_second[s],
            a.limit_per_second[s],
            b.limit_per_second[s],
            a.rejected_per_second[s] + b.rejected_per_second[s]
        );
    }
    let (from, to) = (15, SECONDS as usize);
    println!(
        "from 10 s after both started: together {:.3}, A {:.3}, B {:.3}, {} rejections ({} in the first 15 s)",
        outcome.utilization(from, to),
        outcome.client_utilization(0, from, to),
        outcome.client_utilization(1, from, to),
        outcome.rejected_between(from, to),
        outcome.rejected_between(0, from),
    );
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/share-curve.png");
    draw(&outcome, path)?;
    println!("wrote {path}");
    Ok(())
}

fn draw(outcome: &Outcome, path: &str) -> Result<(), Box<dyn Error>> {
    let _ = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
    let root = BitMapBackend::new(path, (900, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "two instances on one IP, 0-30 ms jitter: accepted candle requests per second",
            (FONT, 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(40)
        .build_cartesian_2d(0f64..SECONDS as f64, 0f64..22f64)?;
    chart
        .configure_mesh()
        .x_desc("seconds (B starts at 5 s)")
        .y_desc("requests / s")
        .label_style((FONT, 13))
        .draw()?;
    let series = |values: Vec<u32>| -> Vec<(f64, f64)> {
        values
            .into_iter()
            .enumerate()
            .map(|(s, v)| (s as f64 + 0.5, f64::from(v)))
            .collect()
    };
    let a = &outcome.clients[0];
    let b = &outcome.clients[1];
    let sum: Vec<u32> = a
        .accepted_per_second
        .iter()
        .zip(&b.accepted_per_second)
        .map(|(x, y)| x + y)
        .collect();
    for (label, values, color) in [
        ("A", a.accepted_per_second.clone(), BLUE),
        ("B", b.accepted_per_second.clone(), RED),
        ("A + B", sum, BLACK),
        ("server limit", outcome.limit_per_second.clone(), GREEN),
    ] {
        chart
            .draw_series(LineSeries::new(series(values), color.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2)));
    }
    let rejections: Vec<(f64, f64)> = (0..outcome.limit_per_second.len())
        .filter(|&s| a.rejected_per_second[s] + b.rejected_per_second[s] > 0)
        .map(|s| (s as f64 + 0.5, 21.0))
        .collect();
    chart
        .draw_series(
            rejections
                .into_iter()
                .map(|p| Cross::new(p, 5, RED.stroke_width(2))),
        )?
        .label("a second with a 429")
        .legend(|(x, y)| Cross::new((x + 9, y), 5, RED.stroke_width(2)));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font((FONT, 13))
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    root.present()?;
    Ok(())
}
