//! The fraud scenarios the generator plays out. Each plans a burst of fraudulent transactions
//! for one victim card (or, for a compromised merchant, many cards at one merchant).

use super::random::Random;
use super::world::{
    AIRLINES, CATEGORIES, CLOTHING, DIGITAL_GOODS, ELECTRONICS, JEWELRY, ONLINE_RETAIL, REGIONS,
    World,
};
use super::{Device, Planned};
use vigil_schema::Channel;

/// The kinds of fraud, as named in the ground truth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scenario {
    CardTesting,
    AccountTakeover,
    CompromisedMerchant,
    StolenCardSpree,
    VelocityBurst,
    /// The card's number leaked: used online for about two weeks at inflated amounts.
    LeakedCardNumber,
    /// A newer scheme, played only from `GeneratorConfig::emerging_from_day` on, to stage drift.
    RemoteAccess,
}

impl Scenario {
    pub const ALL: [Scenario; 7] = [
        Scenario::CardTesting,
        Scenario::AccountTakeover,
        Scenario::CompromisedMerchant,
        Scenario::StolenCardSpree,
        Scenario::VelocityBurst,
        Scenario::LeakedCardNumber,
        Scenario::RemoteAccess,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scenario::CardTesting => "card_testing",
            Scenario::AccountTakeover => "account_takeover",
            Scenario::CompromisedMerchant => "compromised_merchant",
            Scenario::StolenCardSpree => "stolen_card_spree",
            Scenario::VelocityBurst => "velocity_burst",
            Scenario::LeakedCardNumber => "leaked_card_number",
            Scenario::RemoteAccess => "remote_access",
        }
    }

    /// Chance per card per day that this scenario strikes the card.
    pub fn daily_rate(self) -> f64 {
        match self {
            Scenario::CardTesting | Scenario::StolenCardSpree => 0.000_3,
            Scenario::AccountTakeover
            | Scenario::VelocityBurst
            | Scenario::LeakedCardNumber
            | Scenario::RemoteAccess => 0.000_2,
            // Per merchant per day, played out by `compromised_merchant_day`.
            Scenario::CompromisedMerchant => 0.000_1,
        }
    }
}

/// What a fraud scenario needs to plan its transactions.
pub struct Incident<'a> {
    pub world: &'a World,
    pub rng: &'a mut Random,
    pub card: u32,
    /// When it starts, in unix milliseconds.
    pub start_ms: i64,
    /// A number for the fraudster's device and IP.
    pub fraudster: u32,
    pub scenario: Scenario,
}

const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 24 * 60 * MINUTE_MS;

