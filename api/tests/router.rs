//! The API's router called in process (`tower::ServiceExt::oneshot`), against a database of its
//! own per test (the local Postgres, migrated) and the local Redis: who may call what, the error
//! bodies, the limits. The process-level tests (`tests/pipeline/`) keep what needs processes.

mod support;

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};
use sqlx::PgPool;
use support::{CLIENT, ROUTER_PAN_KEY, TestApi, new_key, trail};
use tower::ServiceExt as _;
use vigil_api::audit::{Trail, Verdict};
use vigil_api::{ApiConfig, Role};
use vigil_schema::pan::PanTokenizer;

/// A route with a request that passes its extractors: (method, path as routed, path sent,
/// body, roles allowed).
type Route = (
    Method,
    &'static str,
    &'static str,
    Option<Value>,
    &'static [Role],
);

const INVESTIGATE: &[Role] = &[Role::Investigator, Role::Admin];
const ANY: &[Role] = &Role::ALL;
const ADMIN: &[Role] = &[Role::Admin];

/// Every route of the API.
fn routes() -> Vec<Route> {
    let route = |method, routed, sent, body, allowed| (method, routed, sent, body, allowed);
    let rule = json!({"id": "big", "description": "d", "when": "amount > 1", "score": 1.0,
        "reason": "BIG"});
    vec![
        route(Method::GET, "/v1/alerts", "/v1/alerts", None, INVESTIGATE),
        route(
            Method::GET,
            "/v1/alerts/live",
            "/v1/alerts/live",
            None,
            INVESTIGATE,
        ),
        route(
            Method::GET,
            "/v1/alerts/{id}",
            "/v1/alerts/none",
            None,
            INVESTIGATE,
        ),
        route(
            Method::PATCH,
            "/v1/alerts/{id}",
            "/v1/alerts/none",
            Some(json!({"version": 1})),
            INVESTIGATE,
        ),
        route(
            Method::POST,
            "/v1/alerts/bulk",
            "/v1/alerts/bulk",
            Some(json!({"changes": []})),
            INVESTIGATE,
        ),
        route(
            Method::GET,
            "/v1/cards/{card_id}/risk",
            "/v1/cards/c1/risk",
            None,
            INVESTIGATE,
        ),
        route(
            Method::GET,
            "/v1/decisions/{transaction_id}",
            "/v1/decisions/none",
            None,
            ANY,
        ),
        route(Method::GET, "/v1/lists", "/v1/lists", None, ADMIN),
        route(
            Method::POST,
            "/v1/lists",
            "/v1/lists",
            Some(json!({"list": "block", "kind": "merchant", "value": "m_blocked"})),
            ADMIN,
        ),
        route(
            Method::PATCH,
            "/v1/lists/{id}",
            "/v1/lists/999999",
            Some(json!({"reason": "r"})),
            ADMIN,
        ),
        route(
            Method::DELETE,
            "/v1/lists/{id}",
            "/v1/lists/999999",
            None,
            ADMIN,
        ),
        route(Method::GET, "/v1/keys", "/v1/keys", None, ADMIN),
        route(
            Method::POST,
            "/v1/keys",
            "/v1/keys",
            Some(json!({"name": "n", "role": "ingest"})),
            ADMIN,
        ),
        route(
            Method::DELETE,
            "/v1/keys/{id}",
            "/v1/keys/999999",
            None,
            ADMIN,
        ),
        route(Method::GET, "/v1/models", "/v1/models", None, ADMIN),
        route(
            Method::GET,
            "/v1/models/{version}",
            "/v1/models/gbt-none",
            None,
            ADMIN,
        ),
        route(
            Method::POST,
            "/v1/models/{version}/promote",
            "/v1/models/gbt-none/promote",
            Some(json!({"to": "shadow"})),
            ADMIN,
        ),
        route(
            Method::POST,
            "/v1/models/{version}/retire",
            "/v1/models/gbt-none/retire",
            None,
            ADMIN,
        ),
        route(Method::GET, "/v1/rules", "/v1/rules", None, ADMIN),
        route(
            Method::POST,
            "/v1/rules",
            "/v1/rules",
            Some(rule.clone()),
            ADMIN,
        ),
        route(Method::GET, "/v1/rules/{id}", "/v1/rules/big", None, ADMIN),
        route(
            Method::PUT,
            "/v1/rules/{id}",
            "/v1/rules/big",
            Some(rule),
            ADMIN,
        ),
        route(
            Method::DELETE,
            "/v1/rules/{id}",
            "/v1/rules/big",
            None,
            ADMIN,
        ),
        route(
            Method::DELETE,
            "/v1/rules/{id}/draft",
            "/v1/rules/big/draft",
            None,
            ADMIN,
        ),
        route(
            Method::POST,
            "/v1/rules/{id}/test",
            "/v1/rules/big/test",
            Some(json!({})),
            ADMIN,
        ),
        route(
            Method::POST,
            "/v1/rules/{id}/approve",
            "/v1/rules/big/approve",
            Some(json!({})),
            ADMIN,
        ),
        route(Method::GET, "/v1/rule-sets", "/v1/rule-sets", None, ADMIN),
        route(
            Method::GET,
            "/v1/rule-sets/{version}",
            "/v1/rule-sets/1",
            None,
            ADMIN,
        ),
        route(
            Method::POST,
            "/v1/rule-sets/{version}/rollback",
            "/v1/rule-sets/1/rollback",
            None,
            ADMIN,
        ),
    ]
}

