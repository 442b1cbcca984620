//! Creating deals and leads (research notes §2.4, §2.5).

use serde_json::{json, Value};

use super::{
    super::build::{self, Stamp, DEAL_STAGES, LEAD_STATUSES},
    field, fill, group, invalid, opt_text, partner, pick, require, text, Body, Ty, WriteError,
};
use crate::state::State;

/// What a client sets on a deal when creating it; `null` when left out.
pub(crate) const DEAL_FIELDS: &[(&str, Ty)] = &[
    ("account_name", Ty::NullStr),
    ("amount", Ty::NullInt),
    ("close_date", Ty::NullDate),
    ("contact_first_name", Ty::NullStr),
    ("contact_last_name", Ty::NullStr),
    ("customer_key", Ty::NullStr),
    ("external_key", Ty::NullStr),
    ("lost_reason", Ty::NullStr),
];

pub(crate) const DEAL_SOURCES: &[&str] = &["partner", "vendor"];

/// A deal needs `partner_key` (a partner's deal) or `group_key` (a vendor's deal).
pub(super) fn deal(state: &mut State, body: &Body, now: i64) -> Result<Value, WriteError> {
    let partner_key = opt_text(body, "partner_key")?;
    let group_key = opt_text(body, "group_key")?;
    if partner_key.is_none() && group_key.is_none() {
        return Err(invalid("'partner_key' is a required property"));
    }
    let source = field(body, "source", Ty::Enum(DEAL_SOURCES))?;
    let stage = field(body, "stage", Ty::Enum(DEAL_STAGES))?;
    let stage = stage.as_ref().and_then(Value::as_str).unwrap_or(DEAL_STAGES[0]).to_owned();
    let mold_key = opt_text(body, "mold_key")?;
    let picked = pick(body, DEAL_FIELDS)?;
    let partnership = partner_key.as_deref().map(|pk| partner(state, pk)).transpose()?;
    let group = group_key.as_deref().map(|gk| group(state, gk)).transpose()?;
    // A vendor's deal has no partner: no partner_key and no team.
    let parent = partnership.clone().unwrap_or_else(|| json!({"group": {"key": group_key}}));
    let mut d = build::deal(&mut state.fake, &state.account, &parent, None, &stage, Stamp::new(now, now));
    fill(&mut d, &picked, DEAL_FIELDS);
    if let Some(g) = group {
        d["group_key"] = g["key"].clone();
    }
    d["source"] = source.unwrap_or_else(|| (if partnership.is_some() { "partner" } else { "vendor" }).into());
    if let Some(mold) = mold_key {
        d["mold_key"] = mold.into();
    }
    Ok(d)
}

/// A lead needs `external_key`, `partner_key` and `status`.
pub(super) fn lead(state: &mut State, body: &Body, now: i64) -> Result<Value, WriteError> {
    require(body, &["external_key", "partner_key", "status"])?;
    let external_key = text(body, "external_key")?;
    let partner_key = text(body, "partner_key")?;
    field(body, "status", Ty::Enum(LEAD_STATUSES))?;
    let status = text(body, "status")?;
    let amount = field(body, "amount", Ty::NullInt)?;
    let approved = field(body, "approved", Ty::NullBool)?.and_then(|v| v.as_bool());
    let group_key = opt_text(body, "group_key")?;
    let mold_key = opt_text(body, "mold_key")?;
    let meta = field(body, "meta", Ty::Object)?;
    let partnership = partner(state, &partner_key)?;
    let group = group_key.as_deref().map(|gk| group(state, gk)).transpose()?;
    let mut l = build::lead(&mut state.fake, &state.account, &partnership, &status, approved, Stamp::new(now, now));
    l["amount"] = amount.unwrap_or(Value::Null);
    l["external_key"] = external_key.into();
    l["meta"] = meta.unwrap_or_else(|| json!({}));
    if let Some(g) = group {
        l["group_key"] = g["key"].clone();
    }
    if let Some(mold) = mold_key {
        l["mold_key"] = mold.into();
    }
    Ok(l)
}
