//! The catalogue of PartnerStack object types: what each is called in the API, in the
//! mirror's tables and in event names, how it can be listed incrementally, and which of
//! its fields become typed columns.
//!
//! Everything that differs between object types lives here as data, so the API client,
//! the store and the sync loop all agree on one definition. The simulator fakes the vendor
//! and names the same things its own way (`Resource`); the two meet by the API's names (an
//! `ObjectKind` displays as its table name, which the simulator reads), and the integration
//! tests check that both vocabularies agree.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// One PartnerStack object type mirrored into its own table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    Partnership,
    Customer,
    Deal,
    Lead,
    Transaction,
    Reward,
    Action,
    Group,
    Application,
    PartnerTeamMember,
}

/// How the API lets us find records that changed since a point in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeFilter {
    /// `min_updated`/`max_updated` are honoured: incremental windows over `updated_at`.
    Updated,
    /// Only `min_created`/`max_created` are documented (docs/correctness.md, question 3): new records come from
    /// created windows, later changes from scheduled rescans, unless the daemon's probe finds
    /// `min_updated` honoured ([`crate::store::ObjectState::change_filter`]).
    CreatedOnly,
    /// Not listed on its own: fetched per partner team, for the teams that may have changed
    /// and, in the daily key scan, for every team.
    PerTeam,
}

/// The SQL type a typed column is stored as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnType {
    Text,
    BigInt,
    Bool,
    /// Epoch milliseconds in the API, `timestamptz` in the table.
    Timestamp,
    /// `YYYY-MM-DD` in the API, `date` in the table.
    Date,
    TextArray,
}

impl ColumnType {
    /// The column's SQL type name.
    pub fn sql(self) -> &'static str {
        match self {
            ColumnType::Text => "text",
            ColumnType::BigInt => "bigint",
            ColumnType::Bool => "boolean",
            ColumnType::Timestamp => "timestamptz",
            ColumnType::Date => "date",
            ColumnType::TextArray => "text[]",
        }
    }
}

/// A typed column filled from a (possibly nested) field of the API record.
///
/// Each object's list is in table order: a new column goes at the end of its list, as
/// `ALTER TABLE … ADD COLUMN` puts it at the end of the table, so the views built from this
/// list (`<table>_history`) only ever gain columns at their end (`CREATE OR REPLACE VIEW`
/// cannot reorder them).
#[derive(Clone, Copy, Debug)]
pub struct Column {
    pub name: &'static str,
    pub ty: ColumnType,
    /// Path into the API record, e.g. `["group", "key"]` for `group_key`.
    pub path: &'static [&'static str],
    /// What the column holds, for the schema's `COMMENT ON COLUMN` (BI tools show it).
    pub about: &'static str,
    /// The column of another object table this one joins, if any.
    pub joins: Option<Join>,
}

/// A join path: a typed column holds values of `kind`'s `column`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Join {
    pub kind: ObjectKind,
    pub column: &'static str,
}

