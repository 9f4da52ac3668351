//! What the engine remembers per card, customer and merchant.

use vigil_models::features::{CARD_HORIZONS, CUSTOMER_HORIZONS, Horizon, MERCHANT_HORIZONS};

use super::event::Event;
use super::recent::Recent;
use super::window::Windows;

/// The window over which merchant fraud labels are counted.
pub const MERCHANT_FRAUD_HORIZONS: [Horizon; 1] = [CARD_HORIZONS[4]];

/// A card: its spending windows and what it was recently seen with.
#[derive(Debug, Clone, Default)]
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
    pub fn apply(&mut self, e: &Event) {
        let t = e.seconds();
        self.windows.add(&CARD_HORIZONS, t, e.amount_minor as f32);
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
#[derive(Debug, Clone, Default)]
pub struct CustomerState {
    pub windows: Windows<3>,
}

impl CustomerState {
    pub fn apply(&mut self, e: &Event) {
        self.windows.add(&CUSTOMER_HORIZONS, e.seconds(), e.amount_minor as f32);
    }
}

/// A merchant: its sales windows, and the frauds confirmed at it by label time.
#[derive(Debug, Clone, Default)]
pub struct MerchantState {
    pub windows: Windows<5>,
    pub frauds: Windows<1>,
}

impl MerchantState {
    pub fn apply(&mut self, e: &Event) {
        self.windows.add(&MERCHANT_HORIZONS, e.seconds(), e.amount_minor as f32);
    }

    /// Counts a fraud confirmed at `labelled_at` (seconds): it is known from then on.
    pub fn confirm_fraud(&mut self, labelled_at: i64, amount_minor: f32) {
        self.frauds.add(&MERCHANT_FRAUD_HORIZONS, labelled_at, amount_minor);
    }
}
