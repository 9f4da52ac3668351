//! The synthetic data generator: realistic genuine spending and five fraud scenarios (a sixth,
//! newer one from a chosen day, to stage drift), with chargebacks arriving days later.
//! Deterministic by seed.
//!
//! Writes `transactions.{ndjson,csv}` sorted by `occurred_at`, `labels.{ndjson,csv}` sorted by
//! `labelled_at`, and `truth.csv` with the scenario of every fraudulent transaction.

mod random;
mod scenarios;
mod world;

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use vigil_schema::{
    CardId, Channel, Country, Currency, CustomerId, DeviceId, Label, LabelSource, Mcc, MerchantId,
    Timestamp, Transaction, TransactionId,
};

use crate::read::Format;
use crate::{Error, Result};
use random::Random;
pub use scenarios::Scenario;
use scenarios::{Incident, compromised_merchant_day};
use world::{CATEGORIES, REGIONS, World, running_sum};

const DAY_MS: i64 = 86_400_000;
/// Relative frequency of each local hour of the day for genuine spending.
const HOURLY_RHYTHM: [f64; 24] = [
    0.3, 0.2, 0.1, 0.1, 0.1, 0.2, 0.5, 1.0, 2.0, 2.5, 2.5, 3.0, 4.0, 3.5, 2.5, 2.5, 3.0, 4.0, 4.5,
    4.0, 3.0, 2.0, 1.2, 0.6,
];

/// What to generate.
#[derive(Debug, Clone)]
pub struct GeneratorConfig {
    pub days: u32,
    pub cards: u32,
    pub merchants: u32,
    pub seed: u64,
    /// The first day, as unix milliseconds at 00:00 UTC.
    pub start_ms: i64,
    /// Also write a genuine label for every genuine transaction (as an `import`, a week later).
    pub genuine_labels: bool,
    /// From this day on (counted from 0), a newer fraud scheme strikes too
    /// ([`Scenario::RemoteAccess`]): drift that models trained before it have not seen.
    pub emerging_from_day: Option<u32>,
    pub format: Format,
}

/// What was written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub transactions: u64,
    pub frauds: u64,
    pub labels: u64,
    pub by_scenario: BTreeMap<&'static str, u64>,
    pub transactions_path: PathBuf,
    pub labels_path: PathBuf,
    pub truth_path: PathBuf,
}

/// Whose device a payment came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    None,
    /// The cardholder's own.
    Own,
    /// A fraudster's, numbered.
    Fraudster(u32),
}

/// A transaction waiting, in time order, to be written.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub at_ms: i64,
    /// Tie-breaker, and the transaction's number.
    pub seq: u64,
    pub card: u32,
    pub merchant: u32,
    pub amount_minor: u64,
    pub channel: Channel,
    pub device: Device,
    pub geo: Option<(f64, f64)>,
    pub offset_minutes: i32,
    pub scenario: Option<Scenario>,
}

impl Eq for Planned {}

impl Ord for Planned {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at_ms, self.seq).cmp(&(other.at_ms, other.seq))
    }
}