const fn col(name: &'static str, ty: ColumnType, path: &'static [&'static str], about: &'static str) -> Column {
    Column { name, ty, path, about, joins: None }
}

impl Column {
    /// The column holds values of `kind`'s `column`.
    const fn joins(self, kind: ObjectKind, column: &'static str) -> Column {
        Column { joins: Some(Join { kind, column }), ..self }
    }
}

use ColumnType::{BigInt, Bool, Date, Text, TextArray, Timestamp};
use ObjectKind as K;

const PARTNERSHIP: &[Column] = &[
    col(
        "partner_key",
        Text,
        &["partner_key"],
        "The partner's own key in the program (unique per partner, chosen at signup or through the API); \
         customers, deals, leads and applications name their partner by it.",
    ),
    col("email", Text, &["email"], "The partner's email address."),
    col("first_name", Text, &["first_name"], "The partner's first name."),
    col("last_name", Text, &["last_name"], "The partner's last name."),
    col("joined_at", Timestamp, &["joined_at"], "When the partner joined the program."),
    col("group_key", Text, &["group", "key"], "PartnerStack's key of the partner's group (`group.key`).").joins(K::Group, "key"),
    col("group_name", Text, &["group", "name"], "The name of the partner's group (`group.name`), as the partnership last reported it."),
    col(
        "team_key",
        Text,
        &["team", "key"],
        "PartnerStack's key of the partner's team (`team.key`); its members are in `partner_team_members`.",
    ),
    col("tier_key", Text, &["tier", "key"], "PartnerStack's key of the partner's tier (`tier.key`); its name is in `raw->'tier'`."),
    col("tags", TextArray, &["tags"], "The partner's tags."),
    col("claimed", Bool, &["claimed"], "Whether the partner has claimed the account (signed in to PartnerStack)."),
];

const CUSTOMER: &[Column] = &[
    col(
        "customer_key",
        Text,
        &["customer_key"],
        "YOUR key for the customer (your own system's id, set when the customer was created; `/v2/customers/{customer_key}` \
         addresses it). Not PartnerStack's key: the `customer_key` of transactions, rewards, actions and deals holds \
         `customers.key`. Same value as `customer_external_key`.",
    ),
    col("email", Text, &["email"], "The customer's email address."),
    col("name", Text, &["name"], "The customer's name."),
    col("partner_key", Text, &["partner_key"], "The referring partner's key.").joins(K::Partnership, "partner_key"),
    col("partnership_key", Text, &["partnership_key"], "PartnerStack's key of the referring partnership.").joins(K::Partnership, "key"),
    col("provider_key", Text, &["provider_key"], "The customer's id at the billing provider (Stripe, Recurly, Chargebee, …)."),
    col("source_key", Text, &["source_key"], "The key of the source the customer came through (e.g. a partner link)."),
    col("source_type", Text, &["source_type"], "How the customer came: `link`, `api`, `form`, `import`, …"),
    col("test", Bool, &["test"], "True for a customer created by or under a test partner."),
    col(
        "customer_external_key",
        Text,
        &["customer_key"],
        "YOUR key for the customer: the same value as `customer_key`, under the name transactions give it.",
    ),
];

const DEAL: &[Column] = &[
    col("account_name", Text, &["account_name"], "The prospect's company."),
    col("amount", BigInt, &["amount"], "The deal's value in cents (integer; `deal_pipeline` shows currency units)."),
    col("close_date", Date, &["close_date"], "The expected or actual close date."),
    col("contact_first_name", Text, &["contact_first_name"], "The prospect contact's first name."),
    col("contact_last_name", Text, &["contact_last_name"], "The prospect contact's last name."),
    col("customer_key", Text, &["customer_key"], "PartnerStack's internal key of the customer the deal became (not YOUR customer key).")
        .joins(K::Customer, "key"),
    col(
        "external_key",
        Text,
        &["external_key"],
        "YOUR key for the deal (e.g. the CRM opportunity id); the API accepts it in place of `key`.",
    ),
    col("group_key", Text, &["group_key"], "PartnerStack's key of the deal partner's group.").joins(K::Group, "key"),
    col("lost_reason", Text, &["lost_reason"], "Why the deal was lost."),
    col("mold_key", Text, &["mold_key"], "PartnerStack's key of the deal form (mold) the deal was submitted with."),
    col("partner_key", Text, &["partner_key"], "The key of the partner who registered the deal.").joins(K::Partnership, "partner_key"),
    col("source", Text, &["source"], "`partner` (registered by the partner) or `vendor` (added by you)."),
    col("stage", Text, &["stage"], "The deal's stage, one of its group's deal stages (e.g. `Closed Won`)."),
    col("team_key", Text, &["team", "key"], "PartnerStack's key of the partner's team (`team.key`).").joins(K::Partnership, "team_key"),
];

const LEAD: &[Column] = &[
    col("amount", BigInt, &["amount"], "The lead's value in cents (integer)."),
    col("approved", Bool, &["approved"], "Whether the lead was approved (NULL: not decided)."),
    col("external_key", Text, &["external_key"], "YOUR key for the lead (often its email); the API accepts it in place of `key`."),
    col("group_key", Text, &["group_key"], "PartnerStack's key of the lead partner's group.").joins(K::Group, "key"),
    col("mold_key", Text, &["mold_key"], "PartnerStack's key of the lead form (mold) the lead was submitted with."),
    col("partner_key", Text, &["partner_key"], "The key of the partner who submitted the lead.").joins(K::Partnership, "partner_key"),
    col("status", Text, &["status"], "`open`, `closed`, `dead`, `closed won` or `closed lost` (with a space)."),
];

const TRANSACTION: &[Column] = &[
    col("amount", BigInt, &["amount"], "The amount in cents of `currency` (negative for a refund)."),
    col("amount_usd", BigInt, &["amount_usd"], "The amount converted by PartnerStack to US cents."),
    col("currency", Text, &["currency"], "The three-letter ISO code of `amount`'s currency."),
    col("approved", Bool, &["approved"], "Whether the transaction is approved (counts towards rewards)."),
    col("test", Bool, &["test"], "True for a test transaction."),
    col("category_key", Text, &["category_key"], "YOUR category of the transaction (e.g. a plan family)."),
    col("product_key", Text, &["product_key"], "YOUR product key."),
    col(
        "customer_key",
        Text,
        &["customer_key"],
        "PartnerStack's INTERNAL key of the customer, not YOUR `customers.customer_key` (that one is `customer_external_key`).",
    )
    .joins(K::Customer, "key"),
    col("customer_external_key", Text, &["customer", "external_key"], "YOUR key for the customer (`customer.external_key`).")
        .joins(K::Customer, "customer_external_key"),
    col("partnership_key", Text, &["partnership_key"], "PartnerStack's key of the partnership credited.").joins(K::Partnership, "key"),
];

const REWARD: &[Column] = &[
    col("amount", BigInt, &["amount"], "The reward in cents."),
    col("description", Text, &["description"], "What the reward is for, as PartnerStack words it."),
    col("reward_status", Text, &["reward_status"], "`hold`, `pending`, `approved`, `declined` or `paid`."),
    col("action_key", Text, &["action", "key"], "PartnerStack's key of the action the reward pays for (`action.key`; bounties).")
        .joins(K::Action, "key"),
    col("customer_key", Text, &["customer", "key"], "PartnerStack's INTERNAL key of the customer (`customer.key`), not YOUR customer key.")
        .joins(K::Customer, "key"),
    col(
        "invoice_status",
        Text,
        &["invoice", "status"],
        "The status of the invoice paying the reward (`invoice.status`); NULL while on hold.",
    ),
    col("partnership_key", Text, &["partnership", "key"], "PartnerStack's key of the partnership rewarded (`partnership.key`).")
        .joins(K::Partnership, "key"),
    col("transaction_key", Text, &["transaction", "key"], "PartnerStack's key of the transaction the reward pays for (`transaction.key`).")
        .joins(K::Transaction, "key"),
];

const ACTION: &[Column] = &[
    col("type", Text, &["type"], "The action's name, matching a reward trigger (e.g. `signup`)."),
    col("value", BigInt, &["value"], "The action's count or value (an integer, at least 1)."),
    col("partnership_key", Text, &["partnership_key"], "PartnerStack's key of the partnership the action counts for.")
        .joins(K::Partnership, "key"),
    col("customer_key", Text, &["customer", "key"], "PartnerStack's INTERNAL key of the customer (`customer.key`), not YOUR customer key.")
        .joins(K::Customer, "key"),
    col("company_key", Text, &["company", "key"], "PartnerStack's key of your company (`company.key`)."),
];

const GROUP: &[Column] = &[
    col("name", Text, &["name"], "The group's name."),
    col("slug", Text, &["slug"], "The group's slug (in signup links)."),
    // `default` is a reserved word in SQL.
    col("is_default", Bool, &["default"], "Whether new partners join this group (the API's `default`, a reserved word in SQL)."),
];

const APPLICATION: &[Column] = &[
    col("email", Text, &["email"], "The applicant's email address."),
    col("first_name", Text, &["first_name"], "The applicant's first name."),
    col("last_name", Text, &["last_name"], "The applicant's last name."),
    col("approved", Bool, &["approved"], "Whether the application was approved (NULL: not decided)."),
    col("decline_reason", Text, &["decline_reason"], "Why the application was declined."),
    col("group_key", Text, &["group", "key"], "PartnerStack's key of the group applied to (`group.key`).").joins(K::Group, "key"),
    col("group_name", Text, &["group", "name"], "The name of the group applied to (`group.name`)."),
    col("mold_key", Text, &["mold_key"], "PartnerStack's key of the application form (mold)."),
    col("partner_key", Text, &["partner_key"], "The key of the partner an approved application became.")
        .joins(K::Partnership, "partner_key"),
    col("partnership_key", Text, &["partnership_key"], "PartnerStack's key of the partnership an approved application became.")
        .joins(K::Partnership, "key"),
];

const PARTNER_TEAM_MEMBER: &[Column] = &[
    col("team_key", Text, &["team_key"], "PartnerStack's key of the partner team.").joins(K::Partnership, "team_key"),
    col("email", Text, &["email"], "The member's email address."),
    col("first_name", Text, &["first_name"], "The member's first name."),
    col("last_name", Text, &["last_name"], "The member's last name."),
    col("joined_at", Timestamp, &["joined_at"], "When the member joined the team."),
];

impl ObjectKind {
    /// Every object type, in the order passes run them (parents before children).
    pub const ALL: [ObjectKind; 10] = [
        ObjectKind::Group,
        ObjectKind::Partnership,
        ObjectKind::Application,
        ObjectKind::Customer,
        ObjectKind::Deal,
        ObjectKind::Lead,
        ObjectKind::Action,
        ObjectKind::Transaction,
        ObjectKind::Reward,
        ObjectKind::PartnerTeamMember,
    ];

    /// What `sync.objects` means when it is empty: every object but partner-team members
    /// (docs/configuration.md, 14). The API lists members one team at a time, so they cost a request per
    /// team on a backfill (on an account of 180,000 records, 20,000 requests where the nine
    /// other objects need 739) and a walk of every team each day: an operator who wants
    /// them lists them.
    pub fn default_set() -> Vec<ObjectKind> {
        ObjectKind::ALL.into_iter().filter(|k| *k != ObjectKind::PartnerTeamMember).collect()
    }

    /// The mirror table, in the configured schema.
    pub fn table(self) -> &'static str {
        match self {
            ObjectKind::Partnership => "partnerships",
            ObjectKind::Customer => "customers",
            ObjectKind::Deal => "deals",
            ObjectKind::Lead => "leads",
            ObjectKind::Transaction => "transactions",
            ObjectKind::Reward => "rewards",
            ObjectKind::Action => "actions",
            ObjectKind::Group => "groups",
            ObjectKind::Application => "applications",
            ObjectKind::PartnerTeamMember => "partner_team_members",
        }
    }

    /// What one row of the table is, for the schema's `COMMENT ON TABLE`.
    pub fn about(self) -> &'static str {
        match self {
            ObjectKind::Partnership => "One row per partnership: a partner's membership in your program (API `/v2/partnerships`).",
            ObjectKind::Customer => "One row per customer a partner referred (API `/v2/customers`).",
            ObjectKind::Deal => "One row per deal a partner registered or you added (API `/v2/deals`).",
            ObjectKind::Lead => "One row per lead a partner submitted (API `/v2/leads`).",
            ObjectKind::Transaction => {
                "One row per transaction: a payment or refund of a customer, the basis of rewards (API `/v2/transactions`)."
            }
            ObjectKind::Reward => "One row per reward (commission or bounty) owed to a partner (API `/v2/rewards`).",
            ObjectKind::Action => "One row per action recorded for a partnership or customer (API `/v2/actions`).",
            ObjectKind::Group => "One row per partner group (API `/v2/groups`).",
            ObjectKind::Application => "One row per application to join the program (API `/v2/applications`).",
            ObjectKind::PartnerTeamMember => {
                "One row per member of a partner's team (API `/v2/partner-team/{team_key}`; opt-in through `sync.objects`)."
            }
        }
    }

    /// The record in words ("deal", "partner-team member"), for descriptions.
    pub fn noun(self) -> &'static str {
        match self {
            ObjectKind::PartnerTeamMember => "partner-team member",
            other => other.singular(),
        }
    }

    /// The singular name used as `events.object_type` and as the event-type prefix.
    pub fn singular(self) -> &'static str {
        match self {
            ObjectKind::Partnership => "partnership",
            ObjectKind::Customer => "customer",
            ObjectKind::Deal => "deal",
            ObjectKind::Lead => "lead",
            ObjectKind::Transaction => "transaction",
            ObjectKind::Reward => "reward",
            ObjectKind::Action => "action",
            ObjectKind::Group => "group",
            ObjectKind::Application => "application",
            ObjectKind::PartnerTeamMember => "partner_team",
        }
    }

    /// The list path under the API base URL (`/v2` is part of the base URL).
    /// Partner-team members are listed per team at `partner-team/{team_key}`.
    pub fn api_path(self) -> &'static str {
        match self {
            ObjectKind::PartnerTeamMember => "partner-team",
            other => other.table(),
        }
    }

    /// How changed records of this type can be found, as documented (the probe may find
    /// more: see [`crate::store::ObjectState::change_filter`]).
    pub fn change_filter(self) -> ChangeFilter {
        match self {
            ObjectKind::Transaction | ObjectKind::Reward => ChangeFilter::CreatedOnly,
            ObjectKind::PartnerTeamMember => ChangeFilter::PerTeam,
            _ => ChangeFilter::Updated,
        }
    }

    /// The typed columns besides the common ones (`key`, `created_at`, `updated_at`,
    /// `archived`, `deleted_at`, `raw`, `first_synced_at`, `synced_at`).
    pub fn columns(self) -> &'static [Column] {
        match self {
            ObjectKind::Partnership => PARTNERSHIP,
            ObjectKind::Customer => CUSTOMER,
            ObjectKind::Deal => DEAL,
            ObjectKind::Lead => LEAD,
            ObjectKind::Transaction => TRANSACTION,
            ObjectKind::Reward => REWARD,
            ObjectKind::Action => ACTION,
            ObjectKind::Group => GROUP,
            ObjectKind::Application => APPLICATION,
            ObjectKind::PartnerTeamMember => PARTNER_TEAM_MEMBER,
        }
    }
}

