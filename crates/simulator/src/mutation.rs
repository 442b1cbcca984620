//! Changes to the simulated account: the ones tests ask for by name, and random ones for
//! the background generator. Each reports the events a mirror diffing the record before
//! and after should emit, so tests can compare the mirror's events with the truth, and
//! sends them as webhooks to the subscribers of their names.

use serde_json::{json, Map, Value};

use crate::Resource;

use super::{
    build::{self, Source, Stamp, DEAL_STAGES, LEAD_STATUSES, TAGS},
    fake::Fake,
    state::State,
};

/// One change to the account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// A new record (new key, `created_at = updated_at = now`).
    Create(Resource),
    /// An ordinary field changes (a name, an email, an amount): only `<object>.updated`.
    Touch {
        kind: Resource,
        key: String,
    },
    /// The deal moves to another stage.
    DealStage {
        key: String,
    },
    PartnershipTags {
        key: String,
        add: Vec<String>,
        remove: Vec<String>,
    },
    /// The partnership moves to another group (`group` and so `group_key` change).
    PartnershipGroup {
        key: String,
    },
    LeadDecision {
        key: String,
        approved: bool,
    },
    /// The lead moves to another status.
    LeadStatus {
        key: String,
    },
    ApplicationDecision {
        key: String,
        approved: bool,
    },
    /// hold → pending → approved (or declined) → paid; a paid reward can be clawed back
    /// (declined) and a declined one reconsidered (pending), so every reward can move.
    RewardStatus {
        key: String,
    },
    /// `approved` flips; `updated_at` changes, `created_at` doesn't.
    TransactionUpdate {
        key: String,
    },
    /// `archived = true` (what DELETE does in the API).
    Archive {
        kind: Resource,
        key: String,
    },
    /// `archived = false`.
    Restore {
        kind: Resource,
        key: String,
    },
    /// Gone from every list and single GET.
    HardDelete {
        kind: Resource,
        key: String,
    },
    /// A new member in a partner team.
    TeamMemberJoin {
        team_key: String,
    },
}

/// What a mutation did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    pub kind: Resource,
    pub key: String,
    /// The events a mirror should emit for it, e.g. `["deal.updated", "deal.stage_updated"]`.
    /// Only what really changed: a decision repeating the current one is just `updated`,
    /// and hard-deleting an already archived record emits nothing new.
    pub event_types: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum MutationError {
    #[error("no {kind} record with key `{key}`")]
    NotFound { kind: Resource, key: String },
    #[error("cannot change {kind} `{key}` that way: {reason}")]
    NotApplicable { kind: Resource, key: String, reason: String },
}

fn applied(kind: Resource, key: &str, events: &[&str]) -> Applied {
    Applied { kind, key: key.to_owned(), event_types: events.iter().map(|e| format!("{}.{e}", kind.singular())).collect() }
}

fn not_applicable(kind: Resource, key: &str, reason: &str) -> MutationError {
    MutationError::NotApplicable { kind, key: key.to_owned(), reason: reason.to_owned() }
}

/// Relative frequency of each kind among new and changed records (the data's shares).
const KIND_WEIGHTS: &[(Resource, i64)] = &[
    (Resource::Partnership, 15),
    (Resource::Customer, 20),
    (Resource::Deal, 12),
    (Resource::Lead, 12),
    (Resource::Transaction, 18),
    (Resource::Reward, 12),
    (Resource::Action, 6),
    (Resource::Application, 5),
    (Resource::Group, 1),
    (Resource::PartnerTeamMember, 4),
];

fn weighted_kind(f: &mut Fake) -> Resource {
    let total: i64 = KIND_WEIGHTS.iter().map(|(_, w)| w).sum();
    let mut roll = f.between(0, total - 1);
    for (kind, weight) in KIND_WEIGHTS {
        if roll < *weight {
            return *kind;
        }
        roll -= weight;
    }
    Resource::Customer
}

impl State {
    /// Applies one change and sends its webhooks.
    pub fn apply(&mut self, mutation: Mutation, now: i64) -> Result<Applied, MutationError> {
        // A hard-deleted record is announced as it was.
        let gone = match &mutation {
            Mutation::HardDelete { kind, key } if self.webhooks.any_live() => self.table(*kind).get(key).map(|r| r.raw().to_owned()),
            _ => None,
        };
        let applied = self.mutate(mutation, now)?;
        self.announce(applied.kind, &applied.key, &applied.event_types, gone.as_deref());
        Ok(applied)
    }

