//! Progress on long command-line work, on standard error (hidden when it is not a terminal).

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// A running count with its rate, for work of unknown length.
pub fn counter(what: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {prefix} {human_pos} events ({per_sec}) {elapsed}")
            .expect("a valid template"),
    );
    bar.set_prefix(what.to_owned());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// A bar over `len` steps.
pub fn bar(what: &str, len: u64, unit: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{prefix}} [{{bar:30}}] {{pos}}/{{len}} {unit} {{elapsed}}, {{eta}} left"
        ))
        .expect("a valid template"),
    );
    bar.set_prefix(what.to_owned());
    bar
}

/// A line rewritten in place with the latest figures.
pub fn live() -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("a valid template"));
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}