/// Every route and every role, and no key or a bad one: 401 without a valid key, 403 for a
/// role the route does not allow, and neither (nor a 5xx) for the roles it does. The table
/// covers every route of the `OpenAPI` spec, which is open to all, as are `/health` and
/// `/metrics`.
#[tokio::test]
async fn every_route_checks_the_key_and_its_role() {
    let api = TestApi::new(ApiConfig::default()).await;
    let spec = api
        .call(&Method::GET, "/openapi.json", None, Body::empty())
        .await;
    assert_eq!(spec.status, StatusCode::OK);
    let mut documented: Vec<(String, String)> = spec.body["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            let methods = item.as_object().unwrap().keys();
            methods.map(move |method| (method.to_uppercase(), path.clone()))
        })
        .collect();
    documented.sort();
    let mut table: Vec<(String, String)> = routes()
        .iter()
        .map(|r| (r.0.to_string(), r.1.to_owned()))
        .collect();
    table.sort();
    assert_eq!(table, documented, "the role table covers the spec");
    // Operations are on a listener of their own, with or without a key.
    for ops in ["/health", "/ready", "/metrics"] {
        let admin = Some(api.key(Role::Admin));
        for key in [None, admin] {
            let answer = api.call(&Method::GET, ops, key, Body::empty()).await;
            assert_eq!(answer.status, StatusCode::NOT_FOUND, "{ops}");
        }
    }

    // Admin keys that would pass everywhere, but one was revoked and the other has expired.
    let revoked = new_key(&api.pool, Role::Admin, None).await;
    vigil_api::keys::revoke_key(
        &api.pool,
        &trail(),
        "router tests",
        newest_key(&api.pool).await,
    )
    .await
    .unwrap();
    let expired = new_key(&api.pool, Role::Admin, None).await;
    expire(
        &api.pool,
        newest_key(&api.pool).await,
        "now() - interval '1 second'",
    )
    .await;
    for (method, _, path, body, allowed) in routes() {
        let bytes = || {
            body.as_ref()
                .map_or_else(Body::empty, |b| Body::from(b.to_string()))
        };
        let refused = [None, Some("vgl_0000"), Some("not even a key")];
        for key in refused
            .into_iter()
            .chain([Some(&*revoked), Some(&*expired)])
        {
            let answer = api.call(&method, path, key, bytes()).await;
            assert_eq!(answer.status, 401, "{method} {path} with {key:?}");
            assert_eq!(answer.code(), "unauthorized");
        }
        for (role, key) in &api.keys {
            let answer = api.call(&method, path, Some(key), bytes()).await;
            if allowed.contains(role) {
                assert!(
                    ![401, 403].contains(&answer.status.as_u16())
                        && !answer.status.is_server_error(),
                    "{method} {path} as {role:?}: {} {}",
                    answer.status,
                    answer.body
                );
            } else {
                assert_eq!(answer.status, 403, "{method} {path} as {role:?}");
                assert_eq!(answer.code(), "forbidden");
            }
        }
    }
}

