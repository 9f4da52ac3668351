//! The console's pages called in process, as a browser calls them (cookies, forms), against a
//! database of its own per test: signing in and out, sessions that end with their key, CSRF
//! tokens, the queue's filters, working an alert, and what each role may open. The real
//! browser's test is `tests/pipeline/console.rs`.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use support::{CLIENT, TestApi, new_key, seed_rules};
use tower::ServiceExt as _;
use vigil_api::{ApiConfig, Role};

/// A browser's side of the conversation: its cookies, and the last page.
struct Browser<'a> {
    api: &'a TestApi,
    cookies: BTreeMap<String, String>,
}

struct Page {
    status: StatusCode,
    headers: HeaderMap,
    html: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .map_or("", |v| v.to_str().unwrap())
    }

    /// The value of the first hidden field `name`.
    fn field(&self, name: &str) -> String {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self
            .html
            .find(&marker)
            .unwrap_or_else(|| panic!("no {name}: {}", self.html))
            + marker.len();
        let end = start + self.html[start..].find('"').unwrap();
        self.html[start..end].to_owned()
    }
}

impl<'a> Browser<'a> {
    fn new(api: &'a TestApi) -> Self {
        Self {
            api,
            cookies: BTreeMap::new(),
        }
    }

    async fn open(&mut self, path: &str) -> Page {
        self.send(Method::GET, path, None).await
    }

    async fn submit(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        self.send(Method::POST, path, Some(body)).await
    }

    async fn send(&mut self, method: Method, path: &str, body: Option<String>) -> Page {
        let cookies: Vec<String> = self
            .cookies
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .extension(ConnectInfo(SocketAddr::from((CLIENT, 40_000))))
            .header(header::COOKIE, cookies.join("; "));
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        }
        let request = request
            .body(body.map_or_else(Body::empty, Body::from))
            .unwrap();
        let response = self.api.app.clone().oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        for set in parts.headers.get_all(header::SET_COOKIE) {
            let set = set.to_str().unwrap();
            let (pair, _) = set.split_once(';').unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if set.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        Page {
            status: parts.status,
            headers: parts.headers,
            html: String::from_utf8(bytes.to_vec()).unwrap(),
        }
    }

    /// Signs in with `key`, through the sign-in form.
    async fn sign_in(&mut self, key: &str) -> Page {
        let form = self.open("/console/sign-in").await;
        assert_eq!(form.status, StatusCode::OK);
        let csrf = form.field("csrf");
        self.submit("/console/sign-in", &[("csrf", &csrf), ("key", key)])
            .await
    }
}

/// Two alerts on one card: `a_high` (0.97, declined, impossible travel) and `a_low` (0.55).
async fn two_alerts(api: &TestApi) {
    let explanation = serde_json::json!({
        "score": 0.97, "decision": "decline",
        "rules": [{"id": "travel", "reason": "IMPOSSIBLE_TRAVEL",
            "description": "faster than 900 km/h since the card's last payment",
            "when": "card_speed_kmh > 900",
            "score": 0.6, "values": {"card_speed_kmh": 5120.0}}],
        "model": [{"feature": "card_amount_ratio_30d", "log_odds": 1.8, "value": 7.3},
                  {"feature": "merchant_fraud_rate_7d", "log_odds": -0.4, "value": 0.0}],
        "comparisons": ["amount is 7.3x this card's 30-day average"]
    });
    for (id, score, decision, minute) in [
        ("a_high", 0.97, "decline", 10),
        ("a_low", 0.55, "review", 20),
    ] {
        sqlx::query(
            "INSERT INTO decisions (transaction_id, card_id, merchant_id, occurred_at, amount_minor,
                 currency, score, decision, model_version, reasons, features, lat, lon)
             VALUES ($1, 'card_7', 'shop_1', '2026-03-01T10:00:00Z'::timestamptz
                 + make_interval(mins => $4), 12345, 'EUR', $2, $3, 'online-v1', '', '',
                 48.85 - $4, 2.35 + $4)",
        )
        .bind(id)
        .bind(score)
        .bind(decision)
        .bind(minute)
        .execute(&api.pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO alerts (transaction_id, card_id, merchant_id, occurred_at, score,
                 decision, reasons, rules, transaction, explanation)
             SELECT transaction_id, card_id, merchant_id, occurred_at, score, decision, '',
                 ARRAY['IMPOSSIBLE_TRAVEL'], jsonb_build_object('transaction_id', transaction_id),
                 $2
             FROM decisions WHERE transaction_id = $1",
        )
        .bind(id)
        .bind(&explanation)
        .execute(&api.pool)
        .await
        .unwrap();
    }
}