/// Every join path the catalogue declares, as (object, its column, what it joins).
pub fn join_paths() -> impl Iterator<Item = (ObjectKind, &'static Column, Join)> {
    ObjectKind::ALL.into_iter().flat_map(|kind| kind.columns().iter().filter_map(move |c| c.joins.map(|j| (kind, c, j))))
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.table())
    }
}

/// The name given was not an object type.
#[derive(Debug, thiserror::Error)]
#[error("unknown object `{0}` (expected one of: partnerships, customers, deals, leads, transactions, rewards, actions, groups, applications, partner_team_members)")]
pub struct UnknownObject(pub String);

impl FromStr for ObjectKind {
    type Err = UnknownObject;

    /// Accepts the table name (`deals`), the singular event name (`deal`), or the table
    /// name's singular (`partner_team_member`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase().replace('-', "_");
        ObjectKind::ALL
            .into_iter()
            .find(|k| k.table() == s || k.singular() == s || k.table().strip_suffix('s') == Some(s.as_str()))
            .ok_or(UnknownObject(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_parses_from_its_table_and_singular_names() {
        for kind in ObjectKind::ALL {
            assert_eq!(kind.table().parse::<ObjectKind>().unwrap(), kind);
            assert_eq!(kind.singular().parse::<ObjectKind>().unwrap(), kind);
            assert_eq!(kind.table().trim_end_matches('s').parse::<ObjectKind>().unwrap(), kind);
        }
        assert_eq!("Partner-Team-Member".parse::<ObjectKind>().unwrap(), ObjectKind::PartnerTeamMember);
        assert!("widgets".parse::<ObjectKind>().is_err());
    }

    #[test]
    fn every_typed_column_is_described_and_every_join_names_a_column_that_exists() {
        for kind in ObjectKind::ALL {
            for c in kind.columns() {
                assert!(c.about.len() > 10 && c.about.ends_with(['.', '…']), "{kind}.{}: {:?}", c.name, c.about);
            }
        }
        for (kind, column, join) in join_paths() {
            let target = join.column == "key" || join.kind.columns().iter().any(|c| c.name == join.column);
            assert!(target, "{kind}.{} joins {}.{}, which is not a column", column.name, join.kind, join.column);
        }
    }

    #[test]
    fn the_tables_page_lists_every_join_the_catalogue_declares() {
        let tables = include_str!("../docs/tables.md");
        for (kind, column, join) in join_paths() {
            let line = format!("| `{kind}.{}` | `{}.{}` |", column.name, join.kind, join.column);
            assert!(tables.contains(&line), "docs/tables.md's Joins section lacks the row {line}");
        }
    }

    #[test]
    fn no_typed_column_collides_with_a_common_column() {
        let common = ["key", "created_at", "updated_at", "archived", "deleted_at", "raw", "first_synced_at", "synced_at"];
        for kind in ObjectKind::ALL {
            for c in kind.columns() {
                assert!(!common.contains(&c.name), "{kind}: {}", c.name);
            }
        }
    }
}
