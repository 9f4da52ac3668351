//! Prometheus metrics as the services serve them on `/metrics`.

use prometheus::{Encoder as _, Registry};

/// `registry` in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    let mut out = vec![];
    prometheus::TextEncoder::new()
        .encode(&registry.gather(), &mut out)
        .expect("metrics encode to memory");
    String::from_utf8(out).expect("the text format is UTF-8")
}