/// Every refusal is a JSON error with a code and a message that says what was wrong.
#[tokio::test]
async fn refusals_say_what_was_wrong() {
    let config = ApiConfig {
        max_body_bytes: 1_000,
        max_page_size: 100,
        ..ApiConfig::default()
    };
    let api = TestApi::new(config).await;
    let investigator = api.key(Role::Investigator);
    let admin = api.key(Role::Admin);

    let missing = api
        .send(&Method::GET, "/v1/alerts/tx_none", investigator, None)
        .await;
    assert_eq!(
        (missing.status, missing.code()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    assert!(missing.message().contains("tx_none"), "{}", missing.body);

    let too_many = api
        .send(&Method::GET, "/v1/alerts?limit=101", investigator, None)
        .await;
    assert_eq!(
        too_many.status,
        StatusCode::BAD_REQUEST,
        "{}",
        too_many.body
    );
    assert!(too_many.message().contains("limit"), "{}", too_many.body);

    let bad_status = api
        .send(
            &Method::GET,
            "/v1/alerts?status=sleeping",
            investigator,
            None,
        )
        .await;
    assert_eq!(
        bad_status.status,
        StatusCode::BAD_REQUEST,
        "{}",
        bad_status.body
    );
    assert!(
        bad_status.message().contains("status"),
        "{}",
        bad_status.body
    );

    let unknown_field = json!({"list": "block", "kind": "merchant", "value": "m1", "colour": 1});
    let refused = api
        .send(&Method::POST, "/v1/lists", admin, Some(&unknown_field))
        .await;
    assert_eq!(refused.status.as_u16() / 100, 4, "{}", refused.body);
    assert!(refused.message().contains("colour"), "{}", refused.body);

    let not_json = api
        .call(
            &Method::POST,
            "/v1/lists",
            Some(admin),
            Body::from("{not json"),
        )
        .await;
    assert_eq!(not_json.status.as_u16() / 100, 4, "{}", not_json.body);
    assert!(
        !not_json.code().is_empty(),
        "a JSON error: {}",
        not_json.body
    );

    let large = json!({"list": "block", "kind": "merchant", "value": "m1",
        "reason": "x".repeat(2_000)});
    let too_large = api
        .send(&Method::POST, "/v1/lists", admin, Some(&large))
        .await;
    assert_eq!(
        too_large.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        too_large.body
    );
    assert_eq!(too_large.code(), "too_large");

    let absent = api
        .send(
            &Method::PATCH,
            "/v1/lists/999999",
            admin,
            Some(&json!({"reason": "r"})),
        )
        .await;
    assert_eq!(absent.status, StatusCode::NOT_FOUND, "{}", absent.body);
}

/// A card number written into a list entry's reason, in any grouping, is stored, answered and
/// audited masked; a card number as a card entry's value is tokenized.
#[tokio::test]
async fn card_numbers_in_list_entries_are_never_kept() {
    let api = TestApi::new(ApiConfig::default()).await;
    let admin = api.key(Role::Admin);
    let entry = json!({"list": "block", "kind": "card", "value": "4111-1111-1111-1111",
        "reason": "reported stolen: 4111 1111 1111 1111"});
    let created = api
        .send(&Method::POST, "/v1/lists", admin, Some(&entry))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(
        created.body["reason"],
        "reported stolen: 4111 11** **** 1111"
    );
    let value = created.body["value"].as_str().unwrap();
    assert!(
        value.starts_with("411111-") && value.ends_with("-1111"),
        "{value}"
    );

    let stored: Vec<String> = sqlx::query_scalar(
        "SELECT value || ' ' || coalesce(reason, '') FROM list_entries
         UNION ALL SELECT coalesce(after::text, '') FROM audit_log",
    )
    .fetch_all(&api.pool)
    .await
    .unwrap();
    let digits_only = |s: &str| s.chars().filter(char::is_ascii_digit).collect::<String>();
    assert!(
        stored
            .iter()
            .all(|s| !digits_only(s).contains("4111111111111111")),
        "{stored:?}"
    );
}

/// Every read of a card's data is logged with who read it and how they named the card (its
/// token, never its number); naming cards by their number is limited per key, the token is not.
#[tokio::test]
async fn card_reads_are_logged_and_lookups_by_number_limited() {
    let api = TestApi::new(ApiConfig {
        card_number_lookups_per_minute: 3,
        ..ApiConfig::default()
    })
    .await;
    let investigator = api.key(Role::Investigator);
    let get = async |path: &str| {
        api.call(&Method::GET, path, Some(investigator), Body::empty())
            .await
    };
    let numbers = [
        "4111111111111111",
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
    ];
    for number in numbers {
        let encoded = number.replace(' ', "%20");
        // No decision on the card yet: 404, but read all the same.
        assert_eq!(get(&format!("/v1/cards/{encoded}/risk")).await.status, 404);
    }
    let refused = get("/v1/alerts?card_id=4111111111111111").await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        refused.message().contains("by their token"),
        "{}",
        refused.message()
    );
    assert!(refused.headers.contains_key(header::RETRY_AFTER));
    let token = PanTokenizer::new(ROUTER_PAN_KEY)
        .tokenize("4111111111111111")
        .into_owned();
    let by_token = get(&format!("/v1/alerts?card_id={token}")).await;
    assert_eq!(by_token.status, StatusCode::OK, "{}", by_token.body);

    let reads: Vec<(String, String, String, bool)> =
        sqlx::query_as("SELECT actor, what, card_id, by_number FROM card_reads ORDER BY id")
            .fetch_all(&api.pool)
            .await
            .unwrap();
    let actor = "key 2 (investigator)";
    let expected: Vec<(String, String, String, bool)> = numbers
        .iter()
        .map(|_| (actor.into(), "card.risk".into(), token.clone(), true))
        .chain([(actor.into(), "alerts.by_card".into(), token.clone(), false)])
        .collect();
    assert_eq!(reads, expected, "the refused lookup is not a read");
}

/// Only lookups that find nothing count against an address: a fleet of clients starting at
/// once with one new key (a payment system's workers behind one NAT) is let through.
#[tokio::test]
async fn many_clients_starting_with_one_new_key_are_let_through() {
    let api = TestApi::new(ApiConfig::default()).await;
    let key = api.key(Role::Investigator);
    let calls = (0..60).map(|_| {
        api.call_from(
            [198, 51, 100, 8],
            &Method::GET,
            "/v1/alerts",
            Some(key),
            Body::empty(),
        )
    });
    let answers = futures_util::future::join_all(calls).await;
    let statuses: Vec<u16> = answers.iter().map(|a| a.status.as_u16()).collect();
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
}

/// Guessing keys costs the guesser: lookups of keys never found are limited per address (a
/// burst of 20, then 429), other addresses and known keys from the same address go on, and a
/// flood of unknown keys does not push the known ones out of the cache.
#[tokio::test]
async fn guessing_keys_is_throttled_per_address() {
    let api = TestApi::new(ApiConfig::default()).await;
    let investigator = api.key(Role::Investigator).to_owned();
    let guesser = [198, 51, 100, 7];
    let ok = api
        .call(
            &Method::GET,
            "/v1/alerts",
            Some(&investigator),
            Body::empty(),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    // A burst of 20, then 5 a second: the guesses (a few milliseconds each) soon go past it.
    let mut statuses = vec![];
    for i in 0..200 {
        let guess = format!("vgl_guess{i:0>40}");
        let answer = api
            .call_from(
                guesser,
                &Method::GET,
                "/v1/alerts",
                Some(&guess),
                Body::empty(),
            )
            .await;
        statuses.push(answer.status.as_u16());
        if answer.status == StatusCode::TOO_MANY_REQUESTS {
            break;
        }
    }
    assert_eq!(statuses[..20], [401; 20], "{statuses:?}");
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    let elsewhere = api
        .call(
            &Method::GET,
            "/v1/alerts",
            Some("vgl_another_guess"),
            Body::empty(),
        )
        .await;
    assert_eq!(elsewhere.status, StatusCode::UNAUTHORIZED);
    let known = api
        .call_from(
            guesser,
            &Method::GET,
            "/v1/alerts",
            Some(&investigator),
            Body::empty(),
        )
        .await;
    assert_eq!(known.status, StatusCode::OK, "a known key is not throttled");
}

/// A live feed opened by `key`, its body not read yet.
async fn open_feed(api: &TestApi, key: &str) -> axum::response::Response {
    let request = Request::builder()
        .uri("/v1/alerts/live")
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .extension(ConnectInfo(SocketAddr::from((CLIENT, 40_000))))
        .body(Body::empty())
        .unwrap();
    api.app.clone().oneshot(request).await.unwrap()
}

/// A key holds at most `max_live_feeds_per_key` live feeds (one more: 429, until one closes),
/// and its feeds end once it is revoked.
#[tokio::test]
async fn live_feeds_are_capped_per_key_and_end_with_their_key() {
    let api = TestApi::new(ApiConfig {
        max_live_feeds_per_key: 2,
        live_recheck_secs: 1,
        ..ApiConfig::default()
    })
    .await;
    let key = new_key(&api.pool, Role::Investigator, None).await;
    let first = open_feed(&api, &key).await;
    let second = open_feed(&api, &key).await;
    assert_eq!(
        (first.status(), second.status()),
        (StatusCode::OK, StatusCode::OK)
    );
    assert_eq!(
        open_feed(&api, &key).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    let other = open_feed(&api, api.key(Role::Investigator)).await;
    assert_eq!(
        other.status(),
        StatusCode::OK,
        "another key's feeds are its own"
    );
    drop(second);
    let again = open_feed(&api, &key).await;
    assert_eq!(
        again.status(),
        StatusCode::OK,
        "a closed feed frees its place"
    );

    let id: i64 = sqlx::query_scalar("SELECT max(id) FROM api_keys")
        .fetch_one(&api.pool)
        .await
        .unwrap();
    vigil_api::keys::revoke_key(&api.pool, &trail(), "router tests", id)
        .await
        .unwrap();
    let ended = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        axum::body::to_bytes(first.into_body(), usize::MAX),
    )
    .await;
    assert!(ended.is_ok(), "the revoked key's feed ended");
}

/// The API's documentation works offline: the page loads its script from this server only.
#[tokio::test]
async fn the_docs_page_needs_nothing_from_elsewhere() {
    let api = TestApi::new(ApiConfig::default()).await;
    let get = |path: &'static str| {
        let app = api.app.clone();
        async move {
            let request = Request::builder().uri(path).body(Body::empty()).unwrap();
            let response = app.oneshot(request).await.unwrap();
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            (status, String::from_utf8(bytes.to_vec()).unwrap())
        }
    };
    let (status, page) = get("/docs").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains(r#"src="/docs/redoc.standalone.js""#),
        "{page}"
    );
    assert!(!page.contains("https://"), "{page}");
    let (status, script) = get("/docs/redoc.standalone.js").await;
    assert_eq!(status, StatusCode::OK);
    assert!(script.len() > 100_000 && script.contains("Redoc"));
}

/// A key over its rate gets 429 with `Retry-After` (a burst of twice its rate goes through);
/// another key is not slowed by it.
#[tokio::test]
async fn a_key_over_its_rate_is_told_when_to_retry() {
    let api = TestApi::new(ApiConfig::default()).await;
    let slow = new_key(&api.pool, Role::Investigator, Some(1)).await;
    let mut statuses = vec![];
    for _ in 0..3 {
        let answer = api.send(&Method::GET, "/v1/alerts", &slow, None).await;
        statuses.push(answer.status.as_u16());
        if answer.status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(answer.code(), "rate_limited");
            assert!(answer.headers.contains_key(header::RETRY_AFTER));
        }
    }
    assert_eq!(
        statuses,
        [200, 200, 429],
        "a burst of twice the rate, then refused"
    );
    let other = api
        .send(
            &Method::GET,
            "/v1/alerts",
            api.key(Role::Investigator),
            None,
        )
        .await;
    assert_eq!(other.status, StatusCode::OK);
}

