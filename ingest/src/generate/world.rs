//! The synthetic world: regions, merchant categories, merchants and cards with their habits.

use super::random::Random;

/// A home region: where cards live and merchants trade.
#[derive(Debug)]
pub struct Region {
    pub country: &'static str,
    pub lat: f64,
    pub lon: f64,
    pub utc_offset_minutes: i32,
}

pub const REGIONS: [Region; 9] = [
    Region {
        country: "US",
        lat: 40.71,
        lon: -74.01,
        utc_offset_minutes: -300,
    },
    Region {
        country: "US",
        lat: 34.05,
        lon: -118.24,
        utc_offset_minutes: -480,
    },
    Region {
        country: "GB",
        lat: 51.51,
        lon: -0.13,
        utc_offset_minutes: 0,
    },
    Region {
        country: "DE",
        lat: 52.52,
        lon: 13.40,
        utc_offset_minutes: 60,
    },
    Region {
        country: "FR",
        lat: 48.86,
        lon: 2.35,
        utc_offset_minutes: 60,
    },
    Region {
        country: "BR",
        lat: -23.55,
        lon: -46.63,
        utc_offset_minutes: -180,
    },
    Region {
        country: "IN",
        lat: 19.08,
        lon: 72.88,
        utc_offset_minutes: 330,
    },
    Region {
        country: "JP",
        lat: 35.68,
        lon: 139.69,
        utc_offset_minutes: 540,
    },
    Region {
        country: "AU",
        lat: -33.87,
        lon: 151.21,
        utc_offset_minutes: 600,
    },
];

/// A kind of merchant, with its typical ticket and how often it sells online.
#[derive(Debug)]
pub struct Category {
    pub mcc: &'static str,
    pub mean_minor: f64,
    pub online_share: f64,
    /// How common such merchants are, and how often cards shop there.
    pub weight: f64,
}

pub const CATEGORIES: [Category; 10] = [
    Category {
        mcc: "5411",
        mean_minor: 4_500.0,
        online_share: 0.05,
        weight: 30.0,
    }, // grocery
    Category {
        mcc: "5812",
        mean_minor: 3_500.0,
        online_share: 0.05,
        weight: 25.0,
    }, // restaurants
    Category {
        mcc: "5541",
        mean_minor: 5_000.0,
        online_share: 0.0,
        weight: 12.0,
    }, // fuel
    Category {
        mcc: "5912",
        mean_minor: 2_500.0,
        online_share: 0.1,
        weight: 6.0,
    }, // pharmacy
    Category {
        mcc: "5651",
        mean_minor: 8_000.0,
        online_share: 0.3,
        weight: 8.0,
    }, // clothing
    Category {
        mcc: "5732",
        mean_minor: 30_000.0,
        online_share: 0.4,
        weight: 4.0,
    }, // electronics
    Category {
        mcc: "5999",
        mean_minor: 6_000.0,
        online_share: 1.0,
        weight: 10.0,
    }, // online retail
    Category {
        mcc: "5816",
        mean_minor: 1_500.0,
        online_share: 1.0,
        weight: 6.0,
    }, // digital goods
    Category {
        mcc: "4511",
        mean_minor: 45_000.0,
        online_share: 0.9,
        weight: 2.0,
    }, // airlines
    Category {
        mcc: "5944",
        mean_minor: 60_000.0,
        online_share: 0.2,
        weight: 1.0,
    }, // jewelry
];

pub const ELECTRONICS: usize = 5;
pub const ONLINE_RETAIL: usize = 6;
pub const DIGITAL_GOODS: usize = 7;
pub const AIRLINES: usize = 8;
pub const JEWELRY: usize = 9;
pub const CLOTHING: usize = 4;

#[derive(Debug)]
pub struct Merchant {
    pub category: usize,
    pub region: usize,
    pub lat: f64,
    pub lon: f64,
}

