//! List queries: parsing the API's query parameters and cutting one page out of a table.
//!
//! The order is the API's: newest `created_at` first, ties broken by key descending. A cursor
//! (`starting_after` / `ending_before`) means a position in that full order, whether or not
//! its record still matches the filters, so pages stay stable while records change between
//! them. Without an `updated` filter a page walks `by_created` from the cursor: O(page).

use std::{
    collections::BTreeSet,
    ops::Bound::{self, Excluded, Included, Unbounded},
};

use serde_json::value::RawValue;

use super::{table::Table, BoundSemantics};

/// Page size bounds and default, as documented.
pub(super) const MAX_LIMIT: usize = 250;
pub(super) const DEFAULT_LIMIT: usize = 10;

/// `updated` windows with at most this many records are answered from `by_updated`;
/// wider ones walk the created order, where matches are then dense enough.
const NARROW_WINDOW: usize = 20_000;

/// An inclusive range of epoch milliseconds (the bounds already turned inclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Span {
    pub lo: i64,
    pub hi: i64,
}

impl Span {
    pub const ALL: Span = Span { lo: i64::MIN, hi: i64::MAX };

    pub fn contains(self, ms: i64) -> bool {
        self.lo <= ms && ms <= self.hi
    }

    fn is_all(self) -> bool {
        self == Span::ALL
    }

    fn is_empty(self) -> bool {
        self.lo > self.hi
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Cursor {
    After(String),
    Before(String),
}

/// A validated list request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct ListQuery {
    pub limit: usize,
    pub cursor: Option<Cursor>,
    pub created: Span,
    pub updated: Span,
}

/// One page of results, borrowed from the table.
#[derive(Debug)]
pub(super) struct Page<'a> {
    pub items: Vec<&'a RawValue>,
    pub has_more: bool,
}

/// Which records a listing covers.
pub(super) enum Scope<'a> {
    All,
    /// Only these keys (one partner team's members).
    Only(&'a BTreeSet<String>),
}

impl ListQuery {
    /// Parses the query parameters; `Err` is the message of a 400 answer. Unknown
    /// parameters are ignored, as APIs do; for a repeated one the last value wins.
    pub fn parse(params: &[(String, String)], bounds: BoundSemantics) -> Result<ListQuery, String> {
        let get = |name: &str| params.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let limit = match get("limit") {
            None => DEFAULT_LIMIT,
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => return Err(format!("limit must be an integer between 1 and {MAX_LIMIT}, got '{v}'")),
            },
        };
        let cursor = match (get("starting_after"), get("ending_before")) {
            (Some(_), Some(_)) => return Err("starting_after and ending_before cannot be used together".into()),
            (Some(k), None) => Some(Cursor::After(k.to_owned())),
            (None, Some(k)) => Some(Cursor::Before(k.to_owned())),
            (None, None) => None,
        };
        let ms = |name: &str| -> Result<Option<i64>, String> {
            get(name)
                .map(|v| v.trim().parse::<i64>().map_err(|_| format!("{name} must be an epoch timestamp in milliseconds, got '{v}'")))
                .transpose()
        };
        let span = |min: Option<i64>, max: Option<i64>| {
            let open = matches!(bounds, BoundSemantics::Exclusive);
            Span {
                lo: min.map_or(i64::MIN, |m| if open { m.saturating_add(1) } else { m }),
                hi: max.map_or(i64::MAX, |m| if open { m.saturating_sub(1) } else { m }),
            }
        };
        Ok(ListQuery {
            limit,
            cursor,
            created: span(ms("min_created")?, ms("max_created")?),
            updated: span(ms("min_updated")?, ms("max_updated")?),
        })
    }
}

/// Cuts one page; `Err` is the message of a 400 answer (a cursor naming no record).
pub(super) fn page<'a>(table: &'a Table, q: &ListQuery, show_archived: bool, scope: Scope<'_>) -> Result<Page<'a>, String> {
    let cursor = match &q.cursor {
        None => None,
        Some(Cursor::After(k) | Cursor::Before(k)) => {
            let pos = table.position(k).ok_or_else(|| format!("No record found with key '{k}' (used as a pagination cursor)"))?;
            Some((matches!(q.cursor, Some(Cursor::Before(_))), pos))
        }
    };
    if q.created.is_empty() || q.updated.is_empty() {
        return Ok(Page { items: Vec::new(), has_more: false });
    }
    let wanted = |key: &str| {
        let row = &table.rows[key];
        q.created.contains(row.created) && q.updated.contains(row.updated) && (show_archived || !row.archived)
    };
    let candidates: Option<Vec<(i64, &str)>> = match scope {
        Scope::Only(keys) => Some(keys.iter().filter_map(|k| table.rows.get(k).map(|r| (r.created, k.as_str()))).collect()),
        Scope::All if q.updated.is_all() => None,
        Scope::All => narrow_window(table, q.updated),
    };
    let (keys, has_more) = match candidates {
        Some(mut found) => {
            found.retain(|(_, k)| wanted(k));
            found.sort_unstable_by(|a, b| b.cmp(a));
            cut_sorted(&found, cursor.as_ref().map(|(before, (c, k))| (*before, (*c, k.as_str()))), q.limit)
        }
        None => walk(table, q, cursor, wanted),
    };
    let items = keys.iter().map(|k| table.rows[*k].raw()).collect();
    Ok(Page { items, has_more })
}