impl Incident<'_> {
    /// Plans the incident's transactions into `out`.
    pub fn play(self, out: &mut Vec<Planned>) {
        match self.scenario {
            Scenario::CardTesting => self.card_testing(out),
            Scenario::AccountTakeover => self.account_takeover(out),
            Scenario::StolenCardSpree => self.stolen_card_spree(out),
            Scenario::VelocityBurst => self.velocity_burst(out),
            Scenario::LeakedCardNumber => self.leaked_card_number(out),
            Scenario::RemoteAccess => self.remote_access(out),
            // Many cards at one merchant: see `compromised_merchant_day`.
            Scenario::CompromisedMerchant => {}
        }
    }

    fn far_region(&mut self) -> usize {
        let home = self.world.cards[self.card as usize].region;
        loop {
            let r = self.rng.index(REGIONS.len());
            if REGIONS[r].country != REGIONS[home].country {
                return r;
            }
        }
    }

    fn fraud(
        &mut self,
        at_ms: i64,
        merchant: u32,
        amount_minor: f64,
        channel: Channel,
        device: Device,
        geo: Option<(f64, f64)>,
    ) -> Planned {
        let card = &self.world.cards[self.card as usize];
        let m = &self.world.merchants[merchant as usize];
        let geo = geo.or(match channel {
            Channel::Ecom | Channel::Moto => Some(card.home),
            Channel::Pos | Channel::Atm => Some((m.lat, m.lon)),
        });
        Planned {
            at_ms,
            seq: 0,
            card: self.card,
            merchant,
            amount_minor: amount_minor.round().max(1.0) as u64,
            channel,
            device,
            geo,
            offset_minutes: REGIONS[m.region].utc_offset_minutes,
            scenario: Some(self.scenario),
        }
    }

    /// An online payment from the fraudster's device.
    fn fraudster_online(
        &mut self,
        at_ms: i64,
        merchant: u32,
        amount_minor: f64,
        geo: Option<(f64, f64)>,
    ) -> Planned {
        let device = Device::Fraudster(self.fraudster);
        self.fraud(at_ms, merchant, amount_minor, Channel::Ecom, device, geo)
    }

    /// Many small online payments at several merchants, then often a large one.
    fn card_testing(mut self, out: &mut Vec<Planned>) {
        let region = self.far_region();
        let geo = Some((REGIONS[region].lat, REGIONS[region].lon));
        let merchants: Vec<u32> = (0..self.rng.int(3, 6))
            .filter_map(|_| {
                self.world
                    .merchant_of(self.rng, &[DIGITAL_GOODS, ONLINE_RETAIL])
            })
            .collect();
        if merchants.is_empty() {
            return;
        }
        let mut at = self.start_ms;
        for _ in 0..self.rng.int(5, 12) {
            at += self.rng.int(20, 180) as i64 * 1000;
            let merchant = merchants[self.rng.index(merchants.len())];
            let amount = self.rng.between(50.0, 400.0);
            out.push(self.fraudster_online(at, merchant, amount, geo));
        }
        if self.rng.chance(0.6) {
            for _ in 0..self.rng.int(1, 2) {
                at += self.rng.int(60, 180) as i64 * MINUTE_MS;
                if let Some(m) = self
                    .world
                    .merchant_of(self.rng, &[ELECTRONICS, ONLINE_RETAIL, JEWELRY])
                {
                    let amount = self.rng.between(20_000.0, 150_000.0);
                    out.push(self.fraudster_online(at, m, amount, geo));
                }
            }
        }
    }

    /// A new device in another country buys expensive things online within hours.
    fn account_takeover(mut self, out: &mut Vec<Planned>) {
        let region = self.far_region();
        let mut at = self.start_ms;
        for _ in 0..self.rng.int(2, 5) {
            at += self.rng.int(10, 90) as i64 * MINUTE_MS;
            let Some(m) = self
                .world
                .merchant_of(self.rng, &[ELECTRONICS, JEWELRY, ONLINE_RETAIL, AIRLINES])
            else {
                continue;
            };
            let geo = Some((
                REGIONS[region].lat + 0.1 * self.rng.normal(),
                REGIONS[region].lon + 0.1 * self.rng.normal(),
            ));
            let amount = self.rng.between(15_000.0, 200_000.0);
            out.push(self.fraudster_online(at, m, amount, geo));
        }
    }

    /// A stolen physical card spent in shops near home: expensive goods, several in hours.
    fn stolen_card_spree(mut self, out: &mut Vec<Planned>) {
        let card = &self.world.cards[self.card as usize];
        let (region, scale) = (
            card.trip.map_or(card.region, |t| t.region),
            card.spend_scale,
        );
        // Shops selling what resells well, in the region; any shop there if it has none.
        let targets: Vec<u32> = [ELECTRONICS, JEWELRY, CLOTHING]
            .iter()
            .flat_map(|&c| &self.world.by_category[c])
            .copied()
            .filter(|&m| self.world.merchants[m as usize].region == region)
            .collect();
        let mut at = self.start_ms;
        for _ in 0..self.rng.int(4, 10) {
            at += self.rng.int(10, 60) as i64 * MINUTE_MS;
            let merchant = if targets.is_empty() {
                self.world.local_merchant(self.rng, region)
            } else {
                Some(targets[self.rng.index(targets.len())])
            };
            let Some(m) = merchant else { continue };
            let mean = CATEGORIES[self.world.merchants[m as usize].category].mean_minor;
            let amount = mean * scale * self.rng.between(2.0, 6.0);
            out.push(self.fraud(at, m, amount, Channel::Pos, Device::None, None));
        }
    }

    /// Many online payments in a few minutes.
    fn velocity_burst(mut self, out: &mut Vec<Planned>) {
        let region = self.far_region();
        let geo = Some((REGIONS[region].lat, REGIONS[region].lon));
        let span_ms = self.rng.int(10, 30) as i64 * MINUTE_MS;
        let n = self.rng.int(8, 20);
        for i in 0..n {
            let at =
                self.start_ms + span_ms * i as i64 / n as i64 + self.rng.int(0, 20) as i64 * 1000;
            let Some(m) = self
                .world
                .merchant_of(self.rng, &[ONLINE_RETAIL, DIGITAL_GOODS, CLOTHING])
            else {
                continue;
            };
            let amount = self.rng.between(1_000.0, 20_000.0);
            out.push(self.fraudster_online(at, m, amount, geo));
        }
    }

    /// A leaked card number: for ten to eighteen days, on about two days in five, an online
    /// purchase at three to six times what the card usually spends there, shipped to the
    /// fraudster's address in another country. No device is known (many merchants send none),
    /// and each purchase is days apart, so neither a new device nor a burst gives it away: only
    /// the amount and the address.
    fn leaked_card_number(mut self, out: &mut Vec<Planned>) {
        let scale = self.world.cards[self.card as usize].spend_scale;
        let region = self.far_region();
        let address = Some((
            REGIONS[region].lat + 0.1 * self.rng.normal(),
            REGIONS[region].lon + 0.1 * self.rng.normal(),
        ));
        for day in 0..self.rng.int(10, 18) as i64 {
            if !self.rng.chance(0.4) {
                continue;
            }
            let at = self.start_ms + day * DAY_MS + self.rng.int(0, 86_399) as i64 * 1000;
            let Some(m) = self
                .world
                .merchant_of(self.rng, &[ONLINE_RETAIL, ELECTRONICS, CLOTHING])
            else {
                continue;
            };
            let mean = CATEGORIES[self.world.merchants[m as usize].category].mean_minor;
            let amount = mean * scale * self.rng.between(3.0, 6.0);
            out.push(self.fraud(at, m, amount, Channel::Ecom, Device::None, address));
        }
    }

    /// Malware on the cardholder's own device buys gift cards and digital goods while they
    /// sleep: their device, IP and home location, so none of the older schemes' tells (a new
    /// device, another country, a burst within minutes), only new merchants from the small hours
    /// on, half an hour to an hour apart, for a little more than the card usually spends.
    fn remote_access(mut self, out: &mut Vec<Planned>) {
        let card = &self.world.cards[self.card as usize];
        let (home, scale) = (card.home, card.spend_scale);
        let offset_minutes = REGIONS[card.region].utc_offset_minutes;
        let offset_ms = i64::from(offset_minutes) * MINUTE_MS;
        let day_start = self.start_ms - self.start_ms.rem_euclid(DAY_MS);
        // From 1 to 4 in the morning, the cardholder's time.
        let mut at = day_start - offset_ms + self.rng.int(60, 240) as i64 * MINUTE_MS;
        for _ in 0..self.rng.int(3, 6) {
            let Some(m) = self
                .world
                .merchant_of(self.rng, &[DIGITAL_GOODS, ONLINE_RETAIL])
            else {
                continue;
            };
            let mean = CATEGORIES[self.world.merchants[m as usize].category].mean_minor;
            let amount = mean * scale * self.rng.between(1.5, 3.0);
            let geo = Some((
                home.0 + 0.05 * self.rng.normal(),
                home.1 + 0.05 * self.rng.normal(),
            ));
            // Stamped in the cardholder's time, as their own online payments are.
            let planned = self.fraud(at, m, amount, Channel::Ecom, Device::Own, geo);
            out.push(Planned {
                offset_minutes,
                ..planned
            });
            at += self.rng.int(30, 60) as i64 * MINUTE_MS;
        }
    }
}