    fn mutate(&mut self, mutation: Mutation, now: i64) -> Result<Applied, MutationError> {
        use Resource::*;
        match mutation {
            Mutation::Create(PartnerTeamMember) => {
                let teams = self.teams.len();
                let team =
                    (teams > 0).then(|| self.fake.between(0, teams as i64 - 1) as usize).and_then(|i| self.teams.keys().nth(i).cloned());
                let team = team.ok_or_else(|| not_applicable(PartnerTeamMember, "", "there is no partner team"))?;
                self.join_team(&team, now)
            }
            Mutation::Create(kind) => self.create(kind, now),
            Mutation::Touch { kind, key } => {
                self.change(kind, &key, now, |f, map| touch(f, kind, map))?;
                Ok(applied(kind, &key, &["updated"]))
            }
            Mutation::DealStage { key } => {
                self.change(Deal, &key, now, |f, map| {
                    let stage = other(f, DEAL_STAGES, map.get("stage"));
                    let lost = if stage == "Closed Lost" { Value::from("No decision") } else { Value::Null };
                    map.insert("stage".into(), stage.into());
                    map.insert("lost_reason".into(), lost);
                })?;
                Ok(applied(Deal, &key, &["updated", "stage_updated"]))
            }
            Mutation::PartnershipTags { key, add, remove } => {
                let changed = self.change(Partnership, &key, now, |_, map| {
                    let before: Vec<String> = map
                        .get("tags")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|t| t.as_str().map(str::to_owned))
                        .collect();
                    let mut after: Vec<String> = before.iter().filter(|t| !remove.contains(t)).cloned().collect();
                    for tag in add {
                        if !after.contains(&tag) {
                            after.push(tag);
                        }
                    }
                    let changed = {
                        let (mut b, mut a) = (before.clone(), after.clone());
                        b.sort();
                        a.sort();
                        b != a
                    };
                    map.insert("tags".into(), json!(after));
                    changed
                })?;
                Ok(applied(Partnership, &key, if changed { &["updated", "tags_updated"] } else { &["updated"] }))
            }
            Mutation::PartnershipGroup { key } => {
                let current =
                    self.table(Partnership).get(&key).ok_or_else(|| not_found(Partnership, &key))?.value()["group"]["key"].clone();
                let (f, groups) = self.fake_and_table(Group);
                let target = groups.random_key_where(&mut f.rng, |g| !g.archived && g.value()["key"] != current);
                let target = target.or_else(|| {
                    groups
                        .newest_first()
                        .find(|g| !g.archived && g.value()["key"] != current)
                        .map(|g| g.value()["key"].as_str().unwrap_or("").to_owned())
                });
                let group = target.and_then(|k| groups.get(&k)).map(|g| build::group_ref(&g.value()));
                let group = group.ok_or_else(|| not_applicable(Partnership, &key, "there is no other live group"))?;
                self.change(Partnership, &key, now, |_, map| map.insert("group".into(), group))?;
                Ok(applied(Partnership, &key, &["updated", "group_updated"]))
            }
            Mutation::LeadDecision { key, approved } => {
                let before = self.change(Lead, &key, now, |_, map| map.insert("approved".into(), approved.into()))?;
                Ok(applied(Lead, &key, decision_events(before, approved)))
            }
            Mutation::LeadStatus { key } => {
                self.change(Lead, &key, now, |f, map| {
                    let status = other(f, LEAD_STATUSES, map.get("status"));
                    map.insert("status".into(), status.into());
                })?;
                Ok(applied(Lead, &key, &["updated", "status_updated"]))
            }
            Mutation::ApplicationDecision { key, approved } => {
                let before = self.change(Application, &key, now, |_, map| {
                    let reason = if approved { Value::Null } else { Value::from("Not a fit for the program") };
                    map.insert("decline_reason".into(), reason);
                    map.insert("approved".into(), approved.into())
                })?;
                Ok(applied(Application, &key, decision_events(before, approved)))
            }
            Mutation::RewardStatus { key } => {
                self.change(Reward, &key, now, |f, map| {
                    let next = match map.get("reward_status").and_then(Value::as_str) {
                        Some("hold") => "pending",
                        Some("pending") if f.chance(0.2) => "declined",
                        Some("pending") => "approved",
                        Some("approved") => "paid",
                        Some("paid") => "declined",
                        _ => "pending",
                    };
                    let invoice = build::invoice(f, next, map.get("invoice"), now);
                    map.insert("reward_status".into(), next.into());
                    map.insert("invoice".into(), invoice);
                })?;
                Ok(applied(Reward, &key, &["updated", "status_updated"]))
            }
            Mutation::TransactionUpdate { key } => {
                self.change(Transaction, &key, now, |_, map| {
                    let approved = map.get("approved").and_then(Value::as_bool).unwrap_or(false);
                    map.insert("approved".into(), (!approved).into());
                })?;
                Ok(applied(Transaction, &key, &["updated"]))
            }
            Mutation::Archive { kind, key } => self.set_archived(kind, &key, true, now),
            Mutation::Restore { kind, key } => self.set_archived(kind, &key, false, now),
            Mutation::HardDelete { kind, key } => {
                let row = self.table_mut(kind).remove(&key).ok_or_else(|| not_found(kind, &key))?;
                if kind == PartnerTeamMember {
                    self.teams.values_mut().for_each(|members| {
                        members.remove(&key);
                    });
                }
                Ok(applied(kind, &key, if row.archived { &[] } else { &["deleted"] }))
            }
            Mutation::TeamMemberJoin { team_key } => self.join_team(&team_key, now),
        }
    }

    /// Changes one record through `change`, stamping `updated_at = now`.
    fn change<R>(
        &mut self,
        kind: Resource,
        key: &str,
        now: i64,
        change: impl FnOnce(&mut Fake, &mut Map<String, Value>) -> R,
    ) -> Result<R, MutationError> {
        let (fake, table) = self.fake_and_table(kind);
        table.modify(key, now, |map| change(fake, map)).ok_or_else(|| not_found(kind, key))
    }

    fn set_archived(&mut self, kind: Resource, key: &str, archived: bool, now: i64) -> Result<Applied, MutationError> {
        let row = self.table(kind).get(key).ok_or_else(|| not_found(kind, key))?;
        if row.archived == archived {
            return Err(not_applicable(kind, key, if archived { "already archived" } else { "not archived" }));
        }
        self.change(kind, key, now, |_, map| map.insert("archived".into(), archived.into()))?;
        Ok(applied(kind, key, if archived { &["updated", "deleted"] } else { &["updated", "restored"] }))
    }

    fn join_team(&mut self, team: &str, now: i64) -> Result<Applied, MutationError> {
        if !self.teams.contains_key(team) {
            return Err(not_found(Resource::PartnerTeamMember, team));
        }
        let member = build::member(&mut self.fake, team, None, Stamp::new(now, now));
        let key = member["key"].as_str().unwrap_or_default().to_owned();
        self.table_mut(Resource::PartnerTeamMember).insert(member);
        self.teams.entry(team.to_owned()).or_default().insert(key.clone());
        Ok(applied(Resource::PartnerTeamMember, &key, &["created", "member_joined"]))
    }

    /// A random live (not archived) record of `kind`, or any record when none is live.
    fn random_parent(&mut self, kind: Resource) -> Option<Value> {
        let (f, table) = self.fake_and_table(kind);
        let key = table.random_key_where(&mut f.rng, |r| !r.archived).or_else(|| table.random_key(&mut f.rng).map(str::to_owned))?;
        table.get(&key).map(|r| r.value())
    }

    /// A new record of `kind` (not a team member), hanging off random live parents.
    fn create(&mut self, kind: Resource, now: i64) -> Result<Applied, MutationError> {
        use Resource::*;
        let stamp = Stamp::new(now, now);
        let missing = |parent: Resource| {
            not_applicable(kind, "", &format!("a new {} needs a {} and there is none", kind.singular(), parent.singular()))
        };
        let record = match kind {
            Group => {
                let name = format!("{} Partners", self.fake.company());
                build::group(&mut self.fake, &name, false, stamp)
            }
            Partnership => {
                let group = self.random_parent(Group).ok_or_else(|| missing(Group))?;
                let p = build::partnership(&mut self.fake, &self.account, &group, stamp);
                self.teams.insert(p["team"]["key"].as_str().unwrap_or_default().to_owned(), Default::default());
                p
            }
            Application => {
                let group = self.random_parent(Group).ok_or_else(|| missing(Group))?;
                build::application(&mut self.fake, &self.account, &group, None, None, stamp)
            }
            Customer => {
                let p = self.random_parent(Partnership).ok_or_else(|| missing(Partnership))?;
                build::customer(&mut self.fake, &p, stamp)
            }
            Deal | Action => {
                let p = self.random_parent(Partnership).ok_or_else(|| missing(Partnership))?;
                let (f, customers) = self.fake_and_table(Customer);
                let customer = customers
                    .random_key_where(&mut f.rng, |c| c.value()["partnership_key"] == p["key"])
                    .and_then(|k| customers.get(&k))
                    .map(|c| c.value());
                let customer = customer.filter(|_| self.fake.chance(0.5));
                if kind == Deal {
                    let stage = self.fake.pick(&DEAL_STAGES[..2]);
                    build::deal(&mut self.fake, &self.account, &p, customer.as_ref(), stage, stamp)
                } else {
                    build::action(&mut self.fake, &self.account, &p, customer.as_ref(), stamp)
                }
            }
            Lead => {
                let p = self.random_parent(Partnership).ok_or_else(|| missing(Partnership))?;
                build::lead(&mut self.fake, &self.account, &p, "open", None, stamp)
            }
            Transaction => {
                let c = self.random_parent(Customer).ok_or_else(|| missing(Customer))?;
                build::transaction(&mut self.fake, &self.account, &c, stamp)
            }
            Reward => self.new_reward(stamp)?,
            PartnerTeamMember => unreachable!("team members join a team"),
        };
        let key = record["key"].as_str().unwrap_or_default().to_owned();
        self.table_mut(kind).insert(record);
        Ok(applied(kind, &key, &["created"]))
    }

    fn new_reward(&mut self, stamp: Stamp) -> Result<Value, MutationError> {
        let from_transaction = self.fake.chance(0.75);
        let (source_kind, source) =
            match (from_transaction, self.random_parent(Resource::Transaction), self.random_parent(Resource::Action)) {
                (true, Some(t), _) | (false, Some(t), None) => (Resource::Transaction, t),
                (_, _, Some(a)) => (Resource::Action, a),
                (_, None, None) => {
                    return Err(not_applicable(Resource::Reward, "", "a new reward needs a transaction or an action and there is none"))
                }
            };
        let customer_key = if source_kind == Resource::Transaction { &source["customer_key"] } else { &source["customer"]["key"] };
        let customer = customer_key.as_str().and_then(|k| self.table(Resource::Customer).get(k)).map(|r| r.value());
        let partnership_key = source["partnership_key"].as_str().unwrap_or_default();
        let partnership = match self.table(Resource::Partnership).get(partnership_key) {
            Some(p) => p.value(),
            None => self.random_parent(Resource::Partnership).unwrap_or_else(|| json!({})),
        };
        let status = self.fake.pick(&["hold", "pending"]);
        let source = if source_kind == Resource::Transaction { Source::Transaction(&source) } else { Source::Action(&source) };
        Ok(build::reward(&mut self.fake, &self.account, source, &partnership, customer.as_ref(), status, stamp))
    }

    /// A random mutation, every variant turning up over time. The target may not suit it
    /// (nothing archived to restore); the caller then draws again.
    pub fn random_mutation(&mut self) -> Mutation {
        use Resource::*;
        let roll = self.fake.between(0, 99);
        let kind = weighted_kind(&mut self.fake);
        let key_of = |state: &mut State, kind: Resource, wanted: &dyn Fn(&super::table::Row) -> bool| {
            let (f, table) = state.fake_and_table(kind);
            table.random_key_where(&mut f.rng, wanted)
        };
        let any = |_: &super::table::Row| true;
        let chosen = match roll {
            0..=19 => Some(Mutation::Create(kind)),
            20..=44 => key_of(self, kind, &any).map(|key| Mutation::Touch { kind, key }),
            45..=52 => key_of(self, Deal, &any).map(|key| Mutation::DealStage { key }),
            53..=57 => key_of(self, Partnership, &any).map(|key| {
                let f = &mut self.fake;
                let add = if f.chance(0.7) { vec![f.pick(TAGS).to_owned()] } else { vec![] };
                let remove = if add.is_empty() || f.chance(0.3) { vec![f.pick(TAGS).to_owned()] } else { vec![] };
                Mutation::PartnershipTags { key, add, remove }
            }),
            58..=60 => key_of(self, Partnership, &any).map(|key| Mutation::PartnershipGroup { key }),
            61..=64 => key_of(self, Lead, &any).map(|key| Mutation::LeadDecision { key, approved: self.fake.chance(0.7) }),
            65..=69 => key_of(self, Lead, &any).map(|key| Mutation::LeadStatus { key }),
            70..=72 => key_of(self, Application, &|r| r.value()["approved"].is_null())
                .or_else(|| key_of(self, Application, &any))
                .map(|key| Mutation::ApplicationDecision { key, approved: self.fake.chance(0.7) }),
            73..=78 => key_of(self, Reward, &any).map(|key| Mutation::RewardStatus { key }),
            79..=82 => key_of(self, Transaction, &any).map(|key| Mutation::TransactionUpdate { key }),
            83..=86 if kind != Group => key_of(self, kind, &|r| !r.archived).map(|key| Mutation::Archive { kind, key }),
            87..=89 if kind != Group => key_of(self, kind, &|r| r.archived).map(|key| Mutation::Restore { kind, key }),
            90 if kind != Group => key_of(self, kind, &any).map(|key| Mutation::HardDelete { kind, key }),
            91..=95 => {
                let teams = self.teams.len();
                let i = self.fake.between(0, teams as i64 - 1) as usize;
                self.teams.keys().nth(i).cloned().map(|team_key| Mutation::TeamMemberJoin { team_key })
            }
            _ => key_of(self, kind, &any).map(|key| Mutation::Touch { kind, key }),
        };
        chosen.unwrap_or(Mutation::Create(kind))
    }
}

