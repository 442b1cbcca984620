//! The catalogue of PartnerStack object types: what each is called in the API, in the
//! mirror's tables and in event names, how it can be listed incrementally, and which of
//! its fields become typed columns.
//!
//! Everything that differs between object types lives here as data, so the API client,
//! the store and the sync loop all agree on one definition. The simulator fakes the vendor
//! and names the same things its own way (`Resource`); the conversions are at the end, and
//! the integration tests check that both vocabularies agree.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

use partnerstack_simulator::Resource;

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
    /// Only `min_created`/`max_created` can be trusted (SPEC 9.3): new records come from
    /// created windows, later changes from scheduled rescans.
    CreatedOnly,
    /// Not listed on its own: fetched per partner team during rescans.
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
#[derive(Clone, Copy, Debug)]
pub struct Column {
    pub name: &'static str,
    pub ty: ColumnType,
    /// Path into the API record, e.g. `["group", "key"]` for `group_key`.
    pub path: &'static [&'static str],
}

const fn col(name: &'static str, ty: ColumnType, path: &'static [&'static str]) -> Column {
    Column { name, ty, path }
}

use ColumnType::{BigInt, Bool, Date, Text, TextArray, Timestamp};

const PARTNERSHIP: &[Column] = &[
    col("partner_key", Text, &["partner_key"]),
    col("email", Text, &["email"]),
    col("first_name", Text, &["first_name"]),
    col("last_name", Text, &["last_name"]),
    col("joined_at", Timestamp, &["joined_at"]),
    col("group_key", Text, &["group", "key"]),
    col("group_name", Text, &["group", "name"]),
    col("team_key", Text, &["team", "key"]),
    col("tier_key", Text, &["tier", "key"]),
    col("tags", TextArray, &["tags"]),
    col("claimed", Bool, &["claimed"]),
];

const CUSTOMER: &[Column] = &[
    col("customer_key", Text, &["customer_key"]),
    col("email", Text, &["email"]),
    col("name", Text, &["name"]),
    col("partner_key", Text, &["partner_key"]),
    col("partnership_key", Text, &["partnership_key"]),
    col("provider_key", Text, &["provider_key"]),
    col("source_key", Text, &["source_key"]),
    col("source_type", Text, &["source_type"]),
    col("test", Bool, &["test"]),
];

const DEAL: &[Column] = &[
    col("account_name", Text, &["account_name"]),
    col("amount", BigInt, &["amount"]),
    col("close_date", Date, &["close_date"]),
    col("contact_first_name", Text, &["contact_first_name"]),
    col("contact_last_name", Text, &["contact_last_name"]),
    col("customer_key", Text, &["customer_key"]),
    col("external_key", Text, &["external_key"]),
    col("group_key", Text, &["group_key"]),
    col("lost_reason", Text, &["lost_reason"]),
    col("mold_key", Text, &["mold_key"]),
    col("partner_key", Text, &["partner_key"]),
    col("source", Text, &["source"]),
    col("stage", Text, &["stage"]),
    col("team_key", Text, &["team", "key"]),
];

const LEAD: &[Column] = &[
    col("amount", BigInt, &["amount"]),
    col("approved", Bool, &["approved"]),
    col("external_key", Text, &["external_key"]),
    col("group_key", Text, &["group_key"]),
    col("mold_key", Text, &["mold_key"]),
    col("partner_key", Text, &["partner_key"]),
    col("status", Text, &["status"]),
];

const TRANSACTION: &[Column] = &[
    col("amount", BigInt, &["amount"]),
    col("amount_usd", BigInt, &["amount_usd"]),
    col("currency", Text, &["currency"]),
    col("approved", Bool, &["approved"]),
    col("test", Bool, &["test"]),
    col("category_key", Text, &["category_key"]),
    col("product_key", Text, &["product_key"]),
    col("customer_key", Text, &["customer_key"]),
    col("customer_external_key", Text, &["customer", "external_key"]),
    col("partnership_key", Text, &["partnership_key"]),
];

const REWARD: &[Column] = &[
    col("amount", BigInt, &["amount"]),
    col("description", Text, &["description"]),
    col("reward_status", Text, &["reward_status"]),
    col("action_key", Text, &["action", "key"]),
    col("customer_key", Text, &["customer", "key"]),
    col("invoice_status", Text, &["invoice", "status"]),
    col("partnership_key", Text, &["partnership", "key"]),
    col("transaction_key", Text, &["transaction", "key"]),
];

const ACTION: &[Column] = &[
    col("type", Text, &["type"]),
    col("value", BigInt, &["value"]),
    col("partnership_key", Text, &["partnership_key"]),
    col("customer_key", Text, &["customer", "key"]),
    col("company_key", Text, &["company", "key"]),
];

const GROUP: &[Column] = &[
    col("name", Text, &["name"]),
    col("slug", Text, &["slug"]),
    // `default` is a reserved word in SQL.
    col("is_default", Bool, &["default"]),
];

const APPLICATION: &[Column] = &[
    col("email", Text, &["email"]),
    col("first_name", Text, &["first_name"]),
    col("last_name", Text, &["last_name"]),
    col("approved", Bool, &["approved"]),
    col("decline_reason", Text, &["decline_reason"]),
    col("group_key", Text, &["group", "key"]),
    col("group_name", Text, &["group", "name"]),
    col("mold_key", Text, &["mold_key"]),
    col("partner_key", Text, &["partner_key"]),
    col("partnership_key", Text, &["partnership_key"]),
];

const PARTNER_TEAM_MEMBER: &[Column] = &[
    col("team_key", Text, &["team_key"]),
    col("email", Text, &["email"]),
    col("first_name", Text, &["first_name"]),
    col("last_name", Text, &["last_name"]),
    col("joined_at", Timestamp, &["joined_at"]),
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

    /// What `sync.objects` means when it is empty: everything except partner-team members,
    /// which the API only lists one team at a time (one request per partnership team on
    /// every rescan), so an operator opts in to that cost.
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

    /// How changed records of this type can be found.
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

    /// Accepts the table name (`deals`) or the singular event name (`deal`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase().replace('-', "_");
        ObjectKind::ALL.into_iter().find(|k| k.table() == s || k.singular() == s).ok_or(UnknownObject(s))
    }
}

