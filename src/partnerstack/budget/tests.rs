//! The budget in paused time: orders, slots and rates are exact, and a minute of traffic
//! against a modelled rate limit takes milliseconds.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc, Mutex,
};

use super::*;

/// A budget held at `rate` (its ceiling, and where it starts).
fn paced(rate: f64) -> Arc<Budget> {
    let budget = Budget::new(RateLimit::Adaptive { ceiling: Some(rate) });
    budget.start_from(at_429(rate));
    Arc::new(budget)
}

/// A rate an earlier run found at a 429: about the limit.
fn at_429(requests_per_second: f64) -> LearnedRate {
    LearnedRate { requests_per_second, found_at_429: true }
}

/// A rate an earlier run reached without meeting a 429: a floor.
fn without_429(requests_per_second: f64) -> LearnedRate {
    LearnedRate { requests_per_second, found_at_429: false }
}

fn permit_at(granted_at: Instant, waited: bool) -> Permit {
    Permit { granted_at, waited }
}

#[tokio::test(start_paused = true)]
async fn waiters_are_served_most_urgent_first_and_in_arrival_order_within_a_level() {
    let budget = paced(10.0);
    budget.permit().await;
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut waiters = Vec::new();
    for (name, priority) in [
        ("bulk 1", Priority::Bulk),
        ("normal 1", Priority::Normal),
        ("bulk 2", Priority::Bulk),
        ("urgent 1", Priority::Urgent),
        ("normal 2", Priority::Normal),
        ("urgent 2", Priority::Urgent),
    ] {
        let (budget, order) = (budget.clone(), order.clone());
        waiters.push(tokio::spawn(with_priority(priority, async move {
            budget.permit().await;
            order.lock().unwrap().push(name);
        })));
        // Lets the waiter take its place in line before the next one arrives.
        tokio::task::yield_now().await;
    }
    assert_eq!(Priority::ALL.map(|p| budget.snapshot().waiting(p)), [2, 2, 2]);
    for waiter in waiters {
        waiter.await.unwrap();
    }
    assert_eq!(*order.lock().unwrap(), ["urgent 1", "urgent 2", "normal 1", "normal 2", "bulk 1", "bulk 2"]);
}