impl PartialOrd for Planned {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// A label waiting, in time order, to be written: (labelled at, transaction number, card, fraud).
type PlannedLabel = (i64, u64, u32, bool);

/// Generates the files into `out_dir`, calling `on_day` after each simulated day.
pub fn generate(
    config: &GeneratorConfig,
    out_dir: &Path,
    mut on_day: impl FnMut(u32),
) -> Result<Summary> {
    std::fs::create_dir_all(out_dir).map_err(|error| Error::Io {
        path: out_dir.to_owned(),
        error,
    })?;
    let extension = match config.format {
        Format::Ndjson => "ndjson",
        Format::Csv => "csv",
    };
    let mut summary = Summary {
        transactions_path: out_dir.join(format!("transactions.{extension}")),
        labels_path: out_dir.join(format!("labels.{extension}")),
        truth_path: out_dir.join("truth.csv"),
        ..Summary::default()
    };
    let mut out = Output {
        transactions: Writer::create(
            &summary.transactions_path,
            config.format,
            &Transaction::FIELDS,
        )?,
        labels: Writer::create(&summary.labels_path, config.format, &Label::FIELDS)?,
        truth: Writer::create(
            &summary.truth_path,
            Format::Csv,
            &[
                "transaction_id",
                "card_id",
                "merchant_id",
                "occurred_at",
                "scenario",
            ],
        )?,
    };
    let mut rng = Random::new(config.seed);
    let mut world = World::new(&mut rng, config.cards, config.merchants);
    let mut sim = Simulation {
        config,
        planned: BinaryHeap::new(),
        labels: BinaryHeap::new(),
        next_seq: 0,
        fraudsters: 0,
        batch: vec![],
    };
    let rhythm = running_sum(HOURLY_RHYTHM.iter().copied());
    let mut compromised: Vec<(u32, u32)> = vec![];

    for day in 0..config.days {
        let day_start = config.start_ms + i64::from(day) * DAY_MS;
        for card in 0..world.cards.len() as u32 {
            sim.card_day(&mut world, &mut rng, &rhythm, card, day, day_start);
        }
        if rng.chance(f64::from(config.merchants) * Scenario::CompromisedMerchant.daily_rate())
            && config.merchants > 0
        {
            let merchant = rng.index(world.merchants.len()) as u32;
            // Skimmers and breached checkouts go unnoticed for weeks.
            compromised.push((merchant, day + rng.int(14, 35) as u32));
        }
        compromised.retain(|&(_, until)| until > day);
        for &(merchant, _) in &compromised {
            compromised_merchant_day(&world, &mut rng, merchant, day_start, &mut sim.batch);
        }
        sim.plan_batch();
        // Events of a day can fall up to 14 hours before it in UTC: write with a day's lag.
        sim.flush(&world, &mut rng, &mut out, &mut summary, day_start - DAY_MS)?;
        on_day(day + 1);
    }
    // A scheme that started late planned payments past the end: they are not simulated.
    let end = config.start_ms + i64::from(config.days) * DAY_MS;
    sim.planned.retain(|p| p.0.at_ms < end);
    sim.flush(&world, &mut rng, &mut out, &mut summary, i64::MAX)?;
    out.finish()?;
    Ok(summary)
}

struct Output {
    transactions: Writer,
    labels: Writer,
    truth: Writer,
}

impl Output {
    fn finish(self) -> Result<()> {
        self.transactions.finish()?;
        self.labels.finish()?;
        self.truth.finish()
    }
}

struct Simulation<'a> {
    config: &'a GeneratorConfig,
    planned: BinaryHeap<Reverse<Planned>>,
    labels: BinaryHeap<Reverse<PlannedLabel>>,
    next_seq: u64,
    fraudsters: u32,
    /// Transactions planned but not yet numbered.
    batch: Vec<Planned>,
}

