//! The account the simulator starts with: records spread over `history_days`, denser
//! towards the present, children created after the parents they point at, and on purpose
//! many records sharing one `created_at` or `updated_at` millisecond (imports, bulk edits),
//! so pages often split such a group (docs/correctness.md, question 4).
//!
//! It hands back what it made (`Generated`) for `state` to keep, and knows nothing of
//! the rest of the simulator's state.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::Value;

use crate::Resource;

use super::{
    build::{self, Account, Source, Stamp, DAY_MS, DEAL_STAGES, LEAD_STATUSES},
    fake::Fake,
    table::{Table, Tables},
};

const HOUR_MS: i64 = 3_600_000;
/// The newest records of each kind are never archived at start, so tests and demos can
/// archive "the first few keys" without surprises.
const NEVER_ARCHIVED_NEWEST: usize = 25;

/// The account as generated, for the simulator's state to keep.
pub(super) struct Generated {
    /// The seeded generator, drawn from further by new records and random mutations, so a
    /// seed replays the same history.
    pub fake: Fake,
    pub account: Account,
    pub tables: Tables,
    /// Partner team key → its members' keys.
    pub teams: BTreeMap<String, BTreeSet<String>>,
}

impl Generated {
    fn table(&self, kind: Resource) -> &Table {
        self.tables.get(kind)
    }

    fn table_mut(&mut self, kind: Resource) -> &mut Table {
        self.tables.get_mut(kind)
    }
}

/// Generates the account from `seed`: about `records` records over `history_days` days
/// that end at `anchor` (epoch ms).
pub(super) fn account(seed: u64, records: usize, history_days: u32, anchor: i64) -> Generated {
    let mut fake = Fake::new(seed);
    let account = Account::new(&mut fake);
    let mut data = Generated { fake, account, tables: Tables::default(), teams: BTreeMap::new() };
    populate(&mut data, records, history_days, anchor);
    data
}

/// `(created_at, key)` of the records of one kind, oldest first.
type Timeline = Vec<(i64, String)>;

struct Clockwork {
    anchor: i64,
    history: i64,
}

impl Clockwork {
    /// `count` creation times, oldest first: denser towards the present, with bursts of
    /// records created in the very same millisecond.
    fn created(&self, f: &mut Fake, count: usize) -> Vec<i64> {
        let mut times: Vec<i64> = (0..count).map(|_| self.anchor - (self.history as f64 * f.unit().powf(1.8)) as i64).collect();
        times.sort_unstable();
        let mut i = 0;
        while i < times.len() {
            if f.chance(0.05) {
                let len = f.between(2, 16) as usize;
                let t = times[i];
                times.iter_mut().skip(i + 1).take(len - 1).for_each(|x| *x = t);
                i += len;
            } else {
                i += 1;
            }
        }
        times
    }

    /// Moments of bulk edits: every record updated by one shares its `updated_at`.
    fn bulk_edits(&self, f: &mut Fake, count: usize) -> Vec<i64> {
        let mut moments: Vec<i64> = (0..2 + count / 150).map(|_| self.anchor - f.between(0, self.history)).collect();
        moments.sort_unstable();
        moments
    }

    /// An `updated_at` for a record created at `created`: often never changed, sometimes
    /// part of a bulk edit, otherwise some time later.
    fn updated(&self, f: &mut Fake, created: i64, bulk: &[i64]) -> i64 {
        let u = f.unit();
        if u < 0.35 {
            created
        } else if u < 0.45 {
            let first = bulk.partition_point(|b| *b < created);
            if first < bulk.len() {
                bulk[f.between(first as i64, bulk.len() as i64 - 1) as usize]
            } else {
                created
            }
        } else {
            created + ((self.anchor - created).max(0) as f64 * f.unit().powf(1.5)) as i64
        }
    }
}

/// A parent created no later than `created` (or the oldest parent, in which case the
/// child's creation moves up to the parent's).
fn parent_before<'a>(f: &mut Fake, parents: &'a Timeline, created: i64) -> Option<(i64, &'a str)> {
    if parents.is_empty() {
        return None;
    }
    let eligible = parents.partition_point(|(c, _)| *c <= created);
    let (c, key) = &parents[f.between(0, eligible.max(1) as i64 - 1) as usize];
    Some((created.max(*c), key.as_str()))
}