/// A decision is only an `approved`/`declined` event when it changes the decision.
fn decision_events(before: Option<Value>, approved: bool) -> &'static [&'static str] {
    match (before == Some(Value::Bool(approved)), approved) {
        (true, _) => &["updated"],
        (false, true) => &["updated", "approved"],
        (false, false) => &["updated", "declined"],
    }
}

fn not_found(kind: Resource, key: &str) -> MutationError {
    MutationError::NotFound { kind, key: key.to_owned() }
}

/// A value from `choices` other than `current`.
fn other(f: &mut Fake, choices: &[&'static str], current: Option<&Value>) -> &'static str {
    let current = current.and_then(Value::as_str);
    let others: Vec<&'static str> = choices.iter().copied().filter(|c| Some(*c) != current).collect();
    f.pick(&others)
}

/// Changes an ordinary field of a record, one that no specific event is about.
fn touch(f: &mut Fake, kind: Resource, map: &mut Map<String, Value>) {
    use Resource::*;
    let int = |map: &Map<String, Value>, field: &str| map.get(field).and_then(Value::as_i64).unwrap_or(0);
    match kind {
        Partnership | Application | PartnerTeamMember => {
            let p = f.person();
            map.insert("last_name".into(), p.last.into());
            map.insert("email".into(), p.email.into());
        }
        Customer => {
            let p = f.person();
            map.insert("name".into(), format!("{} {}", p.first, p.last).into());
            map.insert("email".into(), p.email.into());
        }
        Deal | Lead => {
            let amount = int(map, "amount") + f.between(1, 50) * 1_000;
            map.insert("amount".into(), amount.into());
        }
        Transaction => {
            map.insert("metadata".into(), json!({"invoice_number": f.token("INV-", 8)}));
        }
        Reward => {
            map.insert("description".into(), format!("Adjusted by account manager ({})", f.token("", 6)).into());
        }
        Action => {
            let value = int(map, "value") + 1;
            map.insert("value".into(), value.into());
        }
        Group => {
            let features = map.entry("features").or_insert_with(|| json!({}));
            let enabled = features.get("deals_enabled").and_then(Value::as_bool).unwrap_or(false);
            features["deals_enabled"] = (!enabled).into();
        }
    }
}