/// How many records match the filters, ignoring the cursor (the `total` some lists carry).
pub(super) fn count(table: &Table, q: &ListQuery, show_archived: bool) -> usize {
    if q.created.is_empty() || q.updated.is_empty() {
        return 0;
    }
    let lo = if q.created.lo == i64::MIN { Unbounded } else { Included((q.created.lo, String::new())) };
    let hi = match q.created.hi.checked_add(1) {
        Some(next) => Excluded((next, String::new())),
        None => Unbounded,
    };
    table
        .by_created
        .range((lo, hi))
        .filter(|(_, k)| {
            let row = &table.rows[k];
            q.updated.contains(row.updated) && (show_archived || !row.archived)
        })
        .count()
}

/// The keys of an `updated` window, if it holds few enough records to sort per page.
fn narrow_window(table: &Table, updated: Span) -> Option<Vec<(i64, &str)>> {
    let lo = Included((updated.lo, i64::MIN, String::new()));
    let hi = match updated.hi.checked_add(1) {
        Some(next) => Excluded((next, i64::MIN, String::new())),
        None => Unbounded,
    };
    let mut found = Vec::new();
    for (_, created, key) in table.by_updated.range((lo, hi)) {
        if found.len() == NARROW_WINDOW {
            return None;
        }
        found.push((*created, key.as_str()));
    }
    Some(found)
}