fn value(data: &Generated, kind: Resource, key: &str) -> Value {
    data.table(kind).get(key).expect("parents exist").value()
}

/// Archives some older records, as a real account has a few.
fn maybe_archive(f: &mut Fake, record: &mut Value, index: usize, count: usize) {
    if index + NEVER_ARCHIVED_NEWEST < count && f.chance(0.03) {
        record["archived"] = Value::Bool(true);
    }
}

/// Fills the tables and teams of `data` with `records` records; `anchor` is the end of
/// the history.
fn populate(data: &mut Generated, records: usize, history_days: u32, anchor: i64) {
    let share = |p: f64| if records == 0 { 0 } else { ((records as f64 * p).round() as usize).max(1) };
    let clock = Clockwork { anchor, history: i64::from(history_days) * DAY_MS };

    let groups = groups(data, &clock);
    let partnerships = partnerships(data, &clock, &groups, share(0.15));
    applications(data, &clock, &groups, &partnerships, share(0.05));
    let (customers, by_partnership) = customers(data, &clock, &partnerships, share(0.20));
    let of_partnership = |f: &mut Fake, partnership: &str, created: i64| -> Option<String> {
        let list: Vec<&String> = by_partnership.get(partnership)?.iter().filter(|(c, _)| *c <= created).map(|(_, k)| k).collect();
        (!list.is_empty()).then(|| list[f.between(0, list.len() as i64 - 1) as usize].clone())
    };

    simple_children(data, &clock, Resource::Deal, &partnerships, share(0.12), |data, p, created, stamp, i, count| {
        let customer = if data.fake.chance(0.3) { of_partnership(&mut data.fake, p["key"].as_str().unwrap_or(""), created) } else { None };
        let customer = customer.map(|k| value(data, Resource::Customer, &k));
        let age_days = (anchor - created) / DAY_MS;
        let stage = if age_days > 120 && data.fake.chance(0.85) {
            data.fake.pick(&["Closed Won", "Closed Lost"])
        } else {
            data.fake.pick(DEAL_STAGES)
        };
        let mut deal = build::deal(&mut data.fake, &data.account, p, customer.as_ref(), stage, stamp);
        maybe_archive(&mut data.fake, &mut deal, i, count);
        deal
    });
    simple_children(data, &clock, Resource::Lead, &partnerships, share(0.12), |data, p, created, stamp, i, count| {
        let f = &mut data.fake;
        let status = if (anchor - created) / DAY_MS > 90 && f.chance(0.8) {
            f.pick(&["closed won", "closed lost", "dead", "closed"])
        } else {
            f.pick(LEAD_STATUSES)
        };
        let approved = match (status, f.unit()) {
            ("closed won", u) if u < 0.8 => Some(true),
            (_, u) if u < 0.3 => Some(true),
            (_, u) if u < 0.45 => Some(false),
            _ => None,
        };
        let mut lead = build::lead(f, &data.account, p, status, approved, stamp);
        maybe_archive(&mut data.fake, &mut lead, i, count);
        lead
    });
    let actions = simple_children(data, &clock, Resource::Action, &partnerships, share(0.06), |data, p, created, stamp, i, count| {
        let customer = if data.fake.chance(0.5) { of_partnership(&mut data.fake, p["key"].as_str().unwrap_or(""), created) } else { None };
        let customer = customer.map(|k| value(data, Resource::Customer, &k));
        let mut action = build::action(&mut data.fake, &data.account, p, customer.as_ref(), stamp);
        maybe_archive(&mut data.fake, &mut action, i, count);
        action
    });
    let transactions = transactions(data, &clock, &customers, share(0.18));
    rewards(data, &clock, &transactions, &actions, share(0.12));
}

fn groups(data: &mut Generated, clock: &Clockwork) -> Vec<Value> {
    let count = data.fake.between(5, 10) as usize;
    let names = build::group_names(count);
    let mut groups = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let f = &mut data.fake;
        let created = clock.anchor - clock.history - (names.len() - i) as i64 * 7 * DAY_MS - f.between(0, DAY_MS);
        let updated = if f.chance(0.5) { created } else { f.between(created, clock.anchor) };
        let group = build::group(f, name, i == 0, Stamp::new(created, updated));
        groups.push(group.clone());
        data.table_mut(Resource::Group).insert(group);
    }
    groups
}

