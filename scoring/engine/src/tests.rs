use vigil_models::features::index;
use vigil_schema::{Channel, Currency, Timestamp};

use super::*;

const T0: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_unix_millis((T0 + seconds) * 1000, 0).unwrap()
}

/// A transaction with only the required fields.
pub(crate) fn tx(id: u64, card: u64, merchant: u64, seconds: i64, amount_minor: u64) -> Event {
    Event {
        transaction: key(&format!("t{id}")),
        occurred_at: at(seconds),
        card,
        customer: None,
        merchant,
        device: None,
        amount_minor,
        currency: Currency::parse("USD").unwrap(),
        country: None,
        mcc: None,
        channel: None,
        geo: None,
    }
}

fn label(id: u64, is_fraud: bool, seconds: i64) -> LabelEvent {
    LabelEvent {
        transaction: key(&format!("t{id}")),
        is_fraud,
        labelled_at: at(seconds),
        explicit_genuine: !is_fraud,
    }
}

fn engine() -> Engine {
    Engine::new(EngineConfig::default(), RuleSet::default_rules()).unwrap()
}

/// A varied stream: 50 cards, 10 merchants, every few minutes, with optional fields on some.
fn stream(n: u64) -> Vec<Event> {
    (0..n)
        .map(|i| {
            let mut e = tx(
                i,
                i % 50,
                i % 10,
                (i * 97) as i64,
                500 + (i * 7919) % 40_000,
            );
            if i % 3 == 0 {
                e.customer = Some(i % 40);
                e.channel = Some(Channel::Ecom);
                e.geo = Some((40.0 + (i % 5) as f64, -74.0 + (i % 7) as f64 * 20.0));
            }
            e
        })
        .collect()
}

#[test]
fn same_input_same_output_bit_for_bit() {
    let run = || {
        let mut engine = engine();
        let mut out = vec![];
        for (i, e) in stream(3_000).iter().enumerate() {
            let d = engine.score(e);
            out.push((
                d.score.to_bits(),
                d.action,
                d.rules,
                engine.features().0.map(f32::to_bits),
            ));
            if i % 7 == 0 {
                engine.learn(&label(i as u64 / 2, i % 21 == 0, (i * 97) as i64));
            }
        }
        out
    };
    assert_eq!(run(), run());
}

/// Prefetching is a hint: an engine asked to prefetch the next two transactions decides exactly
/// as one that is not, from its first transaction on and with its pending store full.
#[test]
fn prefetching_changes_no_decision() {
    let events = stream(3_000);
    let run = |prefetch: bool| {
        let config = EngineConfig {
            max_pending_labels: 1_000,
            ..EngineConfig::default()
        };
        let mut engine = Engine::new(config, RuleSet::default_rules()).unwrap();
        let mut out = vec![];
        for (i, e) in events.iter().enumerate() {
            if prefetch {
                engine.prefetch(
                    events.get(i + 1).map(|e| (0, e)),
                    events.get(i + 2).map(|e| (0, e)),
                );
            }
            let d = engine.score(e);
            out.push((d.score.to_bits(), d.action, d.rules));
            if i % 7 == 0 {
                engine.learn(&label(i as u64 / 2, i % 21 == 0, (i * 97) as i64));
            }
        }
        (out, engine.stats())
    };
    let (prefetched, stats) = run(true);
    assert!(stats.vectors_dropped_early > 0, "the store filled");
    assert_eq!(prefetched, run(false).0);
}

/// An engine restored from a snapshot taken midway decides the rest of the stream exactly as
/// the engine that was never stopped (the live service's restart relies on it), with the full
/// chunks of pending vectors saved once, by the snapshot that first saw them full.
#[test]
fn a_restored_snapshot_goes_on_bit_for_bit() {
    let events = stream(20_000);
    let feed = |engine: &mut Engine, range: std::ops::Range<usize>| {
        let mut out = vec![];
        for i in range {
            let d = engine.score(&events[i]);
            out.push((d.score.to_bits(), d.action, d.rules));
            if i % 5 == 0 {
                engine.learn(&label(i as u64 / 2, i % 15 == 0, (i * 97) as i64));
            }
        }
        out
    };
    let mut whole = engine();
    let mut saved = std::collections::BTreeMap::new();
    feed(&mut whole, 0..9_000);
    let first = whole.part_copy(0).snapshot(0);
    let saved_to = whole.full_chunks_to(0);
    assert_eq!(first.new_chunks.len(), 2, "two full chunks of 4096 vectors");
    assert_eq!(saved_to, 2 * 4096);
    saved.extend(first.new_chunks);
    feed(&mut whole, 9_000..15_000);
    let second = whole.part_copy(0).snapshot(saved_to);
    let shared = whole.shared_snapshot();
    let firsts: Vec<u64> = second.new_chunks.iter().map(|c| c.0).collect();
    assert_eq!(firsts, [saved_to], "only the chunk filled since is new");
    saved.extend(second.new_chunks);
    let expected = feed(&mut whole, 15_000..20_000);

    let restore = |state: &[u8], skip: u64, shift: u64| {
        let mut restored = engine();
        restored.restore_shared(Some(&shared))?;
        let pooled_to = restored.restore_part(0, state, |first| {
            let chunk = saved.get(&(first + shift)).filter(|_| first != skip)?;
            Some(chunk.as_slice())
        })?;
        assert_eq!(pooled_to, restored.pooled_to());
        Ok::<_, Error>(restored)
    };
    let mut restored = restore(&second.state, u64::MAX, 0).unwrap();
    assert_eq!(feed(&mut restored, 15_000..20_000), expected);
    assert_eq!(restored.stats(), whole.stats());

    assert!(
        restore(&second.state[..100], u64::MAX, 0).is_err(),
        "a truncated snapshot is refused"
    );
    assert!(
        restore(&second.state, 4096, 0).is_err(),
        "a snapshot whose chunk is missing is refused"
    );
    assert!(
        restore(&second.state, u64::MAX, 4096).is_err(),
        "a chunk saved for another place is refused"
    );
}

