//! The feature vector: one fixed layout shared by the engine that fills it, the rules that read
//! it by name, and every model that learns from it.
//!
//! A value of `NaN` means "missing" (a transaction without a customer, a card's first
//! transaction, no coordinates). Rules treat a comparison with a missing value as false; models
//! treat it as neutral.

use std::sync::LazyLock;

/// A sliding-window length, named as it appears in feature names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Horizon {
    pub name: &'static str,
    pub seconds: i64,
}

const fn horizon(name: &'static str, seconds: i64) -> Horizon {
    Horizon { name, seconds }
}

const MINUTE: i64 = 60;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// Windows kept per card and per merchant.
pub const CARD_HORIZONS: [Horizon; 5] = [
    horizon("10m", 10 * MINUTE),
    horizon("1h", HOUR),
    horizon("1d", DAY),
    horizon("7d", 7 * DAY),
    horizon("30d", 30 * DAY),
];
/// Windows kept per customer: fewer, since most customers have one card and the card's short
/// windows already catch bursts; these see spending spread over several cards.
pub const CUSTOMER_HORIZONS: [Horizon; 2] = [horizon("1d", DAY), horizon("30d", 30 * DAY)];
pub const MERCHANT_HORIZONS: [Horizon; 5] = CARD_HORIZONS;
/// Horizons of a merchant's confirmed frauds and of its sales whose outcome is known: a
/// compromised terminal shows within days, a merchant that attracts fraud over a month.
pub const MERCHANT_FRAUD_HORIZONS: [Horizon; 3] =
    [CARD_HORIZONS[2], CARD_HORIZONS[3], CARD_HORIZONS[4]];

/// The statistics of the amount kept for every window, in this order.
pub const WINDOW_STATS: [&str; 5] = ["count", "sum", "mean", "std", "max"];

/// How a model turns a raw feature into an input before standardizing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    /// Heavy-tailed and signed: `sign(x) * ln(1 + |x|)`.
    Log,
    /// Already on a small scale (rates, flags).
    Linear,
}

/// Indices into the feature vector.
pub mod index {
    use super::{
        CARD_HORIZONS, CUSTOMER_HORIZONS, MERCHANT_FRAUD_HORIZONS, MERCHANT_HORIZONS, WINDOW_STATS,
    };

    const STATS: usize = WINDOW_STATS.len();

    /// Amount in minor units.
    pub const AMOUNT: usize = 0;
    /// 1 between 00:00 and 05:59 local time.
    pub const IS_NIGHT: usize = 1;
    /// 1 on Saturday and Sunday, local time.
    pub const IS_WEEKEND: usize = 2;
    /// 1 for card-not-present channels (ecom, moto); missing without a channel.
    pub const IS_CARD_NOT_PRESENT: usize = 3;
    pub const CARD_WINDOWS: usize = 4;
    pub const CUSTOMER_WINDOWS: usize = CARD_WINDOWS + CARD_HORIZONS.len() * STATS;
    pub const MERCHANT_WINDOWS: usize = CUSTOMER_WINDOWS + CUSTOMER_HORIZONS.len() * STATS;
    const CARD_EXTRAS: usize = MERCHANT_WINDOWS + MERCHANT_HORIZONS.len() * STATS;
    pub const CARD_DISTINCT_MERCHANTS_1H: usize = CARD_EXTRAS;
    pub const CARD_DISTINCT_MERCHANTS_1D: usize = CARD_EXTRAS + 1;
    pub const CARD_DISTINCT_MERCHANTS_30D: usize = CARD_EXTRAS + 2;
    pub const CARD_DISTINCT_COUNTRIES_1D: usize = CARD_EXTRAS + 3;
    pub const CARD_DISTINCT_COUNTRIES_30D: usize = CARD_EXTRAS + 4;
    pub const CARD_SECONDS_SINCE_PREVIOUS: usize = CARD_EXTRAS + 5;
    pub const CARD_AMOUNT_RATIO_30D: usize = CARD_EXTRAS + 6;
    pub const CARD_AMOUNT_ZSCORE_30D: usize = CARD_EXTRAS + 7;
    /// Distance from the card's last known position, in km.
    pub const CARD_TRAVEL_KM: usize = CARD_EXTRAS + 8;
    /// Speed needed to cover that distance since then, in km/h.
    pub const CARD_TRAVEL_KMH: usize = CARD_EXTRAS + 9;
    pub const CARD_NEW_COUNTRY: usize = CARD_EXTRAS + 10;
    pub const CARD_NEW_DEVICE: usize = CARD_EXTRAS + 11;
    pub const CARD_NEW_MERCHANT: usize = CARD_EXTRAS + 12;
    /// Frauds confirmed at the merchant (by label time), one per fraud horizon.
    pub const MERCHANT_FRAUD_COUNTS: usize = CARD_EXTRAS + 13;
    /// Those frauds per sale whose outcome became known over the same horizon.
    pub const MERCHANT_FRAUD_RATES: usize = MERCHANT_FRAUD_COUNTS + MERCHANT_FRAUD_HORIZONS.len();
    pub const MERCHANT_FRAUD_COUNT_30D: usize = MERCHANT_FRAUD_COUNTS + 2;
    pub const MERCHANT_FRAUD_RATE_30D: usize = MERCHANT_FRAUD_RATES + 2;
    /// Seconds since the first fraud (by payment time) of the merchant's current run of
    /// confirmed frauds: how long a compromise has lasted; missing without a run.
    pub const MERCHANT_FRAUD_RUN_AGE: usize = MERCHANT_FRAUD_RATES + MERCHANT_FRAUD_HORIZONS.len();
    /// Seconds since the run's latest fraud (by payment time): whether it may be over.
    pub const MERCHANT_FRAUD_RUN_IDLE: usize = MERCHANT_FRAUD_RUN_AGE + 1;
    pub(super) const END: usize = MERCHANT_FRAUD_RUN_IDLE + 1;

