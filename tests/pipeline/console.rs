//! The console in a real browser: headless Chromium driven over `WebDriver` (`chromedriver`),
//! against `vigil serve` with the local Postgres and Redis and the embedded broker. An
//! investigator signs in, filters the queue, sees a new alert announced, opens an alert, claims
//! it from the keyboard and closes it as fraud; the label reaches `labels.v1` and the model; the admin pages and a form
//! without its CSRF token are refused; the pages load nothing from another host.
//!
//! The browser is Debian's `chromium` and `chromium-driver` (`.ci/run` installs them), or
//! `$VIGIL_CHROMIUM` and `$VIGIL_CHROMEDRIVER`. With `$VIGIL_SCREENSHOTS` set, the run saves
//! the README's screenshots there.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator, key::Key};
use serde_json::{Value, json};

use crate::api::{impossible_travel, learned_since};
use crate::stack::{self, Broker, Process, Stack, free_port};

/// The program at `$variable`, else `default`, which must exist.
fn program(variable: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(variable).map_or_else(|| PathBuf::from(default), PathBuf::from);
    assert!(
        path.exists(),
        "{} is missing: install Debian's chromium and chromium-driver (`.ci/run` does), or set \
         {variable}",
        path.display()
    );
    path
}

/// `chromedriver` on a free port, and a headless Chromium session through it.
async fn browser(driver_port: u16) -> Client {
    let chromium = program("VIGIL_CHROMIUM", "/usr/bin/chromium");
    let capabilities = json!({
        "goog:chromeOptions": {
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1280,1000"]
        }
    });
    let Value::Object(capabilities) = capabilities else {
        unreachable!()
    };
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{driver_port}"))
        .await
        .expect("a WebDriver session with chromedriver")
}

fn chromedriver(dir: &std::path::Path) -> (Process, u16) {
    let port = free_port();
    let mut command = Command::new(program("VIGIL_CHROMEDRIVER", "/usr/bin/chromedriver"));
    command.arg(format!("--port={port}"));
    let (process, lines) = Process::spawn(
        command,
        dir.join("chromedriver.log"),
        "ChromeDriver was started successfully",
    );
    assert!(
        lines.iter().any(|l| l.contains("started successfully")),
        "chromedriver did not start: {lines:?} {}",
        process.logs()
    );
    (process, port)
}