#[derive(Debug)]
pub struct Card {
    pub customer: u32,
    pub region: usize,
    /// Mean transactions per day.
    pub activity: f64,
    /// Multiplies every category's typical amount.
    pub spend_scale: f64,
    /// Merchants this card goes back to.
    pub favourites: Vec<u32>,
    /// Home position (lat, lon), used for online payments' IP location.
    pub home: (f64, f64),
    /// While travelling: the region, the day of the flight out and the day of the flight back.
    pub trip: Option<Trip>,
}

/// A journey to another region; no payments are made on the days of the flights.
#[derive(Debug, Clone, Copy)]
pub struct Trip {
    pub region: usize,
    pub departs: u32,
    pub returns: u32,
}

impl Trip {
    pub fn is_flying(&self, day: u32) -> bool {
        day == self.departs || day == self.returns
    }
}

#[derive(Debug)]
pub struct World {
    pub merchants: Vec<Merchant>,
    /// Merchants of each region, with running popularity sums for weighted draws.
    pub by_region: Vec<(Vec<u32>, Vec<f64>)>,
    /// Merchants of each category.
    pub by_category: Vec<Vec<u32>>,
    pub cards: Vec<Card>,
}

impl World {
    pub fn new(rng: &mut Random, cards: u32, merchants: u32) -> Self {
        let category_weights = running_sum(CATEGORIES.iter().map(|c| c.weight));
        let mut all = Vec::with_capacity(merchants as usize);
        let mut by_region: Vec<(Vec<u32>, Vec<f64>)> =
            REGIONS.iter().map(|_| (vec![], vec![])).collect();
        let mut by_category: Vec<Vec<u32>> = CATEGORIES.iter().map(|_| vec![]).collect();
        for id in 0..merchants {
            let region = rng.index(REGIONS.len());
            let category = rng.weighted(&category_weights);
            let r = &REGIONS[region];
            all.push(Merchant {
                category,
                region,
                lat: r.lat + 0.15 * rng.normal(),
                lon: r.lon + 0.15 * rng.normal(),
            });
            // Popularity falls off with rank (Zipf-like), scaled by how common the category is.
            let popularity =
                CATEGORIES[category].weight / (1.0 + by_region[region].0.len() as f64).powf(0.7);
            let (ids, sums) = &mut by_region[region];
            sums.push(sums.last().copied().unwrap_or(0.0) + popularity);
            ids.push(id);
            by_category[category].push(id);
        }
        let mut world = Self {
            merchants: all,
            by_region,
            by_category,
            cards: Vec::with_capacity(cards as usize),
        };
        let mut customer = 0;
        for i in 0..cards {
            // About one customer in six has a second card.
            if i > 0 && !rng.chance(1.0 / 6.0) {
                customer += 1;
            }
            let card = world.new_card(rng, customer);
            world.cards.push(card);
        }
        world
    }

    fn new_card(&self, rng: &mut Random, customer: u32) -> Card {
        let region = rng.index(REGIONS.len());
        let favourites = (0..6)
            .filter_map(|_| self.local_merchant(rng, region))
            .collect();
        let r = &REGIONS[region];
        Card {
            customer,
            region,
            activity: rng.log_normal(0.7, 0.5),
            spend_scale: rng.log_normal(0.0, 0.4),
            favourites,
            home: (r.lat + 0.1 * rng.normal(), r.lon + 0.1 * rng.normal()),
            trip: None,
        }
    }

    /// A merchant of `region`, the popular ones more often.
    pub fn local_merchant(&self, rng: &mut Random, region: usize) -> Option<u32> {
        let (ids, sums) = &self.by_region[region];
        (!ids.is_empty()).then(|| ids[rng.weighted(sums)])
    }

    /// Any merchant of one of `categories`.
    pub fn merchant_of(&self, rng: &mut Random, categories: &[usize]) -> Option<u32> {
        let category = categories[rng.index(categories.len())];
        let ids = &self.by_category[category];
        (!ids.is_empty()).then(|| ids[rng.index(ids.len())])
    }
}

pub fn running_sum(weights: impl Iterator<Item = f64>) -> Vec<f64> {
    weights
        .scan(0.0, |sum, w| {
            *sum += w;
            Some(*sum)
        })
        .collect()
}