#[test]
fn a_stream_of_required_fields_only_scores() {
    let mut engine = engine();
    for i in 0..500 {
        let d = engine.score(&tx(i, i % 20, i % 5, i as i64 * 60, 1_000 + i));
        assert!(d.score.is_finite() && (0.0..=1.0).contains(&d.score));
    }
    let x = engine.features();
    assert!(
        x.get(index::window(index::CUSTOMER_WINDOWS, 0, 0))
            .is_none(),
        "no customer: missing"
    );
    assert!(
        x.get(index::CARD_TRAVEL_KMH).is_none(),
        "no coordinates: missing"
    );
    assert!(x.get(index::CARD_NEW_COUNTRY).is_none());
    // Card 19 was last seen 20, 40 and 60 minutes earlier; the 1h window's ten-minute buckets
    // reach back 55 minutes at this time, so two of them count.
    assert_eq!(x.get(index::window(index::CARD_WINDOWS, 1, 0)), Some(2.0));
}

#[test]
fn history_excludes_the_transaction_itself() {
    let mut engine = engine();
    engine.score(&tx(1, 7, 1, 0, 1_000));
    engine.score(&tx(2, 7, 2, 60, 3_000));
    engine.score(&tx(3, 7, 1, 120, 8_000));
    let x = engine.features();
    let card = |h, stat| x.get(index::window(index::CARD_WINDOWS, h, stat)).unwrap();
    assert_eq!(
        (card(0, 0), card(0, 1), card(0, 2), card(0, 4)),
        (2.0, 4_000.0, 2_000.0, 3_000.0)
    );
    assert_eq!(x.get(index::CARD_AMOUNT_RATIO_30D), Some(4.0));
    assert_eq!(x.get(index::CARD_SECONDS_SINCE_PREVIOUS), Some(60.0));
    assert_eq!(x.get(index::CARD_DISTINCT_MERCHANTS_1H), Some(2.0));
    assert_eq!(x.get(index::CARD_NEW_MERCHANT), Some(0.0));
    assert_eq!(
        x.get(index::window(index::MERCHANT_WINDOWS, 0, 0)),
        Some(1.0)
    );
}

#[test]
fn late_transactions_are_scored_but_not_added() {
    let mut engine = engine();
    engine.score(&tx(1, 1, 1, 10_000, 1_000));
    // Within the allowed hour: applied.
    assert_eq!(
        engine
            .score(&tx(2, 1, 1, 10_000 - 1_800, 1_000))
            .disposition,
        Disposition::Applied
    );
    // Two hours late: scored, counted, not added.
    let late = engine.score(&tx(3, 1, 1, 10_000 - 7_200, 1_000));
    assert_eq!(late.disposition, Disposition::Late);
    assert_eq!(engine.stats().late, 1);
    engine.score(&tx(4, 1, 1, 10_001, 1_000));
    assert_eq!(
        engine
            .features()
            .get(index::window(index::CARD_WINDOWS, 2, 0)),
        Some(2.0),
        "the late one is not in the 1d window"
    );
}

#[test]
fn a_repeated_transaction_id_is_not_counted_twice() {
    let mut engine = engine();
    let e = tx(1, 1, 1, 0, 1_000);
    assert_eq!(engine.score(&e).disposition, Disposition::Applied);
    assert_eq!(engine.score(&e).disposition, Disposition::Duplicate);
    engine.score(&tx(2, 1, 1, 10, 1_000));
    assert_eq!(
        engine
            .features()
            .get(index::window(index::CARD_WINDOWS, 0, 0)),
        Some(1.0)
    );
}