/// Whoever can write to the database cannot rewrite the keyed chain: a record changed and the
/// chain recomputed without the key (as SHA-256, or with a key of their own) is found, and an
/// unkeyed record may only come before the keyed ones.
#[tokio::test]
async fn the_audit_chain_cannot_be_recomputed_without_its_key() {
    let api = TestApi::new(ApiConfig::default()).await;
    let verify = async || trail().verify(&api.pool, &[]).await.unwrap();
    // One record per key of the test API.
    let records = i64::try_from(Role::ALL.len()).unwrap();
    assert_eq!(
        verify().await,
        Verdict::Intact {
            records,
            unkeyed: 0
        }
    );

    // The superuser rewrites record 2 and recomputes the chain from there with a key they chose.
    let mallory = Trail::new(b"a key the attacker chose, 32 bytes or more");
    execute(
        &api.pool,
        "ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only",
    )
    .await;
    let rewritten: Vec<(i64, String, String, String)> = sqlx::query_as(
        "SELECT seq, actor, action, target FROM audit_log WHERE seq >= 2 ORDER BY seq",
    )
    .fetch_all(&api.pool)
    .await
    .unwrap();
    execute(&api.pool, "DELETE FROM audit_log WHERE seq >= 2").await;
    let mut tx = api.pool.begin().await.unwrap();
    for (_, actor, action, target) in &rewritten {
        let change = vigil_api::audit::Change {
            actor: if actor == "router tests" {
                "mallory"
            } else {
                actor
            },
            action,
            target,
            before: None,
            after: None,
        };
        mallory.append(&mut tx, change).await.unwrap();
    }
    tx.commit().await.unwrap();
    let Verdict::Broken { seq, reason } = verify().await else {
        panic!("a chain recomputed with another key verifies");
    };
    assert_eq!(seq, 2);
    assert!(reason.contains("do not match its hash"), "{reason}");

    // Passed off as a record from before the chain was keyed (plain SHA-256): refused, as keyed
    // records come before it.
    execute(
        &api.pool,
        "UPDATE audit_log SET keyed = false WHERE seq = 3",
    )
    .await;
    let Verdict::Broken { seq, reason } = verify().await else {
        panic!("an unkeyed record after keyed ones verifies");
    };
    assert_eq!(seq, 2, "record 2 is still the first that does not hold");
    assert!(reason.contains("do not match"), "{reason}");
    execute(&api.pool, "DELETE FROM audit_log WHERE seq = 2").await;
    execute(&api.pool, "UPDATE audit_log SET prev_hash = (SELECT hash FROM audit_log WHERE seq = 1), seq = 2 WHERE seq = 3").await;
    let Verdict::Broken { seq, reason } = verify().await else {
        panic!("an unkeyed record after keyed ones verifies");
    };
    assert_eq!(seq, 2);
    assert!(
        reason.contains("not keyed, but records before it are"),
        "{reason}"
    );
}