/// One day of a compromised merchant: several cards are charged fraudulently at it.
pub fn compromised_merchant_day(
    world: &World,
    rng: &mut Random,
    merchant: u32,
    day_start_ms: i64,
    out: &mut Vec<Planned>,
) {
    let m = &world.merchants[merchant as usize];
    let category = &CATEGORIES[m.category];
    for _ in 0..rng.int(4, 12) {
        // A card from the merchant's region when one turns up in a few tries.
        let card = (0..20)
            .map(|_| rng.index(world.cards.len()) as u32)
            .find(|&c| world.cards[c as usize].region == m.region);
        let Some(card) = card else { continue };
        let online = rng.chance(category.online_share);
        let (channel, geo) = if online {
            (Channel::Ecom, world.cards[card as usize].home)
        } else {
            (Channel::Pos, (m.lat, m.lon))
        };
        out.push(Planned {
            at_ms: day_start_ms + rng.int(0, 86_399) as i64 * 1000,
            seq: 0,
            card,
            merchant,
            amount_minor: (category.mean_minor * rng.between(2.0, 5.0)).round() as u64,
            channel,
            device: Device::None,
            geo: Some(geo),
            offset_minutes: REGIONS[m.region].utc_offset_minutes,
            scenario: Some(Scenario::CompromisedMerchant),
        });
    }
}
