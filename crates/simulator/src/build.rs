//! One record of each object type, shaped like the vendor API's (research notes §4):
//! integer epoch-millisecond timestamps, integer cents, nested objects copied from their
//! parents at creation time. The initial data and `Mutation::Create` both use these, so a
//! record created at runtime looks like one generated at start.

use serde_json::{json, Value};

use super::fake::{slug, Fake};

pub(super) const DAY_MS: i64 = 86_400_000;

/// The fixed deal stage list (the account's sales cycle).
pub(super) const DEAL_STAGES: &[&str] =
    &["Prospecting", "Qualified", "Demo Scheduled", "Proposal Sent", "Negotiation", "Closed Won", "Closed Lost"];
pub(super) const LEAD_STATUSES: &[&str] = &["open", "closed", "dead", "closed won", "closed lost"];
pub(super) const TAGS: &[&str] =
    &["newsletter", "saas", "agency", "influencer", "priority", "emea", "apac", "webinar", "top-performer", "inactive"];
const GROUP_NAMES: &[&str] = &[
    "Default",
    "Affiliates",
    "Resellers",
    "Agencies",
    "Influencers",
    "Technology Partners",
    "Referral Partners",
    "Consultants",
    "Creators",
    "Enterprise Resellers",
];
const TIERS: &[&str] = &["Bronze", "Silver", "Gold", "Platinum"];
const LOST_REASONS: &[&str] = &["Budget", "Went with a competitor", "No decision", "Timing", "Not a fit"];
const DECLINE_REASONS: &[&str] = &["Not a fit for the program", "Incomplete application", "Duplicate application", "Unsupported region"];
const ACTION_TYPES: &[&str] = &["signup", "trial_started", "demo_booked", "webinar_attended", "upgrade"];
const PRODUCTS: &[(&str, i64)] =
    &[("starter_monthly", 2_900), ("pro_monthly", 9_900), ("pro_annual", 99_000), ("enterprise_annual", 480_000)];
const CURRENCIES: &[(&str, f64)] = &[("USD", 1.0), ("USD", 1.0), ("USD", 1.0), ("EUR", 1.08), ("GBP", 1.27), ("CAD", 0.74), ("AUD", 0.66)];

/// A record's two timestamps.
#[derive(Clone, Copy, Debug)]
pub(super) struct Stamp {
    pub created: i64,
    pub updated: i64,
}

impl Stamp {
    pub fn new(created: i64, updated: i64) -> Stamp {
        Stamp { created, updated: updated.max(created) }
    }
}

/// Account-wide fixtures the records refer to.
pub(super) struct Account {
    /// The vendor company (`company {key, name}` on actions and transactions).
    pub company: Value,
    pub tiers: Vec<Value>,
    pub deal_mold: String,
    pub lead_mold: String,
    pub application_mold: String,
    pub offer: Value,
}

impl Account {
    pub fn new(f: &mut Fake) -> Account {
        Account {
            company: json!({"key": f.key("comp_"), "name": "Simulated Software Inc."}),
            tiers: TIERS.iter().map(|name| json!({"key": f.key("tier_"), "name": name})).collect(),
            deal_mold: f.key("mold_"),
            lead_mold: f.key("mold_"),
            application_mold: f.key("mold_"),
            offer: json!({"key": f.key("offr_"), "description": "20% recurring commission for 12 months"}),
        }
    }
}

/// The group names an account of `n` groups has (the first is the default group).
pub(super) fn group_names(n: usize) -> &'static [&'static str] {
    &GROUP_NAMES[..n.clamp(1, GROUP_NAMES.len())]
}

fn date(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default().format("%Y-%m-%d").to_string()
}

fn field(v: &Value, name: &str) -> Value {
    v.get(name).cloned().unwrap_or(Value::Null)
}