impl Simulation<'_> {
    /// One card's day: genuine spending, travel, and whether a fraud scenario strikes it.
    fn card_day(
        &mut self,
        world: &mut World,
        rng: &mut Random,
        rhythm: &[f64],
        card: u32,
        day: u32,
        day_start: i64,
    ) {
        let c = &mut world.cards[card as usize];
        if c.trip.is_some_and(|t| t.returns < day) {
            c.trip = None;
        }
        if c.trip.is_none() && rng.chance(0.003) {
            let region = rng.index(REGIONS.len());
            c.trip = Some(world::Trip {
                region,
                departs: day,
                returns: day + rng.int(3, 7) as u32,
            });
        }
        let weekend = matches!((day_start / DAY_MS + 3).rem_euclid(7), 5 | 6);
        let flying = c.trip.is_some_and(|t| t.is_flying(day));
        let n = if flying {
            0
        } else {
            rng.poisson(c.activity * if weekend { 1.15 } else { 1.0 })
        };
        for _ in 0..n {
            let planned = genuine(world, rng, rhythm, card, day_start);
            if let Some(p) = planned {
                self.batch.push(p);
            }
        }
        let emerged = self
            .config
            .emerging_from_day
            .is_some_and(|from| day >= from);
        let newer: &[Scenario] = if emerged {
            &[Scenario::RemoteAccess]
        } else {
            &[]
        };
        for &scenario in [
            Scenario::CardTesting,
            Scenario::AccountTakeover,
            Scenario::StolenCardSpree,
            Scenario::VelocityBurst,
            Scenario::LeakedCardNumber,
        ]
        .iter()
        .chain(newer)
        {
            if !rng.chance(scenario.daily_rate()) {
                continue;
            }
            self.fraudsters += 1;
            let start_ms = day_start + rng.int(0, 86_399) as i64 * 1000;
            Incident {
                world,
                rng,
                card,
                start_ms,
                fraudster: self.fraudsters,
                scenario,
            }
            .play(&mut self.batch);
        }
    }

    fn plan_batch(&mut self) {
        for mut p in self.batch.drain(..) {
            p.seq = self.next_seq;
            self.next_seq += 1;
            self.planned.push(Reverse(p));
        }
    }

    /// Writes every transaction and label planned before `until_ms`, in time order.
    fn flush(
        &mut self,
        world: &World,
        rng: &mut Random,
        out: &mut Output,
        summary: &mut Summary,
        until_ms: i64,
    ) -> Result<()> {
        while self.planned.peek().is_some_and(|p| p.0.at_ms < until_ms) {
            let Reverse(p) = self.planned.pop().expect("peeked");
            write_transaction(world, &p, out, summary)?;
            if p.scenario.is_some() {
                // Chargebacks come 2 days to 2 months later, most within three weeks.
                let delay_days = (1.0 + rng.log_normal(8f64.ln(), 0.6)).min(60.0);
                self.labels.push(Reverse((
                    p.at_ms + (delay_days * DAY_MS as f64) as i64,
                    p.seq,
                    p.card,
                    true,
                )));
            } else if self.config.genuine_labels {
                let delay = 7 * DAY_MS + rng.int(0, 2 * DAY_MS as u64) as i64;
                self.labels
                    .push(Reverse((p.at_ms + delay, p.seq, p.card, false)));
            }
        }
        while self.labels.peek().is_some_and(|l| l.0.0 < until_ms) {
            let Reverse((at_ms, seq, card, is_fraud)) = self.labels.pop().expect("peeked");
            write_label(at_ms, seq, card, is_fraud, out)?;
            summary.labels += 1;
        }
        Ok(())
    }
}

/// A genuine payment by `card` on the day starting at `day_start`.
fn genuine(
    world: &World,
    rng: &mut Random,
    rhythm: &[f64],
    card: u32,
    day_start: i64,
) -> Option<Planned> {
    let c = &world.cards[card as usize];
    let region = c.trip.map_or(c.region, |t| t.region);
    let merchant = if c.trip.is_some() {
        world.local_merchant(rng, region)?
    } else if rng.chance(0.7) && !c.favourites.is_empty() {
        c.favourites[rng.index(c.favourites.len())]
    } else if rng.chance(0.15) {
        world.merchant_of(rng, &[world::ONLINE_RETAIL, world::DIGITAL_GOODS])?
    } else {
        world.local_merchant(rng, region)?
    };
    let m = &world.merchants[merchant as usize];
    let category = &CATEGORIES[m.category];
    let offset = REGIONS[region].utc_offset_minutes;
    let local_seconds = rng.weighted(rhythm) as i64 * 3_600 + rng.int(0, 3_599) as i64;
    let online = rng.chance(category.online_share);
    let (channel, device, geo) = if online {
        let (lat, lon) = if c.trip.is_some() {
            (REGIONS[region].lat, REGIONS[region].lon)
        } else {
            c.home
        };
        (
            Channel::Ecom,
            Device::Own,
            (lat + 0.05 * rng.normal(), lon + 0.05 * rng.normal()),
        )
    } else {
        (Channel::Pos, Device::None, (m.lat, m.lon))
    };
    Some(Planned {
        at_ms: day_start + (local_seconds - i64::from(offset) * 60) * 1000,
        seq: 0,
        card,
        merchant,
        amount_minor: (category.mean_minor * c.spend_scale * rng.log_normal(0.0, 0.5))
            .round()
            .max(50.0) as u64,
        channel,
        device,
        geo: Some(geo),
        offset_minutes: offset,
        scenario: None,
    })
}