/// Partnerships with their teams and 0-3 members per team (the first being the partner).
fn partnerships(data: &mut Generated, clock: &Clockwork, groups: &[Value], count: usize) -> Timeline {
    let times = clock.created(&mut data.fake, count);
    let bulk = clock.bulk_edits(&mut data.fake, count);
    let mut timeline = Timeline::new();
    for (i, created) in times.iter().copied().enumerate() {
        let f = &mut data.fake;
        let group = if f.chance(0.4) { &groups[0] } else { &groups[f.between(0, groups.len() as i64 - 1) as usize] };
        let stamp = Stamp::new(created, clock.updated(f, created, &bulk));
        let mut partnership = build::partnership(f, &data.account, group, stamp);
        maybe_archive(f, &mut partnership, i, count);
        let team = partnership["team"]["key"].as_str().unwrap_or_default().to_owned();
        let members = match f.unit() {
            u if u < 0.3 => 0,
            u if u < 0.65 => 1,
            u if u < 0.85 => 2,
            _ => 3,
        };
        let mut keys = std::collections::BTreeSet::new();
        for m in 0..members {
            let f = &mut data.fake;
            let joined = if m == 0 { created } else { created + ((clock.anchor - created).max(0) as f64 * f.unit().powi(2)) as i64 };
            let stamp = Stamp::new(joined, clock.updated(f, joined, &bulk));
            let member = build::member(f, &team, (m == 0).then_some(&partnership), stamp);
            keys.insert(member["key"].as_str().unwrap_or_default().to_owned());
            data.table_mut(Resource::PartnerTeamMember).insert(member);
        }
        data.teams.insert(team, keys);
        timeline.push((created, partnership["key"].as_str().unwrap_or_default().to_owned()));
        data.table_mut(Resource::Partnership).insert(partnership);
    }
    timeline
}

/// Applications: approved ones became partnerships shortly after they were sent.
fn applications(data: &mut Generated, clock: &Clockwork, groups: &[Value], partnerships: &Timeline, count: usize) {
    let mut unused: Vec<usize> = (0..partnerships.len()).collect();
    for _ in 0..count {
        let f = &mut data.fake;
        let u = f.unit();
        let random_group = groups[f.between(0, groups.len() as i64 - 1) as usize].clone();
        let record = if u < 0.55 && !unused.is_empty() {
            let (became, key) = &partnerships[unused.swap_remove(f.between(0, unused.len() as i64 - 1) as usize)];
            let partnership = value(data, Resource::Partnership, key);
            let group = groups.iter().find(|g| g["key"] == partnership["group"]["key"]).unwrap_or(&random_group);
            let f = &mut data.fake;
            let stamp = Stamp::new(became - f.between(HOUR_MS, 7 * DAY_MS), *became);
            build::application(f, &data.account, group, Some(true), Some(&partnership), stamp)
        } else if u < 0.75 {
            let created = clock.anchor - (clock.history as f64 * f.unit().powf(1.5)) as i64;
            let decided = (created + f.between(HOUR_MS, 10 * DAY_MS)).min(clock.anchor);
            build::application(f, &data.account, &random_group, Some(false), None, Stamp::new(created, decided))
        } else {
            let created = clock.anchor - ((60 * DAY_MS).min(clock.history) as f64 * f.unit().powi(2)) as i64;
            build::application(f, &data.account, &random_group, None, None, Stamp::new(created, created))
        };
        data.table_mut(Resource::Application).insert(record);
    }
}

/// Customers, also indexed by the partnership they belong to.
fn customers(data: &mut Generated, clock: &Clockwork, partnerships: &Timeline, count: usize) -> (Timeline, HashMap<String, Timeline>) {
    let mut by_partnership: HashMap<String, Timeline> = HashMap::new();
    let timeline = simple_children(data, clock, Resource::Customer, partnerships, count, |data, p, created, stamp, i, count| {
        let mut customer = build::customer(&mut data.fake, p, stamp);
        maybe_archive(&mut data.fake, &mut customer, i, count);
        let partnership = p["key"].as_str().unwrap_or_default().to_owned();
        by_partnership.entry(partnership).or_default().push((created, customer["key"].as_str().unwrap_or_default().to_owned()));
        customer
    });
    (timeline, by_partnership)
}