/// `{key, name, slug}` of a group record, as nested in partnerships and applications.
pub(super) fn group_ref(group: &Value) -> Value {
    json!({"key": field(group, "key"), "name": field(group, "name"), "slug": field(group, "slug")})
}

pub(super) fn group(f: &mut Fake, name: &str, default: bool, t: Stamp) -> Value {
    json!({
        "key": f.key("grup_"), "created_at": t.created, "updated_at": t.updated, "archived": false,
        "name": name, "slug": slug(name), "default": default,
        "features": {"application_enabled": true, "deals_enabled": f.chance(0.7), "disable_link_create": false, "leads_enabled": f.chance(0.6)},
    })
}

pub(super) fn partnership(f: &mut Fake, account: &Account, group: &Value, t: Stamp) -> Value {
    let p = f.person();
    let base = format!("{}{}", slug(&p.first), slug(&p.last));
    let partner_key = f.unique(|rng| format!("{base}{}", rand::Rng::gen_range(rng, 10..100_000)));
    let tags: Vec<&str> = {
        let n = f.between(0, 3) as usize;
        let mut tags: Vec<&str> = (0..n).map(|_| f.pick(TAGS)).collect();
        tags.sort_unstable();
        tags.dedup();
        tags
    };
    let joined_at = if f.chance(0.6) { t.created - f.between(0, 400 * DAY_MS) } else { t.created };
    let manager = if f.chance(0.5) {
        let m = f.person();
        json!({"name": format!("{} {}", m.first, m.last), "email": format!("{}.{}@simulated.example", slug(&m.first), slug(&m.last))})
    } else {
        Value::Null
    };
    let tier = account.tiers[f.between(0, account.tiers.len() as i64 - 1) as usize].clone();
    json!({
        "key": f.key("part_"), "created_at": t.created, "updated_at": t.updated, "archived": false,
        "partner_key": partner_key, "email": p.email, "first_name": p.first, "last_name": p.last,
        "joined_at": joined_at, "claimed": f.chance(0.85),
        "group": group_ref(group), "team": {"key": f.key("stck_"), "name": p.company}, "tier": tier,
        "tags": tags, "manager": manager, "mdata": {"company": p.company},
    })
}

/// A partner-team member; `owner` is the partnership whose partner is this member.
pub(super) fn member(f: &mut Fake, team_key: &str, owner: Option<&Value>, t: Stamp) -> Value {
    let (first, last, email) = match owner {
        Some(p) => (field(p, "first_name"), field(p, "last_name"), field(p, "email")),
        None => {
            let p = f.person();
            (p.first.into(), p.last.into(), p.email.into())
        }
    };
    json!({
        "key": f.key("memb_"), "created_at": t.created, "updated_at": t.updated, "archived": false,
        "team_key": team_key, "email": email, "first_name": first, "last_name": last, "joined_at": t.created,
    })
}

/// An application; an approved one names the partnership it became.
pub(super) fn application(
    f: &mut Fake,
    account: &Account,
    group: &Value,
    approved: Option<bool>,
    partnership: Option<&Value>,
    t: Stamp,
) -> Value {
    let (first, last, email, company) = match partnership {
        Some(p) => (field(p, "first_name"), field(p, "last_name"), field(p, "email"), p["mdata"]["company"].clone()),
        None => {
            let p = f.person();
            (p.first.into(), p.last.into(), p.email.into(), p.company.into())
        }
    };
    let website = format!("https://{}.com", slug(company.as_str().unwrap_or("example")));
    json!({
        "key": f.key("appl_"), "created_at": t.created, "updated_at": t.updated, "archived": false,
        "approved": approved,
        "decline_reason": if approved == Some(false) { Value::from(f.pick(DECLINE_REASONS)) } else { Value::Null },
        "email": email, "first_name": first, "last_name": last,
        "content": {"first_name": first, "last_name": last, "email": email, "business_name": company, "website": website},
        "group": group_ref(group), "mold_key": account.application_mold,
        "partner_key": partnership.map_or(Value::Null, |p| field(p, "partner_key")),
        "partnership_key": partnership.map_or(Value::Null, |p| field(p, "key")),
    })
}

