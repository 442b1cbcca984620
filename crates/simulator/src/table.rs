//! One object type's records and the indexes that keep listing cheap; [`Tables`] holds one
//! per object type.
//!
//! Pages are cut from `by_created` (the API's newest-first order with a key tie-break), so
//! a page costs O(page) however large the table; `by_updated` answers narrow `updated`
//! windows without walking the whole table. Hard-deleted keys keep their place in the
//! order (`graves`) so a cursor pointing at one still means "after that position".

use std::collections::{BTreeSet, HashMap};

use rand::Rng;
use serde_json::{value::RawValue, Map, Value};

use crate::Resource;

/// One stored record: the JSON the API serves, kept serialized (a page is then a copy of
/// bytes, and 200,000 records fit in little memory), plus the fields the indexes use.
#[derive(Debug, Clone)]
pub(super) struct Row {
    raw: Box<RawValue>,
    pub created: i64,
    pub updated: i64,
    pub archived: bool,
    /// Where its key sits in `Table::slots` (for O(1) random picks).
    slot: usize,
}

#[derive(Debug, Default)]
pub(super) struct Table {
    pub(super) rows: HashMap<String, Row>,
    /// `(created_at, key)`: the listing order, read backwards for newest first.
    pub(super) by_created: BTreeSet<(i64, String)>,
    /// `(updated_at, created_at, key)`: finds the records of an `updated` window.
    pub(super) by_updated: BTreeSet<(i64, i64, String)>,
    /// Every live key once, in no meaningful order: random picks without walking a tree.
    slots: Vec<String>,
    /// Hard-deleted key → its `created_at`, so cursors on vanished records stay usable.
    graves: HashMap<String, i64>,
}

/// One table per object type.
pub(super) struct Tables([Table; Resource::ALL.len()]);

impl Default for Tables {
    fn default() -> Self {
        Tables(std::array::from_fn(|_| Table::default()))
    }
}

impl Tables {
    pub fn get(&self, kind: Resource) -> &Table {
        &self.0[index(kind)]
    }

    pub fn get_mut(&mut self, kind: Resource) -> &mut Table {
        &mut self.0[index(kind)]
    }
}

fn index(kind: Resource) -> usize {
    Resource::ALL.iter().position(|k| *k == kind).expect("ALL lists every kind")
}

impl Row {
    /// The record as the API serializes it.
    pub fn raw(&self) -> &RawValue {
        &self.raw
    }

    /// The record parsed (a copy: change records through `Table::modify`).
    pub fn value(&self) -> Value {
        serde_json::from_str(self.raw.get()).expect("stored records are valid JSON")
    }
}

fn serialize(value: &Value) -> Box<RawValue> {
    serde_json::value::to_raw_value(value).expect("JSON values serialize")
}

/// The indexed fields of a record.
fn meta(value: &Value) -> (i64, i64, bool) {
    let created = value.get("created_at").and_then(Value::as_i64).unwrap_or(0);
    let updated = value.get("updated_at").and_then(Value::as_i64).unwrap_or(created);
    let archived = value.get("archived").and_then(Value::as_bool).unwrap_or(false);
    (created, updated, archived)
}

impl Table {
    pub fn get(&self, key: &str) -> Option<&Row> {
        self.rows.get(key)
    }

    /// Adds a record; its `key` must be new (keys are drawn unique by the generator).
    pub fn insert(&mut self, value: Value) {
        let key = value.get("key").and_then(Value::as_str).expect("every record has a key").to_owned();
        let (created, updated, archived) = meta(&value);
        self.by_created.insert((created, key.clone()));
        self.by_updated.insert((updated, created, key.clone()));
        let slot = self.slots.len();
        self.slots.push(key.clone());
        let previous = self.rows.insert(key, Row { raw: serialize(&value), created, updated, archived, slot });
        assert!(previous.is_none(), "record keys are unique");
    }