async fn alert_state(api: &TestApi, id: &str) -> (String, Option<String>, Option<String>, i32) {
    sqlx::query_as(
        "SELECT status, assignee, disposition, version FROM alerts WHERE transaction_id = $1",
    )
    .bind(id)
    .fetch_one(&api.pool)
    .await
    .unwrap()
}

/// An investigator signs in with a key, filters the queue, opens an alert, claims it and closes
/// it as fraud (the label queued for `labels.v1`, the change audited), then signs out, after
/// which the session's cookie opens nothing.
#[tokio::test]
async fn an_investigator_signs_in_works_an_alert_and_signs_out() {
    let api = TestApi::new(ApiConfig::default()).await;
    two_alerts(&api).await;
    let mut browser = Browser::new(&api);

    let away = browser.open("/console/queue").await;
    assert_eq!(away.status, StatusCode::SEE_OTHER);
    assert_eq!(away.location(), "/console/sign-in");

    let signed_in = browser.sign_in(api.key(Role::Investigator)).await;
    assert_eq!(
        signed_in.status,
        StatusCode::SEE_OTHER,
        "{}",
        signed_in.html
    );
    assert_eq!(signed_in.location(), "/console/queue");
    let cookie = signed_in
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|c| c.to_str().unwrap())
        .find(|c| c.starts_with("vigil_session="))
        .unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );

    let queue = browser.open("/console/queue?status=open&sort=score").await;
    assert_eq!(queue.status, StatusCode::OK);
    assert!(queue.html.find("a_high").unwrap() < queue.html.find("a_low").unwrap());
    let policy = queue.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(policy.contains("default-src 'none'"), "{policy}");
    let high = browser.open("/console/queue?min_score=0.9&decision=").await;
    assert!(
        high.html.contains("a_high") && !high.html.contains("a_low"),
        "{}",
        high.html
    );
    let bad = browser.open("/console/queue?min_score=lots").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.html.contains("min_score"), "{}", bad.html);

    let alert = browser.open("/console/alerts/a_high").await;
    assert_eq!(alert.status, StatusCode::OK);
    for shown in [
        "IMPOSSIBLE_TRAVEL",
        "card_speed_kmh &gt; 900",
        "7.3x",
        "class=\"raises\"",
        "online-v1",
        "class=\"route\"",
    ] {
        assert!(alert.html.contains(shown), "{shown}: {}", alert.html);
    }
    let csrf = alert.field("csrf");
    let forged = browser
        .submit(
            "/console/alerts/a_high",
            &[("action", "claim"), ("version", "1")],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(alert_state(&api, "a_high").await.3, 1, "nothing changed");

    let claimed = browser
        .submit(
            "/console/alerts/a_high",
            &[
                ("csrf", &csrf),
                ("action", "claim"),
                ("version", "1"),
                ("status", "open"),
            ],
        )
        .await;
    assert_eq!(claimed.status, StatusCode::SEE_OTHER, "{}", claimed.html);
    let (status, assignee, _, version) = alert_state(&api, "a_high").await;
    assert_eq!(
        (status.as_str(), assignee.as_deref()),
        ("in_review", Some("investigator"))
    );
    let stale = browser
        .submit(
            "/console/alerts/a_high",
            &[("csrf", &csrf), ("action", "fraud"), ("version", "1")],
        )
        .await;
    assert_eq!(stale.status, StatusCode::CONFLICT);
    assert!(stale.html.contains("reload"), "{}", stale.html);
    let closed = browser
        .submit(
            "/console/alerts/a_high",
            &[
                ("csrf", &csrf),
                ("action", "fraud"),
                ("version", &version.to_string()),
                ("status", "in_review"),
                ("note", "cardholder confirmed"),
            ],
        )
        .await;
    assert_eq!(closed.status, StatusCode::SEE_OTHER, "{}", closed.html);
    let (status, _, disposition, _) = alert_state(&api, "a_high").await;
    assert_eq!(
        (status.as_str(), disposition.as_deref()),
        ("closed", Some("fraud"))
    );
    let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM labels_outbox")
        .fetch_one(&api.pool)
        .await
        .unwrap();
    assert_eq!(queued, 1, "the verdict goes to labels.v1");
    let history = browser.open("/console/alerts/a_high").await;
    assert!(
        history.html.contains("key 2 (investigator)"),
        "{}",
        history.html
    );

    let signed_out = browser
        .submit("/console/sign-out", &[("csrf", &csrf)])
        .await;
    assert_eq!(signed_out.location(), "/console/sign-in");
    let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM console_sessions")
        .fetch_one(&api.pool)
        .await
        .unwrap();
    assert_eq!(sessions, 0);
}