pub(super) fn customer(f: &mut Fake, partnership: &Value, t: Stamp) -> Value {
    let p = f.person();
    let source_type = f.pick(&["link", "link", "link", "api", "form", "import"]);
    json!({
        "key": f.key("cust_"), "created_at": t.created, "updated_at": t.updated, "archived": false,
        "customer_key": f.unique(|rng| format!("acct_{}", rand::Rng::gen_range(rng, 100_000..100_000_000))),
        "email": p.email, "name": format!("{} {}", p.first, p.last),
        "partner_key": field(partnership, "partner_key"), "partnership_key": field(partnership, "key"),
        "provider_key": if f.chance(0.7) { Value::from(f.token("cus_", 14)) } else { Value::Null },
        "source_key": if source_type == "link" { Value::from(f.token("lnk_", 10)) } else { Value::Null },
        "source_type": source_type, "test": f.chance(0.02),
        "mdata": {"company_name": p.company}, "meta": {},
    })
}

pub(super) fn deal(f: &mut Fake, account: &Account, partnership: &Value, customer: Option<&Value>, stage: &str, t: Stamp) -> Value {
    let contact = f.person();
    let vendor_sourced = f.chance(0.1);
    json!({
        "key": f.key("deal_"), "created_at": t.created, "updated_at": t.updated, "archived": false,
        "account_name": contact.company, "amount": f.between(10, 5_000) * 1_000,
        "close_date": date(t.created + f.between(14, 120) * DAY_MS),
        "contact_first_name": contact.first, "contact_last_name": contact.last,
        "customer_key": customer.map_or(Value::Null, |c| field(c, "key")),
        "external_key": f.token("006", 12), "group_key": partnership["group"]["key"].clone(),
        "lost_reason": if stage == "Closed Lost" { Value::from(f.pick(LOST_REASONS)) } else { Value::Null },
        "mold_key": account.deal_mold, "partner_key": field(partnership, "partner_key"),
        "source": if vendor_sourced { "vendor" } else { "partner" }, "stage": stage,
        "team": field(partnership, "team"), "team_member": Value::Null,
    })
}

pub(super) fn lead(f: &mut Fake, account: &Account, partnership: &Value, status: &str, approved: Option<bool>, t: Stamp) -> Value {
    let p = f.person();
    json!({
        "key": f.key("lead_"), "created_at": t.created, "updated_at": t.updated, "archived": false,
        "amount": if f.chance(0.7) { Value::from(f.between(5, 2_000) * 1_000) } else { Value::Null },
        "approved": approved, "external_key": p.email, "group_key": partnership["group"]["key"].clone(),
        "mold_key": account.lead_mold, "partner_key": field(partnership, "partner_key"), "status": status,
        "meta": {"first_name": p.first, "last_name": p.last, "company": p.company},
    })
}

pub(super) fn action(f: &mut Fake, account: &Account, partnership: &Value, customer: Option<&Value>, t: Stamp) -> Value {
    json!({
        "key": f.key("act_"), "created_at": t.created, "updated_at": t.updated, "archived": false,
        "type": f.pick(ACTION_TYPES), "value": f.between(1, 5), "partnership_key": field(partnership, "key"),
        "customer": customer.map_or(Value::Null, |c| json!({"key": field(c, "key"), "sub_ids": []})),
        "company": account.company, "external_key": Value::Null,
    })
}