/// Coordinates to about 10 m, as a payment system would send them.
fn four_decimals(degrees: f64) -> f64 {
    (degrees * 1e4).round() / 1e4
}

fn transaction_id(seq: u64) -> String {
    format!("tx_{seq:010}")
}

fn card_id(card: u32) -> String {
    format!("card_{card:07}")
}

fn write_transaction(
    world: &World,
    p: &Planned,
    out: &mut Output,
    summary: &mut Summary,
) -> Result<()> {
    let c = &world.cards[p.card as usize];
    let m = &world.merchants[p.merchant as usize];
    let valid = "generated values are valid";
    let tx = Transaction {
        transaction_id: TransactionId::parse(transaction_id(p.seq)).expect(valid),
        occurred_at: Timestamp::from_unix_millis(p.at_ms, p.offset_minutes).expect(valid),
        card_id: CardId::parse(card_id(p.card)).expect(valid),
        customer_id: Some(CustomerId::parse(format!("cust_{:07}", c.customer)).expect(valid)),
        merchant_id: MerchantId::parse(format!("m_{:05}", p.merchant)).expect(valid),
        amount_minor: p.amount_minor,
        currency: Currency::parse("USD").expect(valid),
        country: Some(Country::parse(REGIONS[m.region].country).expect(valid)),
        mcc: Some(Mcc::parse(CATEGORIES[m.category].mcc).expect(valid)),
        channel: Some(p.channel),
        device_id: match p.device {
            Device::None => None,
            Device::Own => Some(DeviceId::parse(format!("dev_{:07}", p.card)).expect(valid)),
            Device::Fraudster(f) => Some(DeviceId::parse(format!("fdev_{f:06}")).expect(valid)),
        },
        ip: match p.device {
            Device::None => None,
            Device::Own => Some(std::net::Ipv4Addr::from(0xC633_0000 | (p.card & 0xffff)).into()),
            Device::Fraudster(f) => Some(std::net::Ipv4Addr::from(0xCB00_7100 | (f & 0xff)).into()),
        },
        lat: p.geo.map(|g| four_decimals(g.0.clamp(-90.0, 90.0))),
        lon: p
            .geo
            .map(|g| four_decimals((g.1 + 180.0).rem_euclid(360.0) - 180.0)),
    };
    out.transactions.write_transaction(&tx)?;
    summary.transactions += 1;
    if let Some(scenario) = p.scenario {
        summary.frauds += 1;
        *summary.by_scenario.entry(scenario.as_str()).or_default() += 1;
        let when = tx.occurred_at.to_string();
        out.truth.write_row(&[
            tx.transaction_id.as_str(),
            tx.card_id.as_str(),
            tx.merchant_id.as_str(),
            &when,
            scenario.as_str(),
        ])?;
    }
    Ok(())
}

fn write_label(at_ms: i64, seq: u64, card: u32, is_fraud: bool, out: &mut Output) -> Result<()> {
    let valid = "generated values are valid";
    let label = Label {
        transaction_id: TransactionId::parse(transaction_id(seq)).expect(valid),
        is_fraud,
        labelled_at: Timestamp::from_unix_millis(at_ms, 0).expect(valid),
        source: if is_fraud {
            LabelSource::Chargeback
        } else {
            LabelSource::Import
        },
        card_id: Some(CardId::parse(card_id(card)).expect(valid)),
    };
    out.labels.write_label(&label)
}

/// Writes records as NDJSON or CSV.
struct Writer {
    path: PathBuf,
    out: Sink,
}