async fn execute(pool: &PgPool, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(pool)
        .await
        .unwrap();
}

/// The newest key's id.
async fn newest_key(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT max(id) FROM api_keys")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Sets key `id` to expire at the SQL time `at`.
async fn expire(pool: &PgPool, id: i64, at: &str) {
    execute(
        pool,
        &format!("UPDATE api_keys SET expires_at = {at} WHERE id = {id}"),
    )
    .await;
}

/// A key stops working when it expires, though its lookup is cached; one created with a
/// lifetime says when.
#[tokio::test]
async fn a_key_stops_at_its_expiry_even_when_cached() {
    let api = TestApi::new(ApiConfig::default()).await;
    let admin = api.key(Role::Admin);
    let created = api
        .send(
            &Method::POST,
            "/v1/keys",
            admin,
            Some(&json!({"name": "temp", "role": "investigator", "expires_in_days": 30})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let expires_at = created.body["expires_at"].as_str().unwrap();
    let expires_at: chrono::DateTime<chrono::Utc> = expires_at.parse().unwrap();
    let days = (expires_at - chrono::Utc::now()).num_days();
    assert!((29..=30).contains(&days), "{expires_at}");
    let too_long = api
        .send(
            &Method::POST,
            "/v1/keys",
            admin,
            Some(&json!({"name": "forever", "role": "investigator", "expires_in_days": 100_000})),
        )
        .await;
    assert_eq!(
        too_long.status,
        StatusCode::BAD_REQUEST,
        "{}",
        too_long.body
    );

    let key = created.body["secret"].as_str().unwrap();
    let id = created.body["id"].as_i64().unwrap();
    let alerts = async || {
        api.call(&Method::GET, "/v1/alerts", Some(key), Body::empty())
            .await
            .status
    };
    expire(&api.pool, id, "now() + interval '3 seconds'").await;
    // Looked up, and cached for 5 s.
    assert_eq!(alerts().await, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    assert_eq!(
        alerts().await,
        StatusCode::UNAUTHORIZED,
        "expired while cached"
    );
}