/// A merchant's fraud count is by label time, its fraud rate over the sales whose outcome is
/// known (`maturity`, 7 days, after them), per horizon.
#[test]
fn fraud_labels_count_against_the_merchant_from_their_label_time() {
    const DAY: i64 = 86_400;
    let mut engine = engine();
    for i in 0..10 {
        engine.score(&tx(i, 100 + i, 9, i as i64 * 60, 2_000));
    }
    let frauds = |engine: &Engine, h: usize| {
        let x = engine.features();
        (
            x.get(index::MERCHANT_FRAUD_COUNTS + h),
            x.get(index::MERCHANT_FRAUD_RATES + h),
        )
    };
    engine.score(&tx(10, 110, 9, DAY, 2_000));
    assert_eq!(frauds(&engine, 2), (Some(0.0), Some(0.0)));
    // Past the first ten's maturity: they count as sales with a known outcome.
    engine.score(&tx(11, 111, 9, 7 * DAY + 3_600, 2_000));
    let updates = engine.stats().model_updates;
    assert_eq!(
        engine.learn(&label(3, true, 7 * DAY + 3_700)),
        LabelOutcome::Learned
    );
    assert_eq!(
        engine.learn(&label(3, true, 7 * DAY + 3_700)),
        LabelOutcome::Repeated
    );
    assert_eq!(
        engine.learn(&label(999, true, 7 * DAY + 3_700)),
        LabelOutcome::Unmatched
    );
    engine.score(&tx(12, 112, 9, 7 * DAY + 7_200, 2_000));
    assert_eq!(
        engine.stats().model_updates,
        updates + 1,
        "the fraud, once, with the pooling after it; not the repeat nor the unmatched"
    );
    for h in 0..3 {
        assert_eq!(frauds(&engine, h), (Some(1.0), Some(0.1)), "horizon {h}");
    }
    // Three days on, the fraud has left the one-day window, not the others; the sale of day
    // 1 has matured (on day 8) and counts.
    engine.score(&tx(13, 113, 9, 10 * DAY, 2_000));
    assert_eq!(frauds(&engine, 0), (Some(0.0), Some(0.0)));
    assert_eq!(frauds(&engine, 1), (Some(1.0), Some(1.0 / 11.0)));
    assert_eq!(
        engine.features().get(index::MERCHANT_FRAUD_COUNT_30D),
        Some(1.0)
    );
}

/// A merchant's run of frauds is timed by its payments, not its labels: its age from the
/// first fraud paid, its idle time from the latest; a fraud paid long after starts a new run.
#[test]
fn a_merchants_run_of_frauds_is_timed_by_payment() {
    const DAY: i64 = 86_400;
    let mut engine = engine();
    let run = |engine: &Engine| {
        let x = engine.features();
        (
            x.get(index::MERCHANT_FRAUD_RUN_AGE),
            x.get(index::MERCHANT_FRAUD_RUN_IDLE),
        )
    };
    engine.score(&tx(1, 101, 9, 0, 2_000));
    assert_eq!(run(&engine), (None, None), "no fraud known: missing");
    engine.score(&tx(2, 102, 9, 2 * DAY, 2_000));
    // Labelled late and out of payment order: the run spans the payments of days 0 and 2.
    engine.learn(&label(2, true, 9 * DAY));
    engine.learn(&label(1, true, 10 * DAY));
    engine.score(&tx(4, 104, 9, 10 * DAY + 3_600, 2_000));
    assert_eq!(
        run(&engine),
        (
            Some((10 * DAY + 3_600) as f32),
            Some((8 * DAY + 3_600) as f32)
        )
    );
    // A fraud paid 18 days after the run's last: a new run.
    engine.score(&tx(3, 103, 9, 20 * DAY, 2_000));
    engine.learn(&label(3, true, 25 * DAY));
    engine.score(&tx(5, 105, 9, 25 * DAY + 3_600, 2_000));
    let new_run = Some((5 * DAY + 3_600) as f32);
    assert_eq!(run(&engine), (new_run, new_run));
}