/// Records of `kind` each hanging off one parent created before them; `make` gets the
/// parent record, the creation time, the stamp, and the record's index and count.
fn simple_children(
    data: &mut Generated,
    clock: &Clockwork,
    kind: Resource,
    parents: &Timeline,
    count: usize,
    mut make: impl FnMut(&mut Generated, &Value, i64, Stamp, usize, usize) -> Value,
) -> Timeline {
    let times = clock.created(&mut data.fake, count);
    let bulk = clock.bulk_edits(&mut data.fake, count);
    let mut timeline = Timeline::new();
    for (i, created) in times.into_iter().enumerate() {
        let Some((created, parent)) = parent_before(&mut data.fake, parents, created) else { break };
        let parent_kind = if kind == Resource::Transaction { Resource::Customer } else { Resource::Partnership };
        let parent = value(data, parent_kind, parent);
        let stamp = Stamp::new(created, clock.updated(&mut data.fake, created, &bulk));
        let record = make(data, &parent, created, stamp, i, count);
        timeline.push((created, record["key"].as_str().unwrap_or_default().to_owned()));
        data.table_mut(kind).insert(record);
    }
    timeline.sort_unstable();
    timeline
}

fn transactions(data: &mut Generated, clock: &Clockwork, customers: &Timeline, count: usize) -> Timeline {
    simple_children(data, clock, Resource::Transaction, customers, count, |data, customer, _, stamp, i, count| {
        let mut txn = build::transaction(&mut data.fake, &data.account, customer, stamp);
        maybe_archive(&mut data.fake, &mut txn, i, count);
        txn
    })
}

/// Rewards for transactions (mostly) and actions, their status following their age.
fn rewards(data: &mut Generated, clock: &Clockwork, transactions: &Timeline, actions: &Timeline, count: usize) {
    let times = clock.created(&mut data.fake, count);
    let bulk = clock.bulk_edits(&mut data.fake, count);
    for (i, created) in times.into_iter().enumerate() {
        let from_transaction = data.fake.chance(0.75) || actions.is_empty();
        let (source_kind, sources) =
            if from_transaction && !transactions.is_empty() { (Resource::Transaction, transactions) } else { (Resource::Action, actions) };
        let Some((created, source_key)) = parent_before(&mut data.fake, sources, created) else { return };
        let source = value(data, source_kind, source_key);
        let (partnership_key, customer_key) = match source_kind {
            Resource::Transaction => (source["partnership_key"].clone(), source["customer_key"].clone()),
            _ => (source["partnership_key"].clone(), source["customer"]["key"].clone()),
        };
        let partnership = value(data, Resource::Partnership, partnership_key.as_str().unwrap_or(""));
        let customer = customer_key.as_str().and_then(|k| data.table(Resource::Customer).get(k)).map(|r| r.value());
        let f = &mut data.fake;
        let age_days = (clock.anchor - created) / DAY_MS;
        let status = match (age_days, f.unit()) {
            (a, u) if a > 60 => {
                ["paid", "paid", "paid", "paid", "paid", "paid", "paid", "paid", "declined", "approved"][(u * 10.0) as usize]
            }
            (a, u) if a > 14 => {
                ["approved", "approved", "approved", "approved", "approved", "pending", "pending", "pending", "paid", "declined"]
                    [(u * 10.0) as usize]
            }
            (_, u) => ["hold", "hold", "hold", "hold", "hold", "pending", "pending", "pending", "pending", "declined"][(u * 10.0) as usize],
        };
        let stamp = Stamp::new(created, clock.updated(f, created, &bulk));
        let source = if source_kind == Resource::Transaction { Source::Transaction(&source) } else { Source::Action(&source) };
        let mut reward = build::reward(f, &data.account, source, &partnership, customer.as_ref(), status, stamp);
        maybe_archive(&mut data.fake, &mut reward, i, count);
        data.table_mut(Resource::Reward).insert(reward);
    }
}