/// Waits for an element `css` whose text contains `text`.
async fn find_text(client: &Client, css: &str, text: &str) {
    let started = Instant::now();
    loop {
        for element in client.find_all(Locator::Css(css)).await.unwrap() {
            if element.text().await.unwrap_or_default().contains(text) {
                return;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no {css} with {text:?} in {}",
            client.source().await.unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn path_of(client: &Client) -> String {
    client.current_url().await.unwrap().path().to_owned()
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    if let Some(dir) = std::env::var_os("VIGIL_SCREENSHOTS") {
        std::fs::write(PathBuf::from(dir).join(name), png).unwrap();
    }
}

/// Every resource the page loaded: its address and size in bytes (decoded).
async fn loaded(client: &Client) -> Vec<(String, f64)> {
    let entries = client
        .execute(
            "return performance.getEntriesByType('navigation')
                 .concat(performance.getEntriesByType('resource'))
                 .map(e => [e.name, e.decodedBodySize]);",
            vec![],
        )
        .await
        .unwrap();
    entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e[0].as_str().unwrap().to_owned(),
                e[1].as_f64().unwrap_or(0.0),
            )
        })
        .collect()
}

#[test]
fn an_investigator_triages_an_alert_in_the_browser() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), 1);
    let stack = Stack::new(&broker.address);
    let (serve, address, ops) = stack.service(&["serve"], &[]);
    let investigator = stack.create_key("investigator", "ana");
    let lines = impossible_travel("tx", "4000056655665556");
    stack.post_ndjson(&address, "/v1/transactions", &lines, 100);
    stack.wait_for_decisions(lines.len() as i64);
    let (_driver, driver_port) = chromedriver(dir.path());
    let runtime = stack::runtime();
    let client = runtime.block_on(browser(driver_port));

    runtime.block_on(async {
        client.goto(&format!("{address}/console/")).await.unwrap();
        assert_eq!(path_of(&client).await, "/console/sign-in");
        let key = client.find(Locator::Id("key")).await.unwrap();
        key.send_keys(&investigator).await.unwrap();
        key.send_keys(&Key::Enter.to_string()).await.unwrap();
        find_text(&client, "h1", "Alert queue").await;

        let reason = client
            .find(Locator::Css("input[name=reason]"))
            .await
            .unwrap();
        reason.send_keys("IMPOSSIBLE_TRAVEL").await.unwrap();
        client
            .find(Locator::Css("form.filters button[type=submit]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        find_text(&client, "table.queue td", "400005******5556").await;
        let url = client.current_url().await.unwrap();
        assert!(
            url.query().unwrap().contains("reason=IMPOSSIBLE_TRAVEL"),
            "{url}"
        );
        for (resource, _) in loaded(&client).await {
            assert!(
                resource.starts_with(&address),
                "{resource} is from another host"
            );
        }
        let bytes: f64 = loaded(&client).await.iter().map(|r| r.1).sum();
        assert!(bytes < 100_000.0, "the queue page weighs {bytes} bytes");
        assert!(
            !client.source().await.unwrap().contains("4000056655665556"),
            "no card number in the page"
        );
        screenshot(&client, "console-queue.png").await;
    });

    // A new alert is announced on the open queue, through the session's live feed.
    let more = impossible_travel("more", "card_more");
    stack.post_ndjson(&address, "/v1/transactions", &more, 100);
    runtime.block_on(async {
        find_text(&client, "#live", "new alerts").await;

        client
            .find(Locator::Css("a[href='/console/alerts/tx_1']"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        find_text(&client, ".rule h3", "IMPOSSIBLE_TRAVEL").await;
        find_text(&client, "ul.comparisons li", "km/h").await;
        // Claimed from the keyboard.
        client
            .find(Locator::Css("body"))
            .await
            .unwrap()
            .send_keys("c")
            .await
            .unwrap();
        find_text(&client, "#assignee", "ana").await;
        screenshot(&client, "console-alert.png").await;
        let note = client.find(Locator::Id("note")).await.unwrap();
        note.send_keys("cardholder confirmed").await.unwrap();
        client
            .find(Locator::Id("fraud"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        find_text(&client, "#verdict", "fraud").await;
    });

    let labels = stack::topic_payloads(&broker.address, "labels.v1", 1);
    let label: Value = serde_json::from_str(&labels[0]).unwrap();
    assert_eq!(
        (
            &label["transaction_id"],
            &label["source"],
            &label["is_fraud"]
        ),
        (&json!("tx_1"), &json!("investigator"), &json!(true))
    );
    let updates_before = stack::metric(&ops, "vigil_scoring_model_updates_total");
    learned_since(&stack, (&address, &ops), updates_before, &serve);

    runtime.block_on(async {
        client
            .goto(&format!("{address}/console/admin/keys"))
            .await
            .unwrap();
        find_text(&client, "p.problem", "(investigator) may not do this").await;

        // A form stripped of its CSRF token is refused, and the session lives on.
        client
            .goto(&format!("{address}/console/queue"))
            .await
            .unwrap();
        client
            .execute(
                "const form = document.querySelector('form.sign-out');
                 form.querySelector('input[name=csrf]').remove();
                 form.submit();",
                vec![],
            )
            .await
            .unwrap();
        find_text(&client, "p.problem", "not sent from this session's pages").await;
        client
            .goto(&format!("{address}/console/queue"))
            .await
            .unwrap();
        find_text(&client, "h1", "Alert queue").await;

        client
            .find(Locator::Css("form.sign-out button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        find_text(&client, "h1", "Sign in").await;
        client
            .goto(&format!("{address}/console/queue"))
            .await
            .unwrap();
        assert_eq!(path_of(&client).await, "/console/sign-in");
        client.close().await.unwrap();
    });
}
