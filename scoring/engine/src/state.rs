//! What the engine remembers per card, customer and merchant.

use serde::{Deserialize, Serialize};
use vigil_models::features::{
    CARD_HORIZONS, CUSTOMER_HORIZONS, MERCHANT_FRAUD_HORIZONS, MERCHANT_HORIZONS,
};

use super::event::Event;
use super::recent::Recent;
use super::window::{Windows, bucket_indices};

/// An event time's bucket index in every horizon the state keeps, computed once per event.
#[derive(Debug, Clone, Copy)]
pub struct At {
    pub seconds: i64,
    pub card: [u32; 5],
    pub customer: [u32; 2],
    pub merchant: [u32; 5],
    pub fraud: [u32; 3],
}

impl At {
    pub fn new(seconds: i64) -> Self {
        Self {
            seconds,
            card: bucket_indices(&CARD_HORIZONS, seconds),
            customer: bucket_indices(&CUSTOMER_HORIZONS, seconds),
            merchant: bucket_indices(&MERCHANT_HORIZONS, seconds),
            fraud: bucket_indices(&MERCHANT_FRAUD_HORIZONS, seconds),
        }
    }
}

/// A card: its spending windows and what it was recently seen with.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CardState {
    pub windows: Windows<5>,
    pub merchants: Recent<8>,
    pub countries: Recent<4>,
    pub devices: Recent<4>,
    /// The last known position (lat, lon as f32) and when it was seen; `geo_at == 0` when none.
    pub geo: (f32, f32),
    pub geo_at: i64,
}

impl CardState {
    pub fn apply(&mut self, e: &Event, at: &At) {
        let t = at.seconds;
        self.windows.add(t, &at.card, e.amount_minor as f32);
        self.merchants.touch(e.merchant as u32, t);
        if let Some(country) = e.country {
            self.countries.touch(u32::from(country.code()), t);
        }
        if let Some(device) = e.device {
            self.devices.touch(device as u32, t);
        }
        if let Some((lat, lon)) = e.geo
            && t >= self.geo_at
        {
            self.geo = (lat as f32, lon as f32);
            self.geo_at = t;
        }
    }
}

/// A customer (account holder): windows over all of their cards.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CustomerState {
    pub windows: Windows<2>,
}

impl CustomerState {
    /// Counts a payment at `at` (seconds).
    pub fn add_payment(&mut self, at: i64, amount_minor: f32) {
        self.windows
            .add(at, &bucket_indices(&CUSTOMER_HORIZONS, at), amount_minor);
    }
}

/// A merchant: its sales windows, the frauds confirmed at it by label time, and its sales by
/// the time their outcome is taken as known (`maturity` after them): the frauds' share of
/// those is its recent fraud rate, as far as labels tell it, never looking at a sale whose
/// fraud could not be known yet.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MerchantState {
    pub windows: Windows<5>,
    pub frauds: Windows<3>,
    pub matured: Windows<3>,
    pub fraud_run: Option<FraudRun>,
}

/// Frauds at most this far apart (by payment time) are one run: a compromised terminal's
/// frauds come days apart at most, and a lone fraud weeks before is another story.
pub const FRAUD_RUN_GAP_SECONDS: i64 = 7 * 86_400;

/// A merchant's latest run of confirmed frauds, by payment time: the window of a compromise
/// as far as labels have told it. Its age says how long the compromise has lasted; the time
/// since its latest fraud, whether it may be over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FraudRun {
    pub first_paid_at: i64,
    pub last_paid_at: i64,
}

impl FraudRun {
    /// The run after a fraud paid at `paid_at` is confirmed: the same run grown, a new run
    /// after a gap, or unchanged by a fraud of an earlier run told late.
    fn with(run: Option<Self>, paid_at: i64) -> Self {
        let new = Self {
            first_paid_at: paid_at,
            last_paid_at: paid_at,
        };
        let Some(run) = run else { return new };
        if paid_at > run.last_paid_at.saturating_add(FRAUD_RUN_GAP_SECONDS) {
            return new;
        }
        if paid_at < run.first_paid_at.saturating_sub(FRAUD_RUN_GAP_SECONDS) {
            return run;
        }
        Self {
            first_paid_at: run.first_paid_at.min(paid_at),
            last_paid_at: run.last_paid_at.max(paid_at),
        }
    }
}

impl MerchantState {
    /// Counts a sale at `at` (seconds).
    pub fn add_sale(&mut self, at: i64, amount_minor: f32) {
        self.windows
            .add(at, &bucket_indices(&MERCHANT_HORIZONS, at), amount_minor);
    }

    /// Counts a fraud paid at `paid_at` and confirmed at `labelled_at` (seconds): it is known
    /// from then on.
    pub fn confirm_fraud(&mut self, labelled_at: i64, paid_at: i64, amount_minor: f32) {
        self.fraud_run = Some(FraudRun::with(self.fraud_run, paid_at));
        self.frauds.add(
            labelled_at,
            &bucket_indices(&MERCHANT_FRAUD_HORIZONS, labelled_at),
            amount_minor,
        );
    }

    /// Counts a sale whose outcome is taken as known from `matured_at` (seconds) on.
    pub fn mature_sale(&mut self, matured_at: i64, amount_minor: f32) {
        self.matured.add(
            matured_at,
            &bucket_indices(&MERCHANT_FRAUD_HORIZONS, matured_at),
            amount_minor,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fraud_run_grows_within_its_gap_and_restarts_after_one() {
        const DAY: i64 = 86_400;
        let run = |first, last| FraudRun {
            first_paid_at: first,
            last_paid_at: last,
        };
        let first = FraudRun::with(None, 10 * DAY);
        assert_eq!(first, run(10 * DAY, 10 * DAY));
        assert_eq!(
            FraudRun::with(Some(first), 16 * DAY),
            run(10 * DAY, 16 * DAY)
        );
        assert_eq!(FraudRun::with(Some(first), 4 * DAY), run(4 * DAY, 10 * DAY));
        assert_eq!(
            FraudRun::with(Some(first), 18 * DAY),
            run(18 * DAY, 18 * DAY)
        );
        assert_eq!(
            FraudRun::with(Some(first), 2 * DAY),
            first,
            "an earlier run's, told late"
        );
    }

    /// docs/ARCHITECTURE.md and BENCHMARKS.md quote these sizes, and a card with its customer
    /// must stay well inside the 1 KiB per card budget with the indexes around them.
    #[test]
    fn state_sizes_are_as_documented() {
        let sizes = (
            size_of::<CardState>(),
            size_of::<CustomerState>(),
            size_of::<MerchantState>(),
        );
        assert_eq!(
            sizes,
            (656, 208, 1160),
            "update the sizes in docs/ARCHITECTURE.md and BENCHMARKS.md"
        );
    }
}