    /// The index of statistic `stat` (in [`WINDOW_STATS`] order) of horizon `h` in a window block.
    pub const fn window(block: usize, h: usize, stat: usize) -> usize {
        block + h * STATS + stat
    }
}

/// How many features a vector holds.
pub const FEATURE_COUNT: usize = index::END;

/// One feature's name and how models transform it.
#[derive(Debug, Clone)]
pub struct FeatureSpec {
    pub name: String,
    pub transform: Transform,
}

/// The features in vector order.
pub fn specs() -> &'static [FeatureSpec] {
    static SPECS: LazyLock<Vec<FeatureSpec>> = LazyLock::new(build_specs);
    &SPECS
}

/// Each feature's transform, in vector order.
pub fn transforms() -> &'static [Transform; FEATURE_COUNT] {
    static TRANSFORMS: LazyLock<[Transform; FEATURE_COUNT]> =
        LazyLock::new(|| std::array::from_fn(|i| specs()[i].transform));
    &TRANSFORMS
}

/// The name of feature `i`.
pub fn name(i: usize) -> &'static str {
    &specs()[i].name
}

/// The index of the feature called `name`.
pub fn find(name: &str) -> Option<usize> {
    specs().iter().position(|s| s.name == name)
}

fn build_specs() -> Vec<FeatureSpec> {
    use Transform::{Linear, Log};
    let spec = |name: &str, transform| FeatureSpec {
        name: name.to_owned(),
        transform,
    };
    let mut specs = vec![
        spec("amount", Log),
        spec("is_night", Linear),
        spec("is_weekend", Linear),
        spec("is_card_not_present", Linear),
    ];
    let blocks: [(&str, &[Horizon]); 3] = [
        ("card", &CARD_HORIZONS),
        ("customer", &CUSTOMER_HORIZONS),
        ("merchant", &MERCHANT_HORIZONS),
    ];
    for (entity, horizons) in blocks {
        for h in horizons {
            for stat in WINDOW_STATS {
                specs.push(spec(&format!("{entity}_{stat}_{}", h.name), Log));
            }
        }
    }
    specs.extend([
        spec("card_distinct_merchants_1h", Linear),
        spec("card_distinct_merchants_1d", Linear),
        spec("card_distinct_merchants_30d", Linear),
        spec("card_distinct_countries_1d", Linear),
        spec("card_distinct_countries_30d", Linear),
        spec("card_seconds_since_previous", Log),
        spec("card_amount_ratio_30d", Log),
        spec("card_amount_zscore_30d", Log),
        spec("card_travel_km", Log),
        spec("card_travel_kmh", Log),
        spec("card_new_country", Linear),
        spec("card_new_device", Linear),
        spec("card_new_merchant", Linear),
    ]);
    for h in MERCHANT_FRAUD_HORIZONS {
        specs.push(spec(&format!("merchant_fraud_count_{}", h.name), Log));
    }
    for h in MERCHANT_FRAUD_HORIZONS {
        specs.push(spec(&format!("merchant_fraud_rate_{}", h.name), Linear));
    }
    specs.extend([
        spec("merchant_fraud_run_age", Log),
        spec("merchant_fraud_run_idle", Log),
    ]);
    specs
}

/// The raw feature values the engine computed for one transaction (`NaN` = missing).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FeatureVector(#[serde(with = "serde_big_array::BigArray")] pub [f32; FEATURE_COUNT]);

impl Default for FeatureVector {
    fn default() -> Self {
        Self([f32::NAN; FEATURE_COUNT])
    }
}

impl FeatureVector {
    pub fn get(&self, i: usize) -> Option<f32> {
        let v = self.0[i];
        (!v.is_nan()).then_some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_names_agree() {
        assert_eq!(specs().len(), FEATURE_COUNT);
        let mut names: Vec<&str> = specs().iter().map(|s| s.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), FEATURE_COUNT, "feature names must be unique");
        assert_eq!(name(index::AMOUNT), "amount");
        assert_eq!(
            name(index::window(index::CARD_WINDOWS, 0, 0)),
            "card_count_10m"
        );
        assert_eq!(
            name(index::window(index::CUSTOMER_WINDOWS, 1, 4)),
            "customer_max_30d"
        );
        assert_eq!(
            name(index::window(index::MERCHANT_WINDOWS, 4, 3)),
            "merchant_std_30d"
        );
        assert_eq!(
            name(index::CARD_DISTINCT_MERCHANTS_1H),
            "card_distinct_merchants_1h"
        );
        assert_eq!(
            name(index::MERCHANT_FRAUD_RATE_30D),
            "merchant_fraud_rate_30d"
        );
        assert_eq!(find("card_travel_kmh"), Some(index::CARD_TRAVEL_KMH));
        assert_eq!(
            name(index::MERCHANT_FRAUD_COUNTS),
            "merchant_fraud_count_1d"
        );
        assert_eq!(
            name(index::MERCHANT_FRAUD_COUNT_30D),
            "merchant_fraud_count_30d"
        );
        assert_eq!(name(index::MERCHANT_FRAUD_RATES), "merchant_fraud_rate_1d");
    }
}
