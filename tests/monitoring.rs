//! The operators' dashboard and scrape configuration (`docs/monitoring/`, run by compose's
//! `monitoring` profile) name only metrics the services register, and scrape every service.

use std::collections::BTreeSet;
use std::path::Path;

fn read(path: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every `vigil_...` name in `text`, as registered (a histogram's series suffixes taken off).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (at, _) in text.match_indices("vigil_") {
        let name: String = text[at..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
            .collect();
        let name = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(&name)
            .to_owned();
        names.insert(name);
    }
    names
}

#[test]
fn the_dashboard_reads_only_metrics_the_services_register() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("docs/monitoring/grafana/dashboards/vigil.json")).unwrap();
    let queries: Vec<&str> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|panel| panel["targets"].as_array().unwrap())
        .map(|target| target["expr"].as_str().unwrap())
        .collect();
    let read_by_dashboard = metric_names(&queries.join("\n"));
    let registered: BTreeSet<String> = [
        "scoring/src/service/metrics.rs",
        "ingest/src/http/metrics.rs",
        "api/src/metrics.rs",
    ]
    .iter()
    .flat_map(|file| metric_names(&read(file)))
    .collect();
    let unknown: Vec<_> = read_by_dashboard.difference(&registered).collect();
    assert!(unknown.is_empty(), "not registered: {unknown:?}");
    for needed in [
        "vigil_scoring_consumer_lag",
        "vigil_scoring_decisions_total",
        "vigil_scoring_event_to_commit_seconds",
        "vigil_scoring_alerts_total",
        "vigil_model_psi",
        "vigil_scoring_dead_letters_total",
    ] {
        assert!(
            read_by_dashboard.contains(needed),
            "the dashboard shows {needed}"
        );
    }
}

#[test]
fn prometheus_scrapes_every_service_compose_runs() {
    let scrape = read("docs/monitoring/prometheus.yml");
    let compose = read("docker-compose.yml");
    for service in ["ingest", "score", "api"] {
        assert!(
            compose.contains(&format!("\n  {service}:\n")),
            "{service} in compose"
        );
        assert!(
            scrape.contains(&format!("\"{service}:9464\"")),
            "{service} scraped"
        );
    }
    assert!(compose.contains("./docs/monitoring/grafana/dashboards:/var/lib/grafana/dashboards"));
}
