use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::{
    CardId, Channel, Country, Currency, CustomerId, DeviceId, Error, Mcc, MerchantId, Result,
    Timestamp, TransactionId, Validate,
};

/// The largest amount taken, in minor units: what Postgres's `bigint` holds.
pub const MAX_AMOUNT_MINOR: u64 = i64::MAX as u64;

/// A payment, as posted by a payment system (v1 contract).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transaction<'a> {
    /// Unique; the idempotency key everywhere.
    #[serde(borrow)]
    pub transaction_id: TransactionId<'a>,
    /// Event time: every window uses it, never the wall clock.
    pub occurred_at: Timestamp,
    /// Card token or fingerprint.
    #[serde(borrow)]
    pub card_id: CardId<'a>,
    /// Account holder.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<CustomerId<'a>>,
    /// Merchant or terminal.
    #[serde(borrow)]
    pub merchant_id: MerchantId<'a>,
    /// Amount in minor units (cents), at most [`MAX_AMOUNT_MINOR`].
    pub amount_minor: u64,
    pub currency: Currency,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<Country>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcc: Option<Mcc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<Channel>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<DeviceId<'a>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    /// Latitude in degrees; given together with `lon`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lat: Option<f64>,
    /// Longitude in degrees; given together with `lat`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lon: Option<f64>,
}

/// Where a transaction happened.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Geo {
    pub lat: f64,
    pub lon: f64,
}

impl Transaction<'_> {
    /// The field names, in contract order (also the CSV columns).
    pub const FIELDS: [&'static str; 14] = [
        "transaction_id",
        "occurred_at",
        "card_id",
        "customer_id",
        "merchant_id",
        "amount_minor",
        "currency",
        "country",
        "mcc",
        "channel",
        "device_id",
        "ip",
        "lat",
        "lon",
    ];

    /// The position, when both coordinates are given.
    pub fn geo(&self) -> Option<Geo> {
        Some(Geo {
            lat: self.lat?,
            lon: self.lon?,
        })
    }

    pub fn into_owned(self) -> Transaction<'static> {
        Transaction {
            transaction_id: self.transaction_id.into_owned(),
            card_id: self.card_id.into_owned(),
            customer_id: self.customer_id.map(CustomerId::into_owned),
            merchant_id: self.merchant_id.into_owned(),
            device_id: self.device_id.map(DeviceId::into_owned),
            occurred_at: self.occurred_at,
            amount_minor: self.amount_minor,
            currency: self.currency,
            country: self.country,
            mcc: self.mcc,
            channel: self.channel,
            ip: self.ip,
            lat: self.lat,
            lon: self.lon,
        }
    }
}

impl Validate for Transaction<'_> {
    fn validate(&self) -> Result<()> {
        if self.amount_minor > MAX_AMOUNT_MINOR {
            return Err(Error::new(
                "amount_minor",
                format!("must be at most {MAX_AMOUNT_MINOR}"),
            ));
        }
        check_coordinate("lat", self.lat, 90.0)?;
        check_coordinate("lon", self.lon, 180.0)?;
        match (self.lat, self.lon) {
            (Some(_), None) => Err(Error::new("lon", "must be given with lat")),
            (None, Some(_)) => Err(Error::new("lat", "must be given with lon")),
            _ => Ok(()),
        }
    }
}

fn check_coordinate(field: &str, value: Option<f64>, limit: f64) -> Result<()> {
    match value {
        Some(v) if !(-limit..=limit).contains(&v) => Err(Error::new(
            field,
            format!("must be between -{limit} and {limit} degrees"),
        )),
        _ => Ok(()),
    }
}