#[tokio::test(start_paused = true)]
async fn an_urgent_request_waits_behind_at_most_the_one_bulk_request_already_granted() {
    let budget = paced(20.0);
    let bulk_grants = Arc::new(Mutex::new(Vec::new()));
    // Four backfill readers that want the API again as soon as their request is answered.
    for _ in 0..4 {
        let (budget, grants) = (budget.clone(), bulk_grants.clone());
        tokio::spawn(with_priority(Priority::Bulk, async move {
            loop {
                budget.permit().await;
                grants.lock().unwrap().push(Instant::now());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    tokio::time::advance(Duration::from_millis(1_013)).await;
    assert!(budget.snapshot().waiting(Priority::Bulk) >= 3, "the backfill saturates the budget");

    let arrived = Instant::now();
    with_priority(Priority::Urgent, budget.permit()).await;
    let granted = Instant::now();
    let overtaken = bulk_grants.lock().unwrap().iter().filter(|t| **t > arrived && **t <= granted).count();
    assert_eq!(overtaken, 0, "no bulk request is granted while the urgent one waits");
    assert!(granted - arrived <= Duration::from_millis(50), "the urgent request takes the next slot: {:?}", granted - arrived);
}

#[tokio::test(start_paused = true)]
async fn a_caller_that_stops_waiting_gives_its_place_to_the_next() {
    let budget = paced(10.0);
    budget.permit().await;
    let start = Instant::now();
    let gone = tokio::spawn({
        let budget = budget.clone();
        with_priority(Priority::Urgent, async move { budget.permit().await })
    });
    tokio::task::yield_now().await;
    let next = tokio::spawn({
        let budget = budget.clone();
        with_priority(Priority::Bulk, async move { budget.permit().await })
    });
    tokio::task::yield_now().await;
    gone.abort();
    next.await.unwrap();
    assert_eq!(Instant::now() - start, Duration::from_millis(100));
    assert_eq!(Priority::ALL.map(|p| budget.snapshot().waiting(p)), [0, 0, 0]);
}

#[tokio::test(start_paused = true)]
async fn permits_are_evenly_spaced_at_the_rate() {
    let budget = paced(4.0);
    let start = Instant::now();
    for _ in 0..5 {
        budget.permit().await;
    }
    assert_eq!(Instant::now() - start, Duration::from_secs(1), "the first at once, then one every 250 ms");
    tokio::time::advance(Duration::from_secs(10)).await;
    let idle_until = Instant::now();
    assert!(!budget.permit().await.waited, "after idleness the first request goes at once");
    budget.permit().await;
    assert_eq!(Instant::now() - idle_until, Duration::from_millis(250), "and idleness saved up no burst");
}

#[tokio::test(start_paused = true)]
async fn a_429_holds_every_waiter_until_its_pause_is_over_and_cuts_the_rate() {
    let budget = paced(10.0);
    let first = budget.permit().await;
    let pause_ends = Instant::now() + Duration::from_secs(3);
    budget.answered(&first, Verdict::TooFast { until: Some(pause_ends) });
    budget.permit().await;
    assert_eq!(Instant::now(), pause_ends);
    assert_eq!(budget.rate(), Some(7.0));
}

#[tokio::test(start_paused = true)]
async fn without_a_limit_permits_are_granted_at_once() {
    let budget = Budget::new(RateLimit::Unlimited);
    let start = Instant::now();
    for _ in 0..100 {
        assert!(!budget.permit().await.waited);
    }
    assert_eq!(Instant::now(), start);
    budget.start_from(at_429(40.0));
    assert_eq!(budget.snapshot().rate, None);
}

#[test]
fn the_rate_climbs_by_one_per_second_of_full_use_and_not_while_idle() {
    let mut pace = Pace::new(None);
    pace.start_from(at_429(10.0));
    let now = Instant::now();
    for _ in 0..10 {
        pace.accepted(&permit_at(now, true));
    }
    // (A little under 11: each step is 1/rate of a rate that grows along the way.)
    assert!((pace.rate - 11.0).abs() < 0.05, "{}", pace.rate);
    let climbed = pace.rate;
    for _ in 0..100 {
        pace.accepted(&permit_at(now, false));
    }
    assert_eq!(pace.rate, climbed, "requests that did not wait for a slot earn nothing");
}

#[test]
fn a_new_budget_probes_quickly_until_the_first_429() {
    let mut pace = Pace::new(None);
    assert_eq!((pace.rate, pace.probing), (START_RATE, true));
    let now = Instant::now();
    for _ in 0..10 {
        pace.accepted(&permit_at(now, true));
    }
    assert_eq!(pace.rate, START_RATE + 10.0 * PROBE_GAIN);
    assert!(pace.too_fast(&permit_at(now, true), now + Duration::from_millis(1)));
    assert_eq!((pace.rate, pace.probing), ((START_RATE + 10.0 * PROBE_GAIN) * DECREASE, false));
}

#[test]
fn a_429_cuts_the_rate_once_per_episode() {
    let mut pace = Pace::new(None);
    pace.start_from(at_429(20.0));
    let t0 = Instant::now();
    let (early, late) = (permit_at(t0, true), permit_at(t0, true));
    assert!(pace.too_fast(&early, t0 + Duration::from_millis(10)));
    assert!(!pace.too_fast(&late, t0 + Duration::from_millis(12)), "sent before the cut: the same episode");
    pace.accepted(&late);
    assert!((pace.rate - 14.0).abs() < 1e-9, "{}", pace.rate);
    assert!(pace.too_fast(&permit_at(t0 + Duration::from_millis(20), true), t0 + Duration::from_millis(30)));
    assert!((pace.rate - 9.8).abs() < 1e-9, "{}", pace.rate);
}

#[test]
fn the_rate_stays_between_its_floor_and_its_ceiling() {
    let now = Instant::now();
    let mut pace = Pace::new(Some(8.0));
    for _ in 0..100 {
        pace.accepted(&permit_at(now, true));
    }
    assert_eq!(pace.rate, 8.0);
    for i in 0..100 {
        pace.too_fast(&permit_at(now + Duration::from_secs(i), true), now + Duration::from_secs(i) + Duration::from_millis(1));
    }
    assert_eq!(pace.rate, MIN_RATE);
    let mut slow = Pace::new(Some(0.2));
    assert_eq!(slow.rate, 0.2, "a ceiling below the cautious start wins");
    slow.start_from(at_429(1e9));
    assert_eq!(slow.rate, 0.2);
    slow.start_from(without_429(f64::NAN));
    assert_eq!(slow.rate, 0.2);
}

/// The simulator's limit: a token bucket whose burst is a second's worth of requests.
struct Bucket {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + (now - self.at).as_secs_f64() * self.rate).min(self.rate);
        self.at = now;
        let admitted = self.tokens >= 1.0;
        if admitted {
            self.tokens -= 1.0;
        }
        admitted
    }
}

#[derive(Default)]
struct Tally {
    admitted: AtomicU64,
    refused: AtomicU64,
}

/// A backfill reader against `bucket` until `until`: 5 ms each way, 50 ms to write a page,
/// and on a 429 the client's pause (`Retry-After: 1`) before trying again.
async fn read_until(budget: Arc<Budget>, bucket: Arc<Mutex<Bucket>>, tally: Arc<Tally>, until: Instant) {
    with_priority(Priority::Bulk, async move {
        while Instant::now() < until {
            let permit = budget.permit().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
            let admitted = bucket.lock().unwrap().take();
            tokio::time::sleep(Duration::from_millis(5)).await;
            if admitted {
                tally.admitted.fetch_add(1, Ordering::Relaxed);
                budget.answered(&permit, Verdict::Accepted);
                tokio::time::sleep(Duration::from_millis(50)).await;
            } else {
                tally.refused.fetch_add(1, Ordering::Relaxed);
                let pause_ends = Instant::now() + Duration::from_secs(1);
                budget.answered(&permit, Verdict::TooFast { until: Some(pause_ends) });
                tokio::time::sleep_until(pause_ends).await;
            }
        }
    })
    .await
}

/// Four readers for `seconds` against a limit of `limit`: (share of the limit used, share of
/// requests answered 429).
async fn load(budget: &Arc<Budget>, bucket: &Arc<Mutex<Bucket>>, seconds: u64) -> (f64, f64) {
    let tally = Arc::new(Tally::default());
    let until = Instant::now() + Duration::from_secs(seconds);
    let readers: Vec<_> = (0..4).map(|_| tokio::spawn(read_until(budget.clone(), bucket.clone(), tally.clone(), until))).collect();
    for reader in readers {
        reader.await.unwrap();
    }
    let (admitted, refused) = (tally.admitted.load(Ordering::Relaxed) as f64, tally.refused.load(Ordering::Relaxed) as f64);
    let limit = bucket.lock().unwrap().rate;
    (admitted / (limit * seconds as f64), refused / (admitted + refused))
}

#[tokio::test(start_paused = true)]
async fn against_a_token_bucket_the_budget_uses_most_of_the_limit_and_rarely_meets_a_429() {
    let budget = Arc::new(Budget::new(RateLimit::Adaptive { ceiling: None }));
    let bucket = Arc::new(Mutex::new(Bucket { rate: 20.0, tokens: 20.0, at: Instant::now() }));
    let (used, refused) = load(&budget, &bucket, 60).await;
    assert!(used >= 0.9, "used {used:.3} of the limit in the first minute, from the cautious start");
    assert!(refused <= 0.05, "{refused:.3} of requests answered 429");
    let rate = budget.rate().unwrap();
    assert!((14.0..=30.0).contains(&rate), "the rate found for a limit of 20: {rate}");

    bucket.lock().unwrap().rate = 40.0;
    let (used, refused) = load(&budget, &bucket, 60).await;
    assert!(used >= 0.85 && refused <= 0.05, "after the limit doubled: used {used:.3}, 429s {refused:.3}");
    assert!(budget.rate().unwrap() > 30.0, "the rate follows the limit up: {:?}", budget.rate());
}

#[test]
fn a_rate_learned_without_a_429_is_a_floor_the_next_start_keeps_probing_from() {
    let mut pace = Pace::new(None);
    pace.start_from(without_429(8.0));
    assert_eq!((pace.rate, pace.probing), (8.0, true));
    let now = Instant::now();
    for _ in 0..10 {
        pace.accepted(&permit_at(now, true));
    }
    assert_eq!(pace.rate, 8.0 + 10.0 * PROBE_GAIN, "slow start goes on from the floor");
    assert_eq!(pace.learned(), without_429(pace.rate), "still only a floor");
    assert!(pace.too_fast(&permit_at(now, true), now + Duration::from_millis(1)));
    assert!(pace.learned().found_at_429, "the first 429 makes it the limit");
}

#[test]
fn a_rate_found_at_a_429_starts_in_additive_increase() {
    let mut pace = Pace::new(None);
    pace.start_from(at_429(8.0));
    assert_eq!((pace.rate, pace.probing), (8.0, false));
    let now = Instant::now();
    for _ in 0..8 {
        pace.accepted(&permit_at(now, true));
    }
    assert!((pace.rate - 9.0).abs() < 0.05, "one more a second of full use: {}", pace.rate);
    assert_eq!(pace.learned(), at_429(pace.rate));
}

/// `count` requests sent by four workers back to back (2 ms each way) through `budget`,
/// against an API that never answers 429: how long they take.
async fn drain(budget: Arc<Budget>, count: u64) -> Duration {
    let sent = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (budget, sent) = (budget.clone(), sent.clone());
            tokio::spawn(with_priority(Priority::Urgent, async move {
                while sent.fetch_add(1, Ordering::Relaxed) < count {
                    let permit = budget.permit().await;
                    tokio::time::sleep(Duration::from_millis(4)).await;
                    budget.answered(&permit, Verdict::Accepted);
                }
            }))
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    started.elapsed()
}

/// The case: a first small `sync` climbed to 8/s without meeting a limit; 1,000
/// write-backs queued after the next start drained at 27/s, in additive increase from 8.
#[tokio::test(start_paused = true)]
async fn after_a_start_from_a_floor_a_thousand_write_backs_drain_in_seconds_not_half_a_minute() {
    let floor = Arc::new(Budget::new(RateLimit::Adaptive { ceiling: None }));
    floor.start_from(without_429(8.0));
    let probing = drain(floor.clone(), 1_000).await;
    let limit = Arc::new(Budget::new(RateLimit::Adaptive { ceiling: None }));
    limit.start_from(at_429(8.0));
    let additive = drain(limit, 1_000).await;
    assert!(probing < Duration::from_secs(12), "from a floor the rate keeps climbing (about 65% a second): {probing:?}");
    assert!(additive > Duration::from_secs(25), "from a limit found at a 429 it climbs by 1/s: {additive:?}");
    assert!(floor.rate().unwrap() > 100.0, "{:?}", floor.rate());
}

#[test]
fn priorities_go_most_urgent_first_under_their_metrics_labels() {
    assert_eq!(Priority::ALL.map(Priority::label), ["urgent", "normal", "bulk"]);
    assert_eq!(Priority::ALL.map(Priority::index), [0, 1, 2]);
}