/// A page out of candidates already sorted newest first.
fn cut_sorted<'a>(sorted: &[(i64, &'a str)], cursor: Option<(bool, (i64, &str))>, limit: usize) -> (Vec<&'a str>, bool) {
    let keys = |s: &[(i64, &'a str)]| s.iter().map(|(_, k)| *k).collect::<Vec<_>>();
    match cursor {
        None => (keys(&sorted[..limit.min(sorted.len())]), sorted.len() > limit),
        Some((false, pos)) => {
            let start = sorted.partition_point(|x| *x >= pos);
            let rest = &sorted[start..];
            (keys(&rest[..limit.min(rest.len())]), rest.len() > limit)
        }
        Some((true, pos)) => {
            let end = sorted.partition_point(|x| *x > pos);
            let start = end.saturating_sub(limit);
            (keys(&sorted[start..end]), start > 0)
        }
    }
}

/// A page by walking the created order from the cursor, filtering as it goes.
fn walk<'a>(table: &'a Table, q: &ListQuery, cursor: Option<(bool, (i64, String))>, wanted: impl Fn(&str) -> bool) -> (Vec<&'a str>, bool) {
    // Everything with created_at in the span, as bounds on (created_at, key).
    let span_lo = if q.created.lo == i64::MIN { Unbounded } else { Included((q.created.lo, String::new())) };
    let span_hi = match q.created.hi.checked_add(1) {
        Some(next) => Excluded((next, String::new())),
        None => Unbounded,
    };
    let (lo, hi, backwards) = match cursor {
        None => (span_lo, span_hi, false),
        Some((false, pos)) => (span_lo, tighter_upper(span_hi, pos), false),
        Some((true, pos)) => (tighter_lower(span_lo, pos), span_hi, true),
    };
    if let (Included(l) | Excluded(l), Included(h) | Excluded(h)) = (&lo, &hi) {
        if l >= h {
            return (Vec::new(), false);
        }
    }
    let range = table.by_created.range((lo, hi)).map(|(_, k)| k.as_str()).filter(|k| wanted(k));
    let mut keys: Vec<&str> = if backwards { range.take(q.limit + 1).collect() } else { range.rev().take(q.limit + 1).collect() };
    let has_more = keys.len() > q.limit;
    keys.truncate(q.limit);
    if backwards {
        keys.reverse();
    }
    (keys, has_more)
}

/// The lower of "created_at ≤ span end" and "before the cursor position".
fn tighter_upper(span_hi: Bound<(i64, String)>, pos: (i64, String)) -> Bound<(i64, String)> {
    match span_hi {
        Excluded(h) if h <= pos => Excluded(h),
        _ => Excluded(pos),
    }
}

/// The higher of "created_at ≥ span start" and "after the cursor position".
fn tighter_lower(span_lo: Bound<(i64, String)>, pos: (i64, String)) -> Bound<(i64, String)> {
    match span_lo {
        Included(l) if l > pos => Included(l),
        _ => Excluded(pos),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// 30 records, three per millisecond, `updated_at = created_at * 10`.
    fn table() -> Table {
        let mut t = Table::default();
        for i in 0..30 {
            let c = i / 3;
            t.insert(json!({"key": format!("k{i:02}"), "created_at": c, "updated_at": c * 10, "archived": i == 4}));
        }
        t
    }

    fn keys(p: &Page) -> Vec<String> {
        p.items.iter().map(|raw| serde_json::from_str::<Value>(raw.get()).unwrap()["key"].as_str().unwrap().to_owned()).collect()
    }

    fn walk_all(t: &Table, base: &[(&str, &str)], show_archived: bool) -> Vec<String> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut p = params(base);
            if let Some(a) = &after {
                p.push(("starting_after".into(), a.clone()));
            }
            let q = ListQuery::parse(&p, BoundSemantics::Inclusive).unwrap();
            let page = page(t, &q, show_archived, Scope::All).unwrap();
            out.extend(keys(&page));
            after = out.last().cloned();
            if !page.has_more {
                return out;
            }
        }
    }

    #[test]
    fn limits_outside_one_to_250_and_garbage_timestamps_are_rejected() {
        for bad in ["0", "251", "-1", "ten", ""] {
            assert!(ListQuery::parse(&params(&[("limit", bad)]), BoundSemantics::Inclusive).is_err(), "{bad}");
        }
        assert!(ListQuery::parse(&params(&[("min_updated", "yesterday")]), BoundSemantics::Inclusive).is_err());
        assert!(ListQuery::parse(&params(&[("starting_after", "a"), ("ending_before", "b")]), BoundSemantics::Inclusive).is_err());
        assert_eq!(ListQuery::parse(&[], BoundSemantics::Inclusive).unwrap().limit, DEFAULT_LIMIT);
    }

    #[test]
    fn exclusive_bounds_become_the_inclusive_span_one_millisecond_narrower() {
        let p = params(&[("min_created", "10"), ("max_created", "20")]);
        assert_eq!(ListQuery::parse(&p, BoundSemantics::Inclusive).unwrap().created, Span { lo: 10, hi: 20 });
        assert_eq!(ListQuery::parse(&p, BoundSemantics::Exclusive).unwrap().created, Span { lo: 11, hi: 19 });
    }

    #[test]
    fn every_page_size_walks_every_record_once_newest_first() {
        let t = table();
        let expected: Vec<String> = (0..30).rev().map(|i| format!("k{i:02}")).collect();
        for limit in ["1", "2", "3", "4", "7", "250"] {
            assert_eq!(walk_all(&t, &[("limit", limit)], true), expected, "limit {limit}");
            // The same through the narrow-window path of an updated filter.
            assert_eq!(walk_all(&t, &[("limit", limit), ("min_updated", "0")], true), expected, "limit {limit}");
        }
        let without_archived: Vec<String> = expected.iter().filter(|k| *k != "k04").cloned().collect();
        assert_eq!(walk_all(&t, &[("limit", "4")], false), without_archived);
    }

    #[test]
    fn created_filters_and_a_cursor_outside_them_combine() {
        let t = table();
        let q = |p: &[(&str, &str)]| ListQuery::parse(&params(p), BoundSemantics::Inclusive).unwrap();
        let got = page(&t, &q(&[("min_created", "3"), ("max_created", "5"), ("limit", "250")]), true, Scope::All).unwrap();
        assert_eq!(keys(&got), ["k17", "k16", "k15", "k14", "k13", "k12", "k11", "k10", "k09"]);
        // A cursor newer than the window starts at the window's top.
        let got = page(&t, &q(&[("min_created", "3"), ("max_created", "5"), ("starting_after", "k29"), ("limit", "2")]), true, Scope::All)
            .unwrap();
        assert_eq!((keys(&got), got.has_more), (vec!["k17".to_owned(), "k16".to_owned()], true));
        // A cursor inside the window continues from its position, also via the updated index.
        for extra in [None, Some(("max_updated", "1000"))] {
            let mut p = vec![("max_created", "5"), ("starting_after", "k16"), ("limit", "3")];
            p.extend(extra);
            assert_eq!(keys(&page(&t, &q(&p), true, Scope::All).unwrap()), ["k15", "k14", "k13"]);
        }
    }

    #[test]
    fn ending_before_returns_the_page_just_newer_than_the_cursor() {
        let t = table();
        for p in [vec![("ending_before", "k10"), ("limit", "3")], vec![("ending_before", "k10"), ("limit", "3"), ("min_updated", "0")]] {
            let q = ListQuery::parse(&params(&p), BoundSemantics::Inclusive).unwrap();
            let got = page(&t, &q, true, Scope::All).unwrap();
            assert_eq!((keys(&got), got.has_more), (vec!["k13".to_owned(), "k12".to_owned(), "k11".to_owned()], true));
        }
        let q = ListQuery::parse(&params(&[("ending_before", "k27")]), BoundSemantics::Inclusive).unwrap();
        let got = page(&t, &q, true, Scope::All).unwrap();
        assert_eq!((keys(&got), got.has_more), (vec!["k29".to_owned(), "k28".to_owned()], false));
    }

    #[test]
    fn an_unknown_cursor_is_an_error_but_a_deleted_one_keeps_its_place() {
        let mut t = table();
        let q = |k: &str| ListQuery::parse(&params(&[("starting_after", k), ("limit", "2")]), BoundSemantics::Inclusive).unwrap();
        assert!(page(&t, &q("nope"), true, Scope::All).is_err());
        t.remove("k20");
        assert_eq!(keys(&page(&t, &q("k20"), true, Scope::All).unwrap()), ["k19", "k18"]);
    }
}
