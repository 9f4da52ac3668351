//! Computing the feature vector of one transaction from the state of its card, customer and
//! merchant, before the transaction itself is added (so the card's "history" excludes it).

use vigil_models::FeatureVector;
use vigil_models::features::{MERCHANT_FRAUD_HORIZONS, index};
use vigil_models::math::{asin, sin};
use vigil_schema::Channel;

use super::event::Event;
use super::state::{At, CardState, CustomerState, MerchantState};
use super::window::Windows;

const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;
const MISSING: f32 = f32::NAN;
/// The z-score divides by at least one major unit, so that a card that always spends the same
/// amount does not make every other amount infinitely unusual.
const MIN_STD_MINOR: f64 = 100.0;
/// A shorter gap than this between two positions is taken as this, for travel speed.
const MIN_TRAVEL_SECONDS: f64 = 60.0;
const EARTH_RADIUS_KM: f64 = 6_371.0;

/// The state a transaction is scored against.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub card: &'a CardState,
    pub customer: Option<&'a CustomerState>,
    pub merchant: &'a MerchantState,
}

pub fn compute(e: &Event, ctx: Context<'_>, at: &At, out: &mut FeatureVector) {
    let x = &mut out.0;
    let amount = e.amount_minor as f64;
    x[index::AMOUNT] = amount as f32;
    x[index::IS_NIGHT] = flag(e.occurred_at.local_hour() < 6);
    x[index::IS_WEEKEND] = flag(e.occurred_at.local_weekday() >= 5);
    x[index::IS_CARD_NOT_PRESENT] = e.channel.map_or(MISSING, |c| {
        flag(matches!(c, Channel::Ecom | Channel::Moto))
    });

    windows(&ctx.card.windows, &at.card, &mut x[index::CARD_WINDOWS..]);
    match ctx.customer {
        Some(customer) => windows(
            &customer.windows,
            &at.customer,
            &mut x[index::CUSTOMER_WINDOWS..],
        ),
        None => x[index::CUSTOMER_WINDOWS..index::MERCHANT_WINDOWS].fill(MISSING),
    }
    windows(
        &ctx.merchant.windows,
        &at.merchant,
        &mut x[index::MERCHANT_WINDOWS..],
    );
    card_history(e, ctx.card, x);

    merchant_frauds(ctx.merchant, at, x);
}

/// Per fraud horizon: the frauds confirmed at the merchant, and their share of its sales
/// whose outcome became known over the same horizon; then its run of frauds.
fn merchant_frauds(merchant: &MerchantState, at: &At, x: &mut [f32]) {
    for h in 0..MERCHANT_FRAUD_HORIZONS.len() {
        let frauds = merchant.frauds.stats(h, at.fraud[h]).count as f32;
        let matured = merchant.matured.stats(h, at.fraud[h]).count as f32;
        x[index::MERCHANT_FRAUD_COUNTS + h] = frauds;
        x[index::MERCHANT_FRAUD_RATES + h] = frauds / matured.max(1.0);
    }
    let since = |paid_at: i64| (at.seconds - paid_at).max(0) as f32;
    let (age, idle) = merchant.fraud_run.map_or((MISSING, MISSING), |run| {
        (since(run.first_paid_at), since(run.last_paid_at))
    });
    x[index::MERCHANT_FRAUD_RUN_AGE] = age;
    x[index::MERCHANT_FRAUD_RUN_IDLE] = idle;
}

fn flag(b: bool) -> f32 {
    if b { 1.0 } else { 0.0 }
}

/// count, sum, mean, std, max for each horizon, in layout order.
fn windows<const H: usize>(w: &Windows<H>, at: &[u32; H], out: &mut [f32]) {
    for h in 0..H {
        let s = w.stats(h, at[h]);
        let block = &mut out[h * 5..h * 5 + 5];
        block[0] = s.count as f32;
        block[1] = s.sum as f32;
        let (mean, std) = s.mean_and_std();
        block[2] = mean as f32;
        block[3] = std as f32;
        block[4] = s.max;
    }
}