/// The checked alerts of the queue are claimed in one go (and one handed to a colleague); a
/// form without the session's token changes none.
#[tokio::test]
async fn checked_alerts_are_claimed_together() {
    let api = TestApi::new(ApiConfig::default()).await;
    two_alerts(&api).await;
    let mut browser = Browser::new(&api);
    browser.sign_in(api.key(Role::Investigator)).await;
    let queue = browser.open("/console/queue").await;
    let csrf = queue.field("csrf");
    let checked = [
        ("id", "a_high"),
        ("v-a_high", "1"),
        ("s-a_high", "open"),
        ("id", "a_low"),
        ("v-a_low", "1"),
        ("s-a_low", "open"),
        ("action", "claim"),
    ];
    let forged = browser.submit("/console/queue/bulk", &checked).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let mut fields = checked.to_vec();
    fields.push(("csrf", &csrf));
    let done = browser.submit("/console/queue/bulk", &fields).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.html);
    for id in ["a_high", "a_low"] {
        assert_eq!(alert_state(&api, id).await.0, "in_review");
    }
    let assigned = browser
        .submit(
            "/console/alerts/a_low",
            &[
                ("csrf", &csrf),
                ("action", "assign"),
                ("version", "2"),
                ("assignee", "bob"),
            ],
        )
        .await;
    assert_eq!(assigned.status, StatusCode::SEE_OTHER, "{}", assigned.html);
    assert_eq!(alert_state(&api, "a_low").await.1.as_deref(), Some("bob"));
    // Changed since: version 1 is stale, and the page says which were refused and why.
    let again = browser.submit("/console/queue/bulk", &fields).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert!(
        again.html.contains("a_low") && again.html.contains("version"),
        "{}",
        again.html
    );
}

/// Only a live investigator or admin key signs in, and only through the form the console gave;
/// a session ends when its key is revoked or when it expires.
#[tokio::test]
async fn sessions_need_a_live_key_of_a_console_role() {
    let api = TestApi::new(ApiConfig::default()).await;
    let mut browser = Browser::new(&api);
    let wrong = browser.sign_in("vgl_0000").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.html.contains("not a live API key"));
    let ingest = browser.sign_in(api.key(Role::Ingest)).await;
    assert_eq!(ingest.status, StatusCode::FORBIDDEN);
    assert!(ingest.html.contains("ingest key"));
    let no_form = Browser::new(&api)
        .submit("/console/sign-in", &[("key", api.key(Role::Admin))])
        .await;
    assert_eq!(no_form.status, StatusCode::FORBIDDEN);
    assert!(
        !no_form
            .headers
            .get_all(header::SET_COOKIE)
            .iter()
            .any(|c| { c.to_str().unwrap().starts_with("vigil_session") })
    );

    let mut admin = Browser::new(&api);
    assert_eq!(
        admin.sign_in(api.key(Role::Admin)).await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(admin.open("/console/queue").await.status, StatusCode::OK);
    sqlx::query("UPDATE console_sessions SET expires_at = now() - interval '1 second'")
        .execute(&api.pool)
        .await
        .unwrap();
    assert_eq!(
        admin.open("/console/queue").await.location(),
        "/console/sign-in"
    );

    let mut investigator = Browser::new(&api);
    investigator.sign_in(api.key(Role::Investigator)).await;
    assert_eq!(
        investigator.open("/console/queue").await.status,
        StatusCode::OK
    );
    sqlx::query("UPDATE api_keys SET revoked_at = now() WHERE role = 'investigator'")
        .execute(&api.pool)
        .await
        .unwrap();
    assert_eq!(
        investigator.open("/console/queue").await.location(),
        "/console/sign-in"
    );
}

