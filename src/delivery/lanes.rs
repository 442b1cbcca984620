//! Per-record lanes and the committed position: the bookkeeping of one delivery, without I/O.
//!
//! Events of one record (its lane) are sent one at a time, in id order; lanes take turns for
//! the delivery's parallel slots. A lane whose head failed sleeps through its backoff without
//! holding a slot, so a record the endpoint keeps refusing does not slow the others. The
//! position is the largest id with every tracked event at or below it done, so a crash sends
//! again only events that might not have arrived.

use std::{
    cmp::Reverse,
    collections::{BTreeSet, BinaryHeap, HashMap, VecDeque},
    sync::Arc,
};

use tokio::time::Instant;

/// One record's lane. Requeued dead letters travel in lanes of their own, apart from the
/// live stream (they are older than it, and must not hold it up).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LaneKey {
    pub object_type: Arc<str>,
    pub object_key: Arc<str>,
    pub requeued: bool,
}

/// Something to send: an event, or a dead letter queued again.
#[derive(Clone, Debug)]
pub struct Job {
    pub event_id: i64,
    pub event_type: Arc<str>,
    pub body: Arc<str>,
}

#[derive(Debug, Default)]
struct Lane {
    jobs: VecDeque<Job>,
    /// Attempts made at the head job.
    attempts: u32,
    /// The head is being sent or sleeps through a backoff: not ready.
    busy: bool,
}

/// The lanes of one delivery, and what its position may be.
#[derive(Debug, Default)]
pub struct Lanes {
    lanes: HashMap<LaneKey, Lane>,
    ready: VecDeque<LaneKey>,
    sleeping: BinaryHeap<Reverse<(Instant, LaneKey)>>,
    /// Live events read and not yet done: they hold the position back.
    pending: BTreeSet<i64>,
    /// Every event up to here has been read (taken into a lane, or not matching).
    read_to: i64,
}

impl Lanes {
    /// Lanes for a delivery whose committed position is `position`.
    pub fn new(position: i64) -> Lanes {
        Lanes { read_to: position, ..Lanes::default() }
    }

    /// Adds a job at the end of its lane. Live events (not requeued) hold the position back
    /// until they are done.
    pub fn push(&mut self, key: LaneKey, job: Job) {
        if !key.requeued {
            self.pending.insert(job.event_id);
        }
        let lane = self.lanes.entry(key.clone()).or_default();
        lane.jobs.push_back(job);
        if lane.jobs.len() == 1 && !lane.busy {
            self.ready.push_back(key);
        }
    }

    /// Every event up to `id` has been read.
    pub fn read_to(&mut self, id: i64) {
        self.read_to = self.read_to.max(id);
    }

    /// Where reading goes on from.
    pub fn read_position(&self) -> i64 {
        self.read_to
    }

    /// Live events read and not done yet (the window).
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The largest id with every live event at or below it done.
    pub fn position(&self) -> i64 {
        self.pending.first().map_or(self.read_to, |first| first - 1)
    }

    /// The next lane whose head may be sent now (its backoff over), with the head and the
    /// attempts made at it so far; the lane is busy until [`Lanes::done`] or [`Lanes::retry`].
    pub fn next_ready(&mut self, now: Instant) -> Option<(LaneKey, Job, u32)> {
        while let Some(Reverse((at, _))) = self.sleeping.peek() {
            if *at > now {
                break;
            }
            let Reverse((_, key)) = self.sleeping.pop().expect("peeked");
            if let Some(lane) = self.lanes.get_mut(&key) {
                lane.busy = false;
                self.ready.push_back(key);
            }
        }
        let key = self.ready.pop_front()?;
        let lane = self.lanes.get_mut(&key).expect("a ready lane exists");
        lane.busy = true;
        let job = lane.jobs.front().expect("a ready lane has a job").clone();
        Some((key, job, lane.attempts))
    }

    /// The lane's head is done (accepted, or given up on): the next job of the lane is ready.
    pub fn done(&mut self, key: &LaneKey) {
        let Some(lane) = self.lanes.get_mut(key) else { return };
        if let Some(job) = lane.jobs.pop_front() {
            if !key.requeued {
                self.pending.remove(&job.event_id);
            }
        }
        lane.attempts = 0;
        lane.busy = false;
        if lane.jobs.is_empty() {
            self.lanes.remove(key);
        } else {
            self.ready.push_back(key.clone());
        }
    }