    /// Changes a record in place and stamps `updated_at = now`; `created_at` never moves.
    pub fn modify<R>(&mut self, key: &str, now: i64, change: impl FnOnce(&mut Map<String, Value>) -> R) -> Option<R> {
        let row = self.rows.get_mut(key)?;
        self.by_updated.remove(&(row.updated, row.created, key.to_owned()));
        let mut value = row.value();
        let map = value.as_object_mut().expect("records are JSON objects");
        let result = change(map);
        map.insert("updated_at".into(), now.into());
        let (_, updated, archived) = meta(&value);
        row.raw = serialize(&value);
        row.updated = updated;
        row.archived = archived;
        self.by_updated.insert((updated, row.created, key.to_owned()));
        Some(result)
    }

    /// Removes a record for good, keeping its position for cursors.
    pub fn remove(&mut self, key: &str) -> Option<Row> {
        let row = self.rows.remove(key)?;
        self.by_created.remove(&(row.created, key.to_owned()));
        self.by_updated.remove(&(row.updated, row.created, key.to_owned()));
        self.slots.swap_remove(row.slot);
        if let Some(moved) = self.slots.get(row.slot) {
            self.rows.get_mut(moved).expect("slots mirror rows").slot = row.slot;
        }
        self.graves.insert(key.to_owned(), row.created);
        Some(row)
    }

    /// Where `key` sits in the listing order, also for a hard-deleted record.
    pub fn position(&self, key: &str) -> Option<(i64, String)> {
        match self.rows.get(key) {
            Some(row) => Some((row.created, key.to_owned())),
            None => self.graves.get(key).map(|created| (*created, key.to_owned())),
        }
    }

    /// A uniformly random live key.
    pub fn random_key(&self, rng: &mut impl Rng) -> Option<&str> {
        if self.slots.is_empty() {
            return None;
        }
        Some(self.slots[rng.gen_range(0..self.slots.len())].as_str())
    }

    /// A random key whose row satisfies `wanted`, after a bounded number of tries (so a
    /// table where almost nothing qualifies costs little and may answer `None`).
    pub fn random_key_where(&self, rng: &mut impl Rng, wanted: impl Fn(&Row) -> bool) -> Option<String> {
        (0..32).filter_map(|_| self.random_key(rng)).find(|k| wanted(&self.rows[*k])).map(str::to_owned)
    }

    /// Every record, newest `created_at` first, ties by key descending.
    pub fn newest_first(&self) -> impl Iterator<Item = &Row> + '_ {
        self.by_created.iter().rev().map(|(_, key)| &self.rows[key])
    }

    /// The keys of `newest_first`.
    pub fn newest_keys(&self) -> impl Iterator<Item = &str> + '_ {
        self.by_created.iter().rev().map(|(_, key)| key.as_str())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rec(key: &str, created: i64) -> Value {
        json!({"key": key, "created_at": created, "updated_at": created, "archived": false})
    }

    #[test]
    fn a_modified_record_keeps_its_place_and_gets_the_new_updated_at() {
        let mut t = Table::default();
        t.insert(rec("a", 5));
        t.insert(rec("b", 5));
        t.insert(rec("c", 9));
        t.modify("a", 100, |m| m.insert("archived".into(), true.into()));
        let keys: Vec<_> = t.newest_keys().collect();
        assert_eq!(keys, ["c", "b", "a"]);
        let a = t.get("a").unwrap();
        assert_eq!((a.created, a.updated, a.archived), (5, 100, true));
        assert!(t.by_updated.contains(&(100, 5, "a".into())));
    }

    #[test]
    fn a_removed_record_leaves_a_position_for_cursors_and_the_slots_stay_consistent() {
        let mut t = Table::default();
        for (i, k) in ["a", "b", "c", "d"].iter().enumerate() {
            t.insert(rec(k, i as i64));
        }
        t.remove("a");
        assert_eq!(t.position("a"), Some((0, "a".into())));
        assert_eq!(t.rows.len(), 3);
        let mut rng = rand::thread_rng();
        for _ in 0..50 {
            let k = t.random_key(&mut rng).unwrap().to_owned();
            assert!(t.get(&k).is_some());
        }
        t.remove("d");
        t.remove("b");
        assert_eq!(t.random_key(&mut rng), Some("c"));
    }
}