/// The assets are served from the binary, and the pages name no other host.
#[tokio::test]
async fn pages_load_only_the_consoles_own_assets() {
    let api = TestApi::new(ApiConfig::default()).await;
    let mut browser = Browser::new(&api);
    let sign_in = browser.open("/console/sign-in").await;
    assert!(!sign_in.html.contains("http://") && !sign_in.html.contains("https://"));
    for asset in ["/console/assets/console.css", "/console/assets/console.js"] {
        let served = browser.open(asset).await;
        assert_eq!(served.status, StatusCode::OK, "{asset}");
        assert!(served.html.len() > 500, "{asset}");
    }
}

/// The admin pages are an admin's: an investigator's session is refused them (and their forms),
/// and sees no link to them.
#[tokio::test]
async fn an_investigator_cannot_open_the_admin_pages() {
    let api = TestApi::new(ApiConfig::default()).await;
    let mut investigator = Browser::new(&api);
    investigator.sign_in(api.key(Role::Investigator)).await;
    let queue = investigator.open("/console/queue").await;
    assert!(!queue.html.contains("/console/admin/"), "{}", queue.html);
    let csrf = queue.field("csrf");
    for page in ["keys", "lists", "models", "rules", "audit"] {
        let refused = investigator.open(&format!("/console/admin/{page}")).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{page}");
        assert!(refused.html.contains("investigator"), "{}", refused.html);
    }
    let made = investigator
        .submit(
            "/console/admin/keys",
            &[("csrf", &csrf), ("name", "mallory"), ("role", "admin")],
        )
        .await;
    assert_eq!(made.status, StatusCode::FORBIDDEN);
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM api_keys")
        .fetch_one(&api.pool)
        .await
        .unwrap();
    assert_eq!(keys, 3, "no key made");
}