pub(super) fn transaction(f: &mut Fake, account: &Account, customer: &Value, t: Stamp) -> Value {
    let (product, price) = f.pick(PRODUCTS);
    let (currency, rate) = f.pick(CURRENCIES);
    let amount = match f.unit() {
        u if u < 0.05 => -price,
        u if u < 0.06 => 0,
        _ => price,
    };
    json!({
        "key": f.key("txn_"), "created_at": t.created, "updated_at": t.updated, "archived": false,
        "amount": amount, "amount_usd": (amount as f64 * rate).round() as i64, "currency": currency,
        "approved": f.chance(0.85), "test": customer.get("test").cloned().unwrap_or(Value::Bool(false)),
        "category_key": if product.ends_with("annual") { "annual_plan" } else { "monthly_plan" }, "product_key": product,
        "customer_key": field(customer, "key"),
        "customer": {"key": field(customer, "key"), "email": field(customer, "email"), "external_key": field(customer, "customer_key")},
        "partnership_key": field(customer, "partnership_key"), "company": account.company,
        "metadata": {"invoice_number": f.token("INV-", 8)},
    })
}

/// USD per unit of `currency` (unknown currencies count as USD), for `amount_usd`.
pub(super) fn usd_rate(currency: &str) -> f64 {
    CURRENCIES.iter().find(|(c, _)| c.eq_ignore_ascii_case(currency)).map_or(1.0, |(_, rate)| *rate)
}

/// What a reward pays for.
pub(super) enum Source<'a> {
    Transaction(&'a Value),
    Action(&'a Value),
}

pub(super) fn reward(
    f: &mut Fake,
    account: &Account,
    source: Source<'_>,
    partnership: &Value,
    customer: Option<&Value>,
    status: &str,
    t: Stamp,
) -> Value {
    let (amount, description, action, transaction) = match source {
        Source::Transaction(txn) => {
            let usd = txn["amount_usd"].as_i64().unwrap_or(0);
            let amount = usd / 5;
            let description =
                format!("20% of {} {:.2}", txn["currency"].as_str().unwrap_or("USD"), txn["amount"].as_i64().unwrap_or(0) as f64 / 100.0);
            let nested = json!({"key": field(txn, "key"), "amount": field(txn, "amount"), "currency": field(txn, "currency")});
            (amount, description, Value::Null, nested)
        }
        Source::Action(act) => {
            let amount = f.between(1, 10) * 1_000;
            let description = format!("Bounty for {}", act["type"].as_str().unwrap_or("action"));
            let nested = json!({"key": field(act, "key"), "type": field(act, "type"), "value": field(act, "value")});
            (amount, description, nested, Value::Null)
        }
    };
    let customer = customer.map_or(
        Value::Null,
        |c| json!({"key": field(c, "key"), "email": field(c, "email"), "name": field(c, "name"), "external_key": field(c, "customer_key")}),
    );
    json!({
        "key": f.key("rwd_"), "created_at": t.created, "updated_at": t.updated, "archived": false,
        "amount": amount, "description": description, "reward_status": status,
        "action": action, "customer": customer, "transaction": transaction,
        "invoice": invoice(f, status, None, t.updated),
        "offer": account.offer,
        "partnership": {
            "key": field(partnership, "key"),
            "name": format!("{} {}", partnership["first_name"].as_str().unwrap_or(""), partnership["last_name"].as_str().unwrap_or("")),
            "group": field(partnership, "group"),
        },
        "trigger": {"key": f.key("trig_")},
    })
}

/// The invoice a reward in `status` carries: none while on hold, paid with a payment date.
/// An existing invoice keeps its key.
pub(super) fn invoice(f: &mut Fake, status: &str, existing: Option<&Value>, now: i64) -> Value {
    let invoice_status = match status {
        "hold" => return Value::Null,
        "pending" => "pending",
        "approved" => "approved",
        "declined" => "flagged",
        _ => "charge_succeeded",
    };
    let key = existing.and_then(|i| i.get("key")).and_then(Value::as_str).map_or_else(|| f.key("invc_"), str::to_owned);
    let payment_date = if invoice_status == "charge_succeeded" { Value::from(now) } else { Value::Null };
    json!({"key": key, "status": invoice_status, "payment_date": payment_date})
}