    /// The lane's head failed an attempt: it sleeps until `at`. Returns the attempts made.
    pub fn retry(&mut self, key: &LaneKey, at: Instant) -> u32 {
        let Some(lane) = self.lanes.get_mut(key) else { return 0 };
        lane.attempts += 1;
        lane.busy = true;
        self.sleeping.push(Reverse((at, key.clone())));
        lane.attempts
    }

    /// Attempts made at the lane's head so far.
    pub fn attempts(&self, key: &LaneKey) -> u32 {
        self.lanes.get(key).map_or(0, |l| l.attempts)
    }

    /// When the earliest sleeping lane wakes.
    pub fn next_wake(&self) -> Option<Instant> {
        self.sleeping.peek().map(|Reverse((at, _))| *at)
    }

    /// Drops every job (the delivery stops: what was not done is read again next time).
    pub fn clear(&mut self) {
        let position = self.position();
        *self = Lanes::new(position);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn key(record: &str) -> LaneKey {
        LaneKey { object_type: "deal".into(), object_key: record.into(), requeued: false }
    }

    fn job(id: i64) -> Job {
        Job { event_id: id, event_type: "deal.updated".into(), body: "{}".into() }
    }

    #[test]
    fn one_record_sends_one_event_at_a_time_in_id_order_while_other_records_go_on() {
        let now = Instant::now();
        let mut lanes = Lanes::new(0);
        lanes.push(key("a"), job(1));
        lanes.push(key("a"), job(2));
        lanes.push(key("b"), job(3));
        let (a, first, _) = lanes.next_ready(now).unwrap();
        let (b, other, _) = lanes.next_ready(now).unwrap();
        assert_eq!((first.event_id, other.event_id), (1, 3));
        assert!(lanes.next_ready(now).is_none(), "event 2 waits for event 1");
        lanes.done(&b);
        lanes.done(&a);
        let (_, second, _) = lanes.next_ready(now).unwrap();
        assert_eq!(second.event_id, 2);
    }

    #[test]
    fn the_position_stops_below_the_first_event_not_done() {
        let now = Instant::now();
        let mut lanes = Lanes::new(10);
        for (record, id) in [("a", 11), ("b", 12), ("c", 14)] {
            lanes.push(key(record), job(id));
        }
        lanes.read_to(20);
        assert_eq!(lanes.position(), 10);
        let (a, _, _) = lanes.next_ready(now).unwrap();
        let (b, _, _) = lanes.next_ready(now).unwrap();
        lanes.done(&b);
        assert_eq!(lanes.position(), 10, "12 is done but 11 is not");
        lanes.done(&a);
        assert_eq!(lanes.position(), 13, "11 and 12 done; 13 did not match; 14 is pending");
        let (c, _, _) = lanes.next_ready(now).unwrap();
        lanes.done(&c);
        assert_eq!(lanes.position(), 20, "all read events done");
    }

    #[test]
    fn a_failed_head_sleeps_through_its_backoff_without_blocking_other_lanes() {
        let now = Instant::now();
        let mut lanes = Lanes::new(0);
        lanes.push(key("a"), job(1));
        lanes.push(key("b"), job(2));
        let (a, _, _) = lanes.next_ready(now).unwrap();
        assert_eq!(lanes.retry(&a, now + Duration::from_secs(5)), 1);
        let (_, other, _) = lanes.next_ready(now).unwrap();
        assert_eq!(other.event_id, 2);
        assert!(lanes.next_ready(now + Duration::from_secs(1)).is_none(), "still sleeping");
        assert_eq!(lanes.next_wake(), Some(now + Duration::from_secs(5)));
        let (_, again, attempts) = lanes.next_ready(now + Duration::from_secs(5)).unwrap();
        assert_eq!((again.event_id, attempts), (1, 1));
    }

    #[test]
    fn requeued_dead_letters_never_hold_the_position_back() {
        let mut lanes = Lanes::new(5);
        lanes.push(LaneKey { requeued: true, ..key("a") }, job(2));
        lanes.read_to(9);
        assert_eq!(lanes.position(), 9);
        assert_eq!(lanes.pending(), 0);
    }
}