#[test]
fn implicit_genuine_until_explicit_labels_arrive() {
    let config = EngineConfig {
        maturity: Span::days(1),
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(config, RuleSet::empty()).unwrap();
    for i in 0..2_000 {
        engine.score(&tx(i, i % 100, i % 10, i as i64 * 60, 1_000));
    }
    // 2000 minutes is more than a day: the first 560 transactions matured, and the sampled
    // share of them was learned as genuine.
    let learned = engine.stats().model_updates as f64;
    let expected = 560.0 * engine.config().model.negative_sample_rate;
    assert!(
        (0.5 * expected..1.6 * expected).contains(&learned),
        "{learned} learned, about {expected} expected"
    );

    engine.learn(&label(1_999, false, 2_000 * 60));
    // Pools what was learned until the label.
    engine.score(&tx(2_000, 0, 0, 2_001 * 60, 1_000));
    let before = engine.stats().model_updates;
    for i in 2_001..4_000 {
        engine.score(&tx(i, i % 100, i % 10, i as i64 * 60, 1_000));
    }
    assert_eq!(
        engine.stats().model_updates,
        before,
        "explicit genuine labels turn implicit ones off"
    );
}

#[test]
fn idle_keys_are_forgotten() {
    let mut engine = engine();
    for card in 0..100 {
        engine.score(&tx(card, card, 1, 0, 1_000));
    }
    assert_eq!(engine.size().cards, 100);
    // Forty days later, one card keeps transacting; the sweep frees the other 99.
    for i in 0..200 {
        engine.score(&tx(1_000 + i, 0, 1, 40 * 86_400 + i as i64, 1_000));
    }
    assert_eq!(engine.size().cards, 1);
    assert_eq!(engine.stats().expired_keys, 99);
}

#[test]
fn velocity_burst_is_explained_with_the_values_read() {
    let mut engine = engine();
    let mut last = None;
    for i in 0..6 {
        last = Some(engine.score(&tx(i, 1, i % 3, i as i64 * 30, 5_000)));
    }
    let decision = last.unwrap();
    let explanation = engine.explain(&decision);
    let hits: Vec<&str> = explanation.rule_hits().map(|r| r.reason.as_str()).collect();
    assert_eq!(hits, ["VELOCITY_BURST"]);
    let text = explanation.to_string();
    assert!(text.contains("card_count_10m=5"), "{text}");
    assert!(decision.score > 0.05, "{}", decision.score);
    let mut reasons = String::new();
    decision.write_reasons(engine.rules(), &mut reasons, false);
    assert!(reasons.starts_with("VELOCITY_BURST"), "{reasons}");
}

#[test]
fn the_explanation_as_json_names_values_read_and_comparisons() {
    let mut engine = engine();
    let mut last = None;
    for i in 0..6 {
        last = Some(engine.score(&tx(i, 1, i % 3, i as i64 * 30, 5_000)));
    }
    let decision = last.unwrap();
    let json = serde_json::to_value(engine.explain(&decision)).unwrap();
    assert_eq!(json["decision"], decision.action.as_str());
    assert_eq!(json["rules"][0]["reason"], "VELOCITY_BURST");
    assert_eq!(json["rules"][0]["values"]["card_count_10m"], 5.0);
    let when = json["rules"][0]["when"].as_str().unwrap();
    assert!(
        when.contains("card_count_10m"),
        "the condition as written: {when}"
    );
    assert_eq!(json["rules"][0]["score"], 3.0);
    let comparisons: Vec<&str> = json["comparisons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(
        comparisons.contains(&"5 earlier transactions on this card in the last 10m"),
        "{comparisons:?}"
    );
    assert!(json["model"].is_array(), "{json}");
}

#[test]
fn reasons_appended_to_a_shared_buffer_are_separated_only_when_asked() {
    let mut engine = engine();
    let mut last = None;
    for i in 0..6 {
        last = Some(engine.score(&tx(i, 1, i % 3, i as i64 * 30, 5_000)));
    }
    let decision = last.unwrap();
    let mut column = String::from("ANOTHER_ROW");
    let start = column.len();
    decision.write_reasons(engine.rules(), &mut column, false);
    assert!(column[start..].starts_with("VELOCITY_BURST"), "{column}");
    let mut with_prefix = String::from("BLOCKLIST_CARD");
    decision.write_reasons(engine.rules(), &mut with_prefix, true);
    assert!(
        with_prefix.starts_with("BLOCKLIST_CARD;VELOCITY_BURST"),
        "{with_prefix}"
    );
}

/// A champion fitted on the stream's own vectors, fraud being a high amount on a card's
/// busy hour: enough to score differently from the prior.
fn champion(events: &[Event]) -> Arc<Artifact> {
    use vigil_models::artifact::Period;
    use vigil_models::training::{Examples, Job, train};
    let mut scorer = engine();
    let mut examples = Examples::default();
    for e in events {
        scorer.score(e);
        let fraud = e.amount_minor > 30_000;
        examples.push(scorer.features(), fraud, 1.0, 0, e.card);
    }
    let job = Job {
        version: "gbt-test".into(),
        code_version: "test".into(),
        created_at: at(0),
        config: vigil_models::BoostedConfig {
            trees: 5,
            max_depth: 2,
            ..vigil_models::BoostedConfig::default()
        },
        training_period: Period {
            from: at(0),
            to: at(1),
        },
        negative_sample_rate: 1.0,
        examples_read: examples.len() as u64,
        validation_period: None,
    };
    Arc::new(train(&job, &examples, &Examples::default(), &|_| {}).unwrap())
}

#[test]
fn a_champion_scores_and_a_new_one_restarts_the_online_corrections() {
    let events = stream(3_000);
    let artifact = champion(&events);
    let mut with = engine();
    with.set_champion(Some(artifact.clone()));
    let mut without = engine();
    let (mut differ, mut explained) = (0, 0);
    for (i, e) in events.iter().enumerate() {
        let a = with.score(e);
        let b = without.score(e);
        differ += usize::from(a.model.logit != b.model.logit);
        explained += usize::from(a.model.top[0].is_some());
        assert_eq!(
            a.model.logit, a.model.base_logit,
            "the online model is not warm yet"
        );
        if i % 10 == 0 {
            with.learn(&label(
                i as u64,
                e.amount_minor > 30_000,
                (i * 97) as i64 + 60,
            ));
        }
    }
    assert!(differ > 2_000, "{differ}");
    assert!(explained > 0, "the trees' contributions explain scores");
    let learned = with.shared.model.examples();
    assert!(learned.0 + learned.1 > 0);

    // The same champion after a restore: the online model goes on from where it was.
    let snapshot = with.part_copy(0).snapshot(0);
    let mut restored = engine();
    restored
        .restore_shared(Some(&with.shared_snapshot()))
        .unwrap();
    restored
        .restore_part(0, &snapshot.state, |first| {
            let chunk = snapshot.new_chunks.iter().find(|c| c.0 == first)?;
            Some(chunk.1.as_slice())
        })
        .unwrap();
    restored.set_champion(Some(artifact.clone()));
    assert_eq!(restored.shared.model.examples(), learned);
    // Another champion: its errors are not the old one's; the corrections start again.
    let mut other = (*artifact).clone();
    other.version = "gbt-other".into();
    restored.set_champion(Some(Arc::new(other)));
    assert_eq!(restored.shared.model.examples(), (0, 0));
}

/// 30 days, a payment every ten minutes; every 25th a fraud of a large amount, labelled a
/// minute later.
fn engine_with_known_frauds(retrain: RetrainConfig) -> Engine {
    let config = EngineConfig {
        retrain,
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(config, RuleSet::empty()).unwrap();
    for i in 0..30 * 144 {
        let fraud = i % 25 == 0;
        let amount = if fraud { 90_000 } else { 1_000 + (i % 7) * 300 };
        engine.score(&tx(i, i % 300, i % 40, i as i64 * 600, amount));
        if fraud {
            engine.learn(&label(i, true, i as i64 * 600 + 60));
        }
    }
    engine
}

#[test]
fn known_examples_are_the_matured_or_labelled_and_split_for_validation() {
    const DAY: i64 = 86_400;
    let engine = engine_with_known_frauds(RetrainConfig::default());
    let (training, validation, read) = engine.known_examples(T0 + 16 * DAY, T0 + 23 * DAY, 0.2);
    assert_eq!(read, 16 * 144);
    assert_eq!(validation.len(), 7 * 144, "every matured one, unsampled");
    assert_eq!(training.frauds(), (16 * 144_u64).div_ceil(25));
    assert_eq!(validation.frauds(), 40);
    let genuine = training.len() as u64 - training.frauds();
    assert!(
        (300..=620).contains(&genuine),
        "about a fifth of {} genuine: {genuine}",
        read - training.frauds()
    );
}

#[test]
fn retraining_promotes_a_champion_only_when_it_beats_the_one_in_force() {
    const DAY: i64 = 86_400;
    let retrain = RetrainConfig {
        every: Span::days(10),
        min_frauds: 20,
        ..RetrainConfig::default()
    };
    let mut engine = engine_with_known_frauds(retrain.clone());
    let mut retrainer = Retrainer::new(&engine).expect("retraining is on");
    assert!(!retrainer.due(T0));
    assert!(!retrainer.due(T0 + 9 * DAY));
    assert!(retrainer.due(T0 + 30 * DAY));

    let Retrained::Promoted(first) = retrainer.retrain(&engine, T0 + 30 * DAY).unwrap() else {
        panic!("with no champion in force, the first model is promoted");
    };
    assert!(first.average_precision.unwrap() > 0.99);
    assert_eq!(first.champion_average_precision, None);
    assert!(!retrainer.due(T0 + 39 * DAY), "the next is due ten days on");
    engine.set_champion(Some(Arc::new(first.artifact)));

    // The same examples make the same model: no better than the one in force.
    let Retrained::Kept(second) = retrainer.retrain(&engine, T0 + 30 * DAY).unwrap() else {
        panic!("a model no better than the champion is not promoted");
    };
    assert_eq!(second.average_precision, second.champion_average_precision);

    let too_few = RetrainConfig {
        min_frauds: 10_000,
        ..retrain
    };
    let engine = engine_with_known_frauds(too_few);
    let outcome = Retrainer::new(&engine)
        .unwrap()
        .retrain(&engine, T0 + 30 * DAY)
        .unwrap();
    assert!(
        matches!(outcome, Retrained::TooFewFrauds { frauds: 93 }),
        "{outcome:?}"
    );
}

#[test]
fn retraining_is_off_at_zero_days() {
    let config = EngineConfig {
        retrain: RetrainConfig {
            every: Span::days(0),
            ..RetrainConfig::default()
        },
        ..EngineConfig::default()
    };
    assert!(Retrainer::new(&Engine::new(config, RuleSet::empty()).unwrap()).is_none());
}

/// The same stream scored by one engine and by eight partitions (by card, as the producer's
/// partitioner puts them), labels going to their card's partition: the same decisions, bit for
/// bit, and the same model. Each partition sees an eighth of every merchant's sales and labels,
/// and of the customers' (whose cards are in several partitions), yet scores with all of them.
#[test]
fn partitioning_changes_no_decision() {
    let events = stream(6_000);
    let run = |partitions: u64| {
        let mut engine =
            Engine::partitioned(EngineConfig::default(), RuleSet::default_rules(), 8).unwrap();
        if partitions == 1 {
            engine = self::engine();
        }
        let part = |card: u64| (card % partitions) as usize;
        let mut out = vec![];
        for (i, e) in events.iter().enumerate() {
            let d = engine.score_in(part(e.card), e);
            out.push((d.score.to_bits(), d.action, d.rules));
            if i % 7 == 0 {
                let labelled = &events[i / 2];
                let l = label(i as u64 / 2, i % 21 == 0, (i * 97) as i64);
                engine.learn_in(part(labelled.card), &l);
            }
        }
        let size = engine.size();
        (
            out,
            engine.stats().model_updates,
            size.merchants,
            size.customers,
        )
    };
    let (one, updates, merchants, customers) = run(1);
    assert!(updates > 100, "the model learned: {updates}");
    assert_eq!((merchants, customers), (10, 40));
    assert_eq!(run(8), (one, updates, merchants, customers));
}

/// What the partitions share is pooled every `share_every` and used `share_delay` after: a
/// merchant's sale counts for the transactions from then on, not before.
#[test]
fn shared_state_lags_by_at_most_share_every_and_delay() {
    let config = EngineConfig {
        share_every: Span::seconds(10),
        share_delay: Span::seconds(5),
        ..EngineConfig::default()
    };
    let mut engine = Engine::partitioned(config, RuleSet::empty(), 2).unwrap();
    let sales_10m = |engine: &Engine| {
        engine
            .features()
            .get(index::window(index::MERCHANT_WINDOWS, 0, 0))
    };
    engine.score_in(0, &tx(1, 1, 7, 100, 1_000));
    // Pooled up to 110 from 115 on: the sale at 100 is not seen at 114, by either partition.
    engine.score_in(1, &tx(2, 2, 7, 114, 1_000));
    assert_eq!(sales_10m(&engine), Some(0.0));
    engine.score_in(1, &tx(3, 2, 7, 115, 1_000));
    assert_eq!(sales_10m(&engine), Some(1.0));
    // The card's own windows are not shared: they count at once.
    engine.score_in(0, &tx(4, 1, 8, 116, 1_000));
    assert_eq!(
        engine
            .features()
            .get(index::window(index::CARD_WINDOWS, 0, 0)),
        Some(1.0)
    );
}

/// What a retraining learns from does not depend on the partitions either: the vectors one
/// partition would keep, within the label horizon and the newest `max_pending_labels`, even
/// where eight partitions keep more between them.
#[test]
fn known_examples_do_not_depend_on_the_partitions() {
    const DAY: i64 = 86_400;
    let config = EngineConfig {
        max_pending_labels: 2_000,
        ..EngineConfig::default()
    };
    let examples = |partitions: usize| {
        let mut engine = Engine::partitioned(config.clone(), RuleSet::empty(), partitions).unwrap();
        for i in 0..30 * 144 {
            let e = tx(i, i % 300, i % 40, i as i64 * 600, 1_000 + (i % 7) * 300);
            engine.score_in((e.card % partitions as u64) as usize, &e);
        }
        let (training, validation, read) = engine.known_examples(T0 + 20 * DAY, T0 + 23 * DAY, 0.5);
        let bits = |x: &Examples| -> Vec<u32> {
            (0..x.len())
                .flat_map(|i| x.vector(i).0.map(f32::to_bits))
                .collect()
        };
        (read, bits(&training), bits(&validation))
    };
    let one = examples(1);
    // The newest 2,000 are from day 16.1 on; training takes those before day 20.
    assert_eq!(one.0, 20 * 144 - (30 * 144 - 2_000));
    assert_eq!(examples(8), one);
}

/// A replay learns each label just before the first transaction later than it, wherever the
/// stream is split.
#[test]
fn a_replay_learns_each_label_just_before_the_first_transaction_after_it() {
    struct Log(Vec<String>);
    impl replay::Observer for Log {
        type Error = std::convert::Infallible;
        fn learned(&mut self, label: &LabelEvent, outcome: LabelOutcome) {
            let at = label.labelled_at.unix_seconds() - T0;
            self.0.push(format!("label at {at}: {outcome:?}"));
        }
        fn scored(&mut self, event: &Event, _: &Engine, _: Decision) {
            self.0
                .push(format!("tx at {}", event.occurred_at.unix_seconds() - T0));
        }
    }
    let transactions = [0, 60, 120].map(|t| tx(t as u64, 1, 1, t, 1_000));
    let labels = [(0, label(0, true, 60)), (0, label(60, true, 61))];
    let recorded = replay::Recorded {
        transactions: &transactions,
        labels: &labels,
    };
    let (first, second) = recorded.split_at(2);
    assert_eq!((first.labels.len(), second.labels.len()), (1, 1));
    let (mut engine, mut log) = (engine(), Log(vec![]));
    first.replay(&mut engine, &mut log).unwrap();
    second.replay(&mut engine, &mut log).unwrap();
    assert_eq!(
        log.0,
        [
            "tx at 0",
            "label at 60: Learned",
            "tx at 60",
            "label at 61: Learned",
            "tx at 120"
        ]
    );
}

/// Two engines, each owning four of eight partitions and scoring only their transactions, that
/// hand their partitions' shares to each other (as bytes, as a topic would carry them), decide
/// as one engine of the eight partitions does, bit for bit: what the live service's instances
/// are to do.
#[test]
fn engines_exchanging_shares_decide_as_one() {
    let events = stream(6_000);
    let part = |card: u64| (card % 8) as usize;
    let owner = |p: usize| p / 4;
    let new = || Engine::partitioned(EngineConfig::default(), RuleSet::default_rules(), 8).unwrap();
    let (mut one, mut two) = (new(), [new(), new()]);
    let mut inboxes: [Vec<Share>; 2] = Default::default();
    for (i, e) in events.iter().enumerate() {
        let (p, o) = (part(e.card), owner(part(e.card)));
        let expected = one.score_in(p, e);
        if let Some(boundary) = two[o].due(e.occurred_at) {
            for q in 0..8 {
                let Some(share) = two[owner(q)].hand_over(q, boundary) else {
                    continue;
                };
                let bytes = postcard::to_stdvec(&share).unwrap();
                for inbox in &mut inboxes {
                    inbox.push(postcard::from_bytes(&bytes).unwrap());
                }
            }
            two[o].pool(boundary, &mut inboxes[o]);
            inboxes[o].retain(|s| !s.records.is_empty());
        }
        let got = two[o].score_pooled(p, e);
        assert_eq!(
            (got.score.to_bits(), got.action, got.rules),
            (expected.score.to_bits(), expected.action, expected.rules),
            "transaction {i}"
        );
        if i % 7 == 0 {
            let q = part(events[i / 2].card);
            let l = label(i as u64 / 2, i % 21 == 0, (i * 97) as i64);
            one.learn_in(q, &l);
            two[owner(q)].learn_in(q, &l);
        }
    }
    let updates = [0, 1].map(|o| two[o].stats().model_updates);
    assert!(updates[0] > 100);
    assert_eq!(updates, [one.stats().model_updates; 2]);
}

/// Two engines given `shares()`: one pooled to boundary 10 with the first two shares and then
/// to 20 with all, one pooled to 20 at once.
fn pooled_stepwise_and_at_once(shares: &dyn Fn() -> [Share; 3]) -> (Engine, Engine) {
    let mut stepwise = engine();
    let mut arrived = shares();
    stepwise.pool(10, &mut arrived[..2]);
    stepwise.pool(20, &mut arrived);
    let mut at_once = engine();
    at_once.pool(20, &mut shares());
    (stepwise, at_once)
}

/// Shares pool to the same shared state whichever boundaries an engine pooled on the way: one
/// instance may pool each boundary as its shares arrive, another (restarted, or behind) all at
/// once. A record handed over after its own boundary (a label read late) is pooled at the first
/// boundary after its share's start in both.
#[test]
fn shares_pool_alike_whatever_boundaries_were_pooled_between() {
    let sale = |at: i64, merchant: u64| Record {
        at,
        count: Count::Sale,
        key: merchant,
        amount_minor: 100.0,
        slot: NO_SLOT,
        since_payment: 0,
    };
    let share = |partition: u32, from: i64, to: i64, records: Vec<Record>| Share {
        partition,
        from,
        to,
        records: Outbox {
            records,
            ..Outbox::default()
        },
        champion: None,
    };
    let shares = || {
        [
            share(0, i64::MIN, 10, vec![sale(3, 1), sale(7, 2)]),
            share(1, i64::MIN, 20, vec![sale(5, 3), sale(15, 4)]),
            // Merchant 5's sale at 4 reached partition 0 after it had handed over 10.
            share(0, 10, 20, vec![sale(4, 5), sale(12, 6)]),
        ]
    };
    let (stepwise, at_once) = pooled_stepwise_and_at_once(&shares);
    assert!(at_once.shared_snapshot() == stepwise.shared_snapshot());
    // The late sale is counted after those its partition handed over before it: merchant 5
    // comes after merchant 2 (and a snapshot would tell).
    let mut sorted = engine();
    let all = [(3, 1), (4, 5), (5, 3), (7, 2), (12, 6), (15, 4)];
    let all = all.into_iter().map(|(at, m)| sale(at, m)).collect();
    sorted.pool(20, &mut [share(0, i64::MIN, 20, all)]);
    assert!(sorted.shared_snapshot() != at_once.shared_snapshot());
}

/// The champion partition 0's shares carry is taken at the same point of every engine's
/// pooling, however it pooled on the way: the online model starts afresh on top of it there,
/// so every instance holds one model. An engine that does not hold that champion says so.
#[test]
fn engines_pooling_shares_switch_champions_at_one_point() {
    let example = |at: i64, transaction: u64| Example {
        at,
        transaction,
        is_fraud: transaction.is_multiple_of(2),
        source: Source::Label,
        features: FeatureVector::default(),
    };
    let share =
        |partition: u32, from: i64, to: i64, examples: Vec<Example>, champion: &str| Share {
            partition,
            from,
            to,
            records: Outbox {
                examples,
                ..Outbox::default()
            },
            champion: (!champion.is_empty()).then(|| champion.to_owned()),
        };
    let shares = || {
        [
            share(0, i64::MIN, 10, vec![example(3, 1)], ""),
            share(1, i64::MIN, 20, vec![example(5, 2), example(15, 3)], ""),
            share(0, 10, 20, vec![example(12, 4)], "gbt-next"),
        ]
    };
    let (stepwise, at_once) = pooled_stepwise_and_at_once(&shares);
    assert!(at_once.shared_snapshot() == stepwise.shared_snapshot());
    assert_eq!(at_once.champion_missing(), Some("gbt-next"));
    assert!(at_once.shared.model.examples().0 + at_once.shared.model.examples().1 < 4);
    // Taken from the first step on, the champion would have reset the model elsewhere.
    let mut earlier = engine();
    let mut first = shares();
    first[0].champion = Some("gbt-next".into());
    earlier.pool(20, &mut first);
    assert!(earlier.shared_snapshot() != at_once.shared_snapshot());
}

/// What a decision says and the features it read, bit for bit.
type Said = (u32, Action, Disposition, Vec<u32>);

fn said(d: &Decision, features: &FeatureVector) -> Said {
    let read = features.0.iter().map(|v| v.to_bits()).collect();
    (d.score.to_bits(), d.action, d.disposition, read)
}

/// A stream of transactions: (card, merchant, amount, seconds after the one before).
fn stream_of(steps: &[(u64, u64, u64, i64)]) -> Vec<Event> {
    let mut t = 0;
    steps
        .iter()
        .enumerate()
        .map(|(i, &(card, merchant, amount, gap))| {
            t += gap;
            tx(i as u64, card, merchant, t, amount)
        })
        .collect()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// The engine's invariants over random streams with repeated transactions and events from
    /// a wrong clock far behind: a repeat is a duplicate and a late event is late, neither
    /// changes any other transaction's decision, and the same stream decides the same, bit for
    /// bit.
    #[test]
    fn repeats_and_late_events_change_no_other_decision(
        steps in proptest::collection::vec((0u64..40, 0u64..8, 100u64..200_000, 0i64..900), 30..160),
        repeats in proptest::collection::vec(
            (proptest::prelude::any::<proptest::sample::Index>(), proptest::prelude::any::<proptest::sample::Index>()),
            0..8,
        ),
        lates in proptest::collection::vec(
            (proptest::prelude::any::<proptest::sample::Index>(), 3_601i64..10_000_000, 0u64..40),
            0..8,
        ),
    ) {
        let clean = stream_of(&steps);
        // Inserted after position `at`: a repeat of a transaction at or before it, or a new
        // one dated far behind the newest time so far.
        let mut inserts: Vec<(usize, Event, Disposition)> = vec![];
        for (at, of) in &repeats {
            let at = at.index(clean.len());
            inserts.push((at, clean[of.index(at + 1)], Disposition::Duplicate));
        }
        for (n, (at, behind, card)) in lates.iter().enumerate() {
            let at = at.index(clean.len());
            let newest = clean[..=at].iter().map(Event::seconds).max().unwrap() - T0;
            let late = tx(1_000_000 + n as u64, *card, 0, newest - behind, 5_000);
            inserts.push((at, late, Disposition::Late));
        }
        inserts.sort_by_key(|(at, _, _)| *at);
        let mut noisy: Vec<(Event, Option<Disposition>)> = vec![];
        let mut next = inserts.into_iter().peekable();
        for (i, e) in clean.iter().enumerate() {
            noisy.push((*e, None));
            while let Some((_, extra, expected)) = next.next_if(|(at, _, _)| *at == i) {
                noisy.push((extra, Some(expected)));
            }
        }

        let run = |events: &mut dyn Iterator<Item = &Event>| -> Vec<Said> {
            let mut engine = engine();
            events
                .map(|e| {
                    let decision = engine.score(e);
                    said(&decision, engine.features())
                })
                .collect()
        };
        let alone = run(&mut clean.iter());
        let among = run(&mut noisy.iter().map(|(e, _)| e));
        proptest::prop_assert_eq!(&among, &run(&mut noisy.iter().map(|(e, _)| e)));
        let mut others = vec![];
        for ((_, expected), decided) in noisy.iter().zip(&among) {
            match expected {
                Some(expected) => proptest::prop_assert_eq!(decided.2, *expected),
                None => others.push(decided.clone()),
            }
        }
        proptest::prop_assert_eq!(others, alone);
    }
}

/// A flood of transactions from cards a partition has never seen costs neither memory beyond
/// `max_keys` nor the vectors of earlier transactions still waiting for their chargebacks:
/// past its budget, a new card's transaction is decided but keeps no vector.
#[test]
fn a_flood_of_new_cards_keeps_the_vectors_awaiting_labels() {
    let run = |new_card_vectors_per_hour: u32| {
        let config = EngineConfig {
            max_pending_labels: 5_000,
            max_keys: 2_000,
            new_card_vectors_per_hour,
            ..EngineConfig::default()
        };
        let mut engine = Engine::new(config, RuleSet::default_rules()).unwrap();
        // A day of a regular portfolio: 50 cards, one transaction every few minutes.
        let regular = stream(800);
        for e in &regular {
            engine.score(e);
        }
        let flood_at = 800 * 97;
        for i in 0..20_000u64 {
            let d = engine.score(&tx(
                1_000_000 + i,
                10_000 + i,
                3,
                flood_at + (i / 100) as i64,
                100,
            ));
            assert_eq!(d.disposition, Disposition::Applied, "the flood is decided");
        }
        // Chargebacks for the portfolio's first transactions, a week on.
        let outcomes: Vec<_> = (0..100)
            .map(|i| engine.learn(&label(i, true, flood_at + 7 * 86_400)))
            .collect();
        (engine.stats(), engine.size(), outcomes)
    };

    let (stats, size, outcomes) = run(1_000);
    assert!(
        outcomes.iter().all(|&o| o == LabelOutcome::Learned),
        "every chargeback finds its vector: {outcomes:?}"
    );
    assert_eq!(stats.vectors_dropped_early, 0);
    let kept = 20_000 - stats.vectors_not_kept;
    assert!(
        (1_000..1_100).contains(&kept),
        "an hour's budget, and its refill over the flood's 200 s: {kept}"
    );
    assert!(
        size.cards <= 2_000,
        "at most max_keys cards: {}",
        size.cards
    );
    assert_eq!(stats.keys_evicted, 50 + 20_000 - 2_000);
    assert!(size.pending_labels <= 5_000);

    // Without the budget, the flood pushes the portfolio's vectors out.
    let (stats, _, outcomes) = run(0);
    assert!(stats.vectors_dropped_early > 0);
    assert!(outcomes.iter().all(|&o| o == LabelOutcome::Unmatched));
}