/// The demo, `simulate` and the tests drive the simulator with our object types.
impl From<ObjectKind> for Resource {
    fn from(kind: ObjectKind) -> Resource {
        match kind {
            ObjectKind::Partnership => Resource::Partnership,
            ObjectKind::Customer => Resource::Customer,
            ObjectKind::Deal => Resource::Deal,
            ObjectKind::Lead => Resource::Lead,
            ObjectKind::Transaction => Resource::Transaction,
            ObjectKind::Reward => Resource::Reward,
            ObjectKind::Action => Resource::Action,
            ObjectKind::Group => Resource::Group,
            ObjectKind::Application => Resource::Application,
            ObjectKind::PartnerTeamMember => Resource::PartnerTeamMember,
        }
    }
}

/// What the simulator reports changing (`Applied::kind`), as the mirror's object type.
impl From<Resource> for ObjectKind {
    fn from(resource: Resource) -> ObjectKind {
        match resource {
            Resource::Partnership => ObjectKind::Partnership,
            Resource::Customer => ObjectKind::Customer,
            Resource::Deal => ObjectKind::Deal,
            Resource::Lead => ObjectKind::Lead,
            Resource::Transaction => ObjectKind::Transaction,
            Resource::Reward => ObjectKind::Reward,
            Resource::Action => ObjectKind::Action,
            Resource::Group => ObjectKind::Group,
            Resource::Application => ObjectKind::Application,
            Resource::PartnerTeamMember => ObjectKind::PartnerTeamMember,
        }
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
        }
        assert!("widgets".parse::<ObjectKind>().is_err());
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