/// An admin makes a key (its secret shown once, and it signs in), revokes it, adds a block
/// entry, expires and removes it, and finds the audit chain intact with every change in it.
#[tokio::test]
async fn an_admin_manages_keys_and_lists_and_verifies_the_trail() {
    let api = TestApi::new(ApiConfig::default()).await;
    let mut admin = Browser::new(&api);
    admin.sign_in(api.key(Role::Admin)).await;
    let keys = admin.open("/console/admin/keys").await;
    assert_eq!(keys.status, StatusCode::OK);
    let csrf = keys.field("csrf");
    let made = admin
        .submit(
            "/console/admin/keys",
            &[
                ("csrf", &csrf),
                ("name", "bea"),
                ("role", "investigator"),
                ("expires_in_days", "30"),
            ],
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.html);
    let start = made.html.find("vgl_").unwrap();
    let secret = &made.html[start..start + 68];
    let mut bea = Browser::new(&api);
    assert_eq!(bea.sign_in(secret).await.location(), "/console/queue");
    let shown_again = admin.open("/console/admin/keys").await;
    assert!(
        !shown_again.html.contains(secret),
        "the secret is shown once"
    );
    let bea_id: i64 = sqlx::query_scalar("SELECT id FROM api_keys WHERE name = 'bea'")
        .fetch_one(&api.pool)
        .await
        .unwrap();
    let revoked = admin
        .submit(
            &format!("/console/admin/keys/{bea_id}/revoke"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(revoked.location(), "/console/admin/keys");
    assert_eq!(
        bea.open("/console/queue").await.location(),
        "/console/sign-in"
    );

    let added = admin
        .submit(
            "/console/admin/lists",
            &[
                ("csrf", &csrf),
                ("list", "block"),
                ("kind", "merchant"),
                ("value", "shop_9"),
                ("reason", "skimming"),
            ],
        )
        .await;
    assert_eq!(added.location(), "/console/admin/lists", "{}", added.html);
    let lists = admin.open("/console/admin/lists").await;
    assert!(lists.html.contains("shop_9") && lists.html.contains("skimming"));
    let entry: i64 = sqlx::query_scalar("SELECT id FROM list_entries")
        .fetch_one(&api.pool)
        .await
        .unwrap();
    let path = format!("/console/admin/lists/{entry}");
    admin
        .submit(&path, &[("csrf", &csrf), ("action", "expire")])
        .await;
    assert!(
        !admin
            .open("/console/admin/lists")
            .await
            .html
            .contains("shop_9")
    );
    assert!(
        admin
            .open("/console/admin/lists?expired=1")
            .await
            .html
            .contains("shop_9")
    );
    admin
        .submit(&path, &[("csrf", &csrf), ("action", "remove")])
        .await;
    assert!(
        !admin
            .open("/console/admin/lists?expired=1")
            .await
            .html
            .contains("shop_9")
    );

    let verified = admin
        .submit("/console/admin/audit", &[("csrf", &csrf)])
        .await;
    assert_eq!(verified.status, StatusCode::OK);
    assert!(verified.html.contains("Intact"), "{}", verified.html);
    for action in [
        "key.create",
        "key.revoke",
        "list.create",
        "list.update",
        "list.delete",
    ] {
        assert!(verified.html.contains(action), "{action}");
    }
    let models = admin.open("/console/admin/models").await;
    assert_eq!(models.status, StatusCode::OK);
    let system = admin.open("/console/system").await;
    assert!(system.html.contains("Consumer lag"), "{}", system.html);
}

/// One admin drafts a rule (a condition that cannot be used comes back with its line and
/// column at the field), tests it on history; the same admin cannot approve it, another does,
/// and the version it published can be rolled back.
#[tokio::test]
async fn a_rule_is_drafted_tested_and_approved_by_two_admins() {
    let api = TestApi::new(ApiConfig::default()).await;
    seed_rules(&api.pool).await;
    let mut maker = Browser::new(&api);
    maker.sign_in(api.key(Role::Admin)).await;
    let editor = maker.open("/console/admin/rules/new").await;
    assert_eq!(editor.status, StatusCode::OK, "{}", editor.html);
    let csrf = editor.field("csrf");
    let mut fields = vec![
        ("csrf", csrf.as_str()),
        ("action", "save"),
        ("id", "night_big"),
        ("description", "A large amount at night"),
        ("when", "is_night == 1 and amont > 50000"),
        ("does", "review"),
        ("reason", "NIGHT_BIG"),
    ];
    let refused = maker.submit("/console/admin/rules", &fields).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused
            .html
            .contains("Line 1, column 19: unknown feature or field `amont`"),
        "{}",
        refused.html
    );
    assert!(
        refused.html.contains("is_night == 1 and amont"),
        "what was typed is kept"
    );
    fields[4].1 = "is_night == 1 and amount > 50000";
    let saved = maker.submit("/console/admin/rules", &fields).await;
    assert_eq!(
        saved.location(),
        "/console/admin/rules/night_big",
        "{}",
        saved.html
    );

    let page = maker.open("/console/admin/rules/night_big").await;
    assert!(page.html.contains("Draft, revision 1"), "{}", page.html);
    assert!(
        !page.html.contains("Approve and publish"),
        "not to its author"
    );
    let tested = maker
        .submit(
            "/console/admin/rules/night_big",
            &[
                ("csrf", &csrf),
                ("action", "test"),
                ("from", "2026-01-01T00:00"),
                ("to", "2026-12-01T00:00"),
            ],
        )
        .await;
    assert_eq!(tested.status, StatusCode::OK, "{}", tested.html);
    assert!(tested.html.contains("Alerts added"), "{}", tested.html);
    let own = maker
        .submit(
            "/console/admin/rules/night_big",
            &[("csrf", &csrf), ("action", "approve"), ("revision", "1")],
        )
        .await;
    assert_eq!(own.status, StatusCode::FORBIDDEN, "{}", own.html);

    let mut checker = Browser::new(&api);
    checker
        .sign_in(&new_key(&api.pool, Role::Admin, None).await)
        .await;
    let page = checker.open("/console/admin/rules/night_big").await;
    assert!(page.html.contains("Approve and publish"), "{}", page.html);
    let checker_csrf = page.field("csrf");
    let approved = checker
        .submit(
            "/console/admin/rules/night_big",
            &[
                ("csrf", &checker_csrf),
                ("action", "approve"),
                ("revision", "1"),
            ],
        )
        .await;
    assert_eq!(approved.status, StatusCode::SEE_OTHER, "{}", approved.html);
    let listed = checker.open("/console/admin/rules").await;
    assert!(
        listed.html.contains("Rule set version 2"),
        "{}",
        listed.html
    );
    let versions = checker.open("/console/admin/rules/versions").await;
    assert!(
        versions.html.contains("add rule night_big"),
        "{}",
        versions.html
    );
    let rolled = checker
        .submit(
            "/console/admin/rules/versions/1/rollback",
            &[("csrf", &checker_csrf)],
        )
        .await;
    assert_eq!(rolled.status, StatusCode::SEE_OTHER, "{}", rolled.html);
    let listed = checker.open("/console/admin/rules").await;
    assert!(
        listed.html.contains("Rule set version 3"),
        "{}",
        listed.html
    );
    assert!(!listed.html.contains("night_big"), "{}", listed.html);
}
