//! A card's story, on the alert and card pages: its recent payments as a timeline of scores,
//! where they happened (a plain plot of latitude and longitude, no map tiles), and as a table.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use maud::{Markup, html};

use super::page::{self, badge};
use crate::alerts::detail::CardTransaction;

/// `recent` payments, newest first; `current` (the alert's) ringed.
pub fn recent(recent: &[CardTransaction], current: Option<&str>) -> Markup {
    if recent.is_empty() {
        return html! {};
    }
    let is_current = |t: &CardTransaction| Some(t.transaction_id.as_str()) == current;
    html! {
        section {
            h2 { "The card's recent payments" }
            div.story {
                (timeline(recent, current))
                (positions(recent, current))
            }
            table.recent {
                tr { th { "When" } th { "Transaction" } th { "Merchant" } th { "Amount" } th { "Score" } th { "Decision" } }
                @for t in recent {
                    tr.current[is_current(t)] {
                        td { (page::time(t.occurred_at)) } td { (t.transaction_id) } td { (t.merchant_id) }
                        td { (page::amount(t.amount_minor, &t.currency)) } td { (page::score(t.score)) } td { (badge(&t.decision)) }
                    }
                }
            }
        }
    }
}

const WIDTH: f64 = 420.0;
const HEIGHT: f64 = 150.0;
const MARGIN: f64 = 20.0;

/// Score against time.
fn timeline(recent: &[CardTransaction], current: Option<&str>) -> Markup {
    let times = recent.iter().map(|t| t.occurred_at);
    let (Some(first), Some(last)) = (times.clone().min(), times.max()) else {
        return html! {};
    };
    let span = (last - first).as_seconds_f64().max(1.0);
    let x =
        |at: DateTime<Utc>| MARGIN + (WIDTH - 2.0 * MARGIN) * (at - first).as_seconds_f64() / span;
    let y = |score: f32| HEIGHT - MARGIN - (HEIGHT - 2.0 * MARGIN) * f64::from(score);
    html! {
        figure {
            figcaption { "Score over time" }
            svg.timeline width=(WIDTH) height=(HEIGHT) role="img" aria-label="Scores of the card's recent payments over time" {
                line x1=(MARGIN) y1=(HEIGHT - MARGIN) x2=(WIDTH - MARGIN) y2=(HEIGHT - MARGIN) class="axis" {}
                line x1=(MARGIN) y1=(MARGIN) x2=(MARGIN) y2=(HEIGHT - MARGIN) class="axis" {}
                text x="0" y=(MARGIN + 4.0) { "1" }
                text x="0" y=(HEIGHT - MARGIN) { "0" }
                text x=(MARGIN) y=(HEIGHT - 4.0) { (page::time(first)) }
                text x=(WIDTH - 130.0) y=(HEIGHT - 4.0) { (page::time(last)) }
                @for t in recent {
                    circle cx=(format!("{:.1}", x(t.occurred_at))) cy=(format!("{:.1}", y(t.score)))
                        r=(if Some(t.transaction_id.as_str()) == current { 7 } else { 4 }) class=(t.decision) {
                        title { (t.transaction_id) ": " (page::score(t.score)) " " (t.decision) }
                    }
                }
            }
        }
    }
}

/// Where the payments happened, in time order, on a plot of longitude (across) and latitude
/// (up) fitted to them.
fn positions(recent: &[CardTransaction], current: Option<&str>) -> Markup {
    let placed: Vec<(&CardTransaction, f64, f64)> = recent
        .iter()
        .rev()
        .filter_map(|t| Some((t, t.lat?, t.lon?)))
        .collect();
    if placed.is_empty() {
        return html! { figure { figcaption { "No positions given" } } };
    }
    let bounds = |pick: fn(&(&CardTransaction, f64, f64)) -> f64| {
        let low = placed.iter().map(pick).fold(f64::INFINITY, f64::min);
        let high = placed.iter().map(pick).fold(f64::NEG_INFINITY, f64::max);
        // At least a degree across, so that payments in one town do not fill the plot.
        let pad = ((high - low) * 0.1).max(0.5);
        (low - pad, high + pad)
    };
    let (south, north) = bounds(|p| p.1);
    let (west, east) = bounds(|p| p.2);
    let x = |lon: f64| MARGIN + (WIDTH - 2.0 * MARGIN) * (lon - west) / (east - west);
    let y = |lat: f64| HEIGHT - MARGIN - (HEIGHT - 2.0 * MARGIN) * (lat - south) / (north - south);
    let mut path = String::new();
    for (i, (_, lat, lon)) in placed.iter().enumerate() {
        let step = if i == 0 { "M" } else { " L" };
        let _ = write!(path, "{step}{:.1},{:.1}", x(*lon), y(*lat));
    }
    html! {
        figure {
            figcaption { "Where, in time order" }
            svg.positions width=(WIDTH) height=(HEIGHT) role="img" aria-label="Positions of the card's recent payments" {
                rect x=(MARGIN) y=(MARGIN) width=(WIDTH - 2.0 * MARGIN) height=(HEIGHT - 2.0 * MARGIN) class="frame" {}
                text x=(MARGIN) y=(HEIGHT - 4.0) { (format!("{south:.1}, {west:.1}")) }
                text x=(WIDTH - 90.0) y="14" { (format!("{north:.1}, {east:.1}")) }
                path d=(path) class="route" {}
                @for (t, lat, lon) in &placed {
                    circle cx=(format!("{:.1}", x(*lon))) cy=(format!("{:.1}", y(*lat)))
                        r=(if Some(t.transaction_id.as_str()) == current { 7 } else { 4 }) class=(t.decision) {
                        title { (t.transaction_id) " at " (format!("{lat:.3}, {lon:.3}")) ", " (page::time(t.occurred_at)) }
                    }
                }
            }
        }
    }
}