/// Features comparing this transaction with the card's past; missing for a card never seen.
fn card_history(e: &Event, card: &CardState, x: &mut [f32]) {
    const HISTORY: [usize; 13] = [
        index::CARD_DISTINCT_MERCHANTS_1H,
        index::CARD_DISTINCT_MERCHANTS_1D,
        index::CARD_DISTINCT_MERCHANTS_30D,
        index::CARD_DISTINCT_COUNTRIES_1D,
        index::CARD_DISTINCT_COUNTRIES_30D,
        index::CARD_SECONDS_SINCE_PREVIOUS,
        index::CARD_AMOUNT_RATIO_30D,
        index::CARD_AMOUNT_ZSCORE_30D,
        index::CARD_TRAVEL_KM,
        index::CARD_TRAVEL_KMH,
        index::CARD_NEW_COUNTRY,
        index::CARD_NEW_DEVICE,
        index::CARD_NEW_MERCHANT,
    ];
    let t = e.seconds();
    let Some(previous) = card.windows.last_time() else {
        for i in HISTORY {
            x[i] = MISSING;
        }
        return;
    };
    // A late transaction is compared with the card as it stands now.
    let now = previous.max(t);
    x[index::CARD_DISTINCT_MERCHANTS_1H] = card.merchants.count_since(now - HOUR) as f32;
    x[index::CARD_DISTINCT_MERCHANTS_1D] = card.merchants.count_since(now - DAY) as f32;
    x[index::CARD_DISTINCT_MERCHANTS_30D] = card.merchants.count_since(now - 30 * DAY) as f32;
    x[index::CARD_DISTINCT_COUNTRIES_1D] = card.countries.count_since(now - DAY) as f32;
    x[index::CARD_DISTINCT_COUNTRIES_30D] = card.countries.count_since(now - 30 * DAY) as f32;
    x[index::CARD_SECONDS_SINCE_PREVIOUS] = (t - previous).max(0) as f32;

    let count = x[index::window(index::CARD_WINDOWS, 4, 0)];
    let mean = f64::from(x[index::window(index::CARD_WINDOWS, 4, 2)]);
    let std = f64::from(x[index::window(index::CARD_WINDOWS, 4, 3)]);
    let amount = e.amount_minor as f64;
    x[index::CARD_AMOUNT_RATIO_30D] = if count >= 1.0 {
        (amount / mean.max(1.0)) as f32
    } else {
        MISSING
    };
    x[index::CARD_AMOUNT_ZSCORE_30D] = if count >= 2.0 {
        ((amount - mean) / std.max(MIN_STD_MINOR)) as f32
    } else {
        MISSING
    };
    (x[index::CARD_TRAVEL_KM], x[index::CARD_TRAVEL_KMH]) = travel(e, card);

    let month_ago = now - 30 * DAY;
    x[index::CARD_NEW_COUNTRY] = e.country.map_or(MISSING, |c| {
        flag(
            !card
                .countries
                .contains_since(u32::from(c.code()), month_ago),
        )
    });
    x[index::CARD_NEW_DEVICE] = e.device.map_or(MISSING, |d| {
        flag(!card.devices.contains_since(d as u32, month_ago))
    });
    x[index::CARD_NEW_MERCHANT] =
        flag(!card.merchants.contains_since(e.merchant as u32, month_ago));
}

/// Distance from the card's last known position to this one, in km, and the speed needed to
/// cover it since, in km/h.
fn travel(e: &Event, card: &CardState) -> (f32, f32) {
    let Some((lat, lon)) = e.geo else {
        return (MISSING, MISSING);
    };
    if card.geo_at == 0 {
        return (MISSING, MISSING);
    }
    let km = haversine_km((f64::from(card.geo.0), f64::from(card.geo.1)), (lat, lon));
    let hours = ((e.seconds() - card.geo_at).abs() as f64).max(MIN_TRAVEL_SECONDS) / 3_600.0;
    (km as f32, (km / hours) as f32)
}

/// Great-circle distance in km between two (lat, lon) points in degrees, with our own sine and
/// arcsine: the platform's differ in the last bits from one libm to the next.
fn haversine_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    // Every angle given to `sin` within [0, pi/2] in size: latitudes are within 90 degrees, a
    // longitude difference over 180 degrees is 360 less it for sin^2, and cos(lat) is
    // sin(90 - |lat|).
    let half_dlat = (b.0 - a.0).to_radians() / 2.0;
    let dlon = (b.1 - a.1).abs();
    let half_dlon = dlon.min(360.0 - dlon).to_radians() / 2.0;
    let cos_lat = |lat: f64| sin((90.0 - lat.abs()).to_radians());
    let h = sin(half_dlat).powi(2) + cos_lat(a.0) * cos_lat(b.0) * sin(half_dlon).powi(2);
    2.0 * EARTH_RADIUS_KM * asin(h.sqrt().min(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haversine_is_right_on_known_distances() {
        // Paris to London is about 344 km.
        let d = haversine_km((48.8566, 2.3522), (51.5074, -0.1278));
        assert!((d - 344.0).abs() < 3.0, "{d}");
        assert_eq!(haversine_km((10.0, 10.0), (10.0, 10.0)), 0.0);
        // Across the antimeridian, and from pole to pole.
        let d = haversine_km((0.0, 179.5), (0.0, -179.5));
        assert!((d - 111.19).abs() < 0.01, "{d}");
        let d = haversine_km((90.0, 0.0), (-90.0, 0.0));
        assert!(
            (d - std::f64::consts::PI * EARTH_RADIUS_KM).abs() < 1e-9,
            "{d}"
        );
    }

    /// The same formula with the platform's libm.
    fn haversine_with_libm(a: (f64, f64), b: (f64, f64)) -> f64 {
        let (lat1, lat2) = (a.0.to_radians(), b.0.to_radians());
        let h = ((lat2 - lat1) / 2.0).sin().powi(2)
            + lat1.cos() * lat2.cos() * ((b.1 - a.1).to_radians() / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
    }

    proptest::proptest! {
        #[test]
        fn haversine_matches_libm(
            a in (-90.0f64..=90.0, -180.0f64..=180.0),
            b in (-90.0f64..=90.0, -180.0f64..=180.0),
        ) {
            let (ours, libm) = (haversine_km(a, b), haversine_with_libm(a, b));
            proptest::prop_assert!((ours - libm).abs() <= 1e-9 * libm.max(1.0), "{a:?} {b:?}: {ours} vs {libm}");
        }
    }
}
