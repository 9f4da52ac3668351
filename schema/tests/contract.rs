//! The JSON Schema files in `schema/json/` and the Rust types are the same contract: every case
//! below must be accepted by both or refused by both, and both list the same fields.

use serde_json::{Value, json};
use vigil_schema::{Label, Transaction, from_json};

fn schema(name: &str) -> jsonschema::Validator {
    let path = format!("{}/json/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    jsonschema::options()
        .should_validate_formats(true)
        .build(&serde_json::from_str(&text).unwrap())
        .unwrap()
}

fn full_transaction() -> Value {
    json!({
        "transaction_id": "t-1",
        "occurred_at": "2026-03-01T12:00:00+01:00",
        "card_id": "tok_abc",
        "customer_id": "cust_1",
        "merchant_id": "m_9",
        "amount_minor": 1250,
        "currency": "EUR",
        "country": "DE",
        "mcc": "5411",
        "channel": "pos",
        "device_id": "dev-1",
        "ip": "203.0.113.7",
        "lat": 52.52,
        "lon": 13.40
    })
}

fn full_label() -> Value {
    json!({
        "transaction_id": "t-1",
        "is_fraud": true,
        "labelled_at": "2026-03-20T09:00:00Z",
        "source": "chargeback",
        "card_id": "tok_abc"
    })
}

fn with(mut base: Value, field: &str, value: Value) -> Value {
    base[field] = value;
    base
}

fn without(mut base: Value, field: &str) -> Value {
    base.as_object_mut().unwrap().remove(field);
    base
}

type Parse = fn(&str) -> vigil_schema::Result<()>;

fn parse_transaction(text: &str) -> vigil_schema::Result<()> {
    from_json::<Transaction>(text).map(drop)
}

fn parse_label(text: &str) -> vigil_schema::Result<()> {
    from_json::<Label>(text).map(drop)
}

/// Asserts both sides agree on `doc`, and returns whether it is valid.
fn agree(validator: &jsonschema::Validator, doc: &Value, parse: Parse) -> bool {
    let text = doc.to_string();
    let rust = parse(&text);
    let json_schema = validator.is_valid(doc);
    assert_eq!(
        rust.is_ok(),
        json_schema,
        "schema and types disagree on {text}: rust says {rust:?}"
    );
    json_schema
}

#[test]
fn transaction_cases_agree() {
    let v = schema("transaction.v1.json");
    let base = full_transaction();
    assert!(agree(&v, &base, parse_transaction));
    let cases: Vec<(&str, Value, bool)> = vec![
        ("transaction_id", json!(""), false),
        ("transaction_id", json!("x".repeat(128)), true),
        ("transaction_id", json!("x".repeat(129)), false),
        ("transaction_id", json!("tab\there"), false),
        ("transaction_id", json!(7), false),
        ("occurred_at", json!("2026-03-01T12:00:00Z"), true),
        ("occurred_at", json!("2026-03-01T12:00:00.123-05:00"), true),
        ("occurred_at", json!("2026-03-01 12:00"), false),
        ("occurred_at", json!("1999-03-01T12:00:00Z"), false),
        ("occurred_at", json!(1_700_000_000), false),
        ("customer_id", Value::Null, true),
        ("customer_id", json!(""), false),
        ("amount_minor", json!(0), true),
        ("amount_minor", json!(-1), false),
        ("amount_minor", json!(9_223_372_036_854_775_807_u64), true),
        ("amount_minor", json!(9_223_372_036_854_775_808_u64), false),
        ("amount_minor", json!(u64::MAX), false),
        ("amount_minor", json!(12.5), false),
        ("amount_minor", json!("100"), false),
        ("currency", json!("usd"), false),
        ("currency", json!("USDT"), false),
        ("country", json!("FR"), true),
        ("country", json!("FRA"), false),
        ("country", Value::Null, true),
        ("mcc", json!("0742"), true),
        ("mcc", json!("742"), false),
        ("mcc", json!(5411), false),
        ("channel", json!("ecom"), true),
        ("channel", json!("atm"), true),
        ("channel", json!("web"), false),
        ("ip", json!("2001:db8::1"), true),
        ("ip", json!("999.1.1.1"), false),
        ("lat", json!(90.0), true),
        ("lat", json!(90.5), false),
        ("lon", json!(-180.0), true),
        ("lon", json!(-181.0), false),
        ("device_id", json!("d".repeat(129)), false),
        ("unknown_field", json!(1), false),
    ];
    for (field, value, expected) in cases {
        let doc = with(base.clone(), field, value.clone());
        assert_eq!(
            agree(&v, &doc, parse_transaction),
            expected,
            "{field} = {value}"
        );
    }
    assert!(
        !agree(&v, &without(base.clone(), "lon"), parse_transaction),
        "lat without lon"
    );
}

#[test]
fn label_cases_agree() {
    let v = schema("label.v1.json");
    let base = full_label();
    assert!(agree(&v, &base, parse_label));
    let cases: Vec<(&str, Value, bool)> = vec![
        ("is_fraud", json!(false), true),
        ("is_fraud", json!("yes"), false),
        ("source", json!("investigator"), true),
        ("source", json!("import"), true),
        ("source", json!("bank"), false),
        ("labelled_at", json!("not a time"), false),
        ("card_id", Value::Null, true),
        ("extra", json!(true), false),
    ];
    for (field, value, expected) in cases {
        let doc = with(base.clone(), field, value.clone());
        assert_eq!(agree(&v, &doc, parse_label), expected, "{field} = {value}");
    }
}

/// The fields and which of them are required are the same on both sides.
fn same_fields(file: &str, full: &Value, parse: Parse) {
    let text =
        std::fs::read_to_string(format!("{}/json/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    let mut properties: Vec<&String> = schema["properties"].as_object().unwrap().keys().collect();
    let mut fields: Vec<&String> = full.as_object().unwrap().keys().collect();
    properties.sort();
    fields.sort();
    assert_eq!(
        properties, fields,
        "{file} lists other fields than the type"
    );

    let mut required: Vec<&str> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    required.sort_unstable();
    // A field is required by the type when leaving it out alone fails with "missing field".
    let mut rust_required: Vec<&str> = fields
        .iter()
        .map(|f| f.as_str())
        .filter(|f| {
            let doc = without(full.clone(), f).to_string();
            parse(&doc).is_err_and(|e| e.message().contains("missing field"))
        })
        .collect();
    rust_required.sort_unstable();
    assert_eq!(
        required, rust_required,
        "{file} requires other fields than the type"
    );
}

#[test]
fn field_lists_match_the_types() {
    let keys = |v: Value| {
        v.as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<std::collections::BTreeSet<String>>()
    };
    let listed = |f: &[&str]| {
        f.iter()
            .map(|s| (*s).to_owned())
            .collect::<std::collections::BTreeSet<String>>()
    };
    assert_eq!(keys(full_transaction()), listed(&Transaction::FIELDS));
    assert_eq!(keys(full_label()), listed(&Label::FIELDS));
}

#[test]
fn both_sides_have_the_same_fields() {
    same_fields(
        "transaction.v1.json",
        &full_transaction(),
        parse_transaction,
    );
    same_fields("label.v1.json", &full_label(), parse_label);
}

#[test]
fn errors_name_the_field() {
    let cases = [
        (
            with(full_transaction(), "amount_minor", json!("12")),
            "amount_minor",
        ),
        (
            with(full_transaction(), "amount_minor", json!(u64::MAX)),
            "amount_minor",
        ),
        (
            with(full_transaction(), "currency", json!("usd")),
            "currency",
        ),
        (
            with(full_transaction(), "occurred_at", json!("yesterday")),
            "occurred_at",
        ),
        (with(full_transaction(), "lat", json!(123.0)), "lat"),
        (without(full_transaction(), "lat"), "lat"),
        (with(full_transaction(), "card_id", json!("")), "card_id"),
    ];
    for (doc, field) in cases {
        let err = from_json::<Transaction>(&doc.to_string()).unwrap_err();
        assert_eq!(err.field(), Some(field), "{err}");
        assert!(
            err.to_string().starts_with(&format!("field `{field}`")),
            "{err}"
        );
    }
    // Missing and unknown fields are reported at the top level, with the name in the message.
    let err = from_json::<Transaction>(&without(full_transaction(), "merchant_id").to_string())
        .unwrap_err();
    assert!(err.to_string().contains("merchant_id"), "{err}");
    let err = from_json::<Label>("{\"transaction_id\": \"t\"").unwrap_err();
    assert!(!err.to_string().is_empty());
}

#[test]
fn round_trips_through_json() {
    let text = full_transaction().to_string();
    let tx: Transaction = from_json(&text).unwrap();
    let written = serde_json::to_string(&tx).unwrap();
    let again: Transaction = from_json(&written).unwrap();
    assert_eq!(tx, again);
    assert_eq!(tx.geo().unwrap().lat, 52.52);
}