enum Sink {
    Ndjson(BufWriter<File>),
    Csv(Box<csv::Writer<File>>),
}

impl Writer {
    fn create(path: &Path, format: Format, columns: &[&str]) -> Result<Self> {
        let file = File::create(path).map_err(|error| Error::Io {
            path: path.to_owned(),
            error,
        })?;
        let out = match format {
            Format::Ndjson => Sink::Ndjson(BufWriter::with_capacity(1 << 20, file)),
            Format::Csv => Sink::Csv(Box::new(
                csv::WriterBuilder::new()
                    .buffer_capacity(1 << 20)
                    .from_writer(file),
            )),
        };
        let mut writer = Self {
            path: path.to_owned(),
            out,
        };
        if format == Format::Csv {
            writer.write_row(columns)?;
        }
        Ok(writer)
    }

    fn io(&self) -> impl Fn(std::io::Error) -> Error + '_ {
        |error| Error::Io {
            path: self.path.clone(),
            error,
        }
    }

    /// Writes `value` as a JSON line to an NDJSON file, or its `row` to a CSV file.
    fn write<R, F>(&mut self, value: &impl serde::Serialize, row: impl FnOnce() -> R) -> Result<()>
    where
        R: IntoIterator<Item = F>,
        F: AsRef<str>,
    {
        let written = match &mut self.out {
            Sink::Ndjson(out) => serde_json::to_writer(&mut *out, value)
                .map_err(std::io::Error::from)
                .and_then(|()| out.write_all(b"\n")),
            Sink::Csv(out) => {
                let fields: Vec<F> = row().into_iter().collect();
                let text = fields.iter().map(AsRef::as_ref);
                out.write_record(text).map_err(std::io::Error::from)
            }
        };
        written.map_err(self.io())
    }

    /// A row of text (a JSON array of strings in an NDJSON file).
    fn write_row(&mut self, row: &[&str]) -> Result<()> {
        self.write(&row, || row)
    }

    fn write_transaction(&mut self, tx: &Transaction<'_>) -> Result<()> {
        let text = |v: Option<String>| v.map_or(Cow::Borrowed(""), Cow::Owned);
        self.write(tx, || {
            [
                Cow::Borrowed(tx.transaction_id.as_str()),
                Cow::Owned(tx.occurred_at.to_string()),
                Cow::Borrowed(tx.card_id.as_str()),
                text(tx.customer_id.as_ref().map(ToString::to_string)),
                Cow::Borrowed(tx.merchant_id.as_str()),
                Cow::Owned(tx.amount_minor.to_string()),
                Cow::Borrowed(tx.currency.as_str()),
                text(tx.country.map(|c| c.to_string())),
                text(tx.mcc.map(|m| m.to_string())),
                Cow::Borrowed(tx.channel.map_or("", Channel::as_str)),
                text(tx.device_id.as_ref().map(ToString::to_string)),
                text(tx.ip.map(|ip| ip.to_string())),
                text(tx.lat.map(|v| v.to_string())),
                text(tx.lon.map(|v| v.to_string())),
            ]
        })
    }

    fn write_label(&mut self, label: &Label<'_>) -> Result<()> {
        let source = match label.source {
            LabelSource::Chargeback => "chargeback",
            LabelSource::Investigator => "investigator",
            LabelSource::Import => "import",
        };
        self.write(label, || {
            [
                Cow::Borrowed(label.transaction_id.as_str()),
                Cow::Borrowed(if label.is_fraud { "true" } else { "false" }),
                Cow::Owned(label.labelled_at.to_string()),
                Cow::Borrowed(source),
                Cow::Borrowed(label.card_id.as_ref().map_or("", CardId::as_str)),
            ]
        })
    }

    fn finish(mut self) -> Result<()> {
        let flushed = match &mut self.out {
            Sink::Ndjson(out) => out.flush(),
            Sink::Csv(out) => out.flush(),
        };
        flushed.map_err(self.io())
    }
}

#[cfg(test)]
mod tests;
