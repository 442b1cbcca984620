//! The vendor's resources as the simulator fakes them: what each is called in paths,
//! messages and event types, and which time filters its lists can be trusted with.
//!
//! The simulator keeps this vocabulary of its own instead of reading the mirror's
//! catalogue: it plays the vendor, and the vendor knows nothing of our tables. The mirror's
//! integration tests check that the two agree.

use std::fmt;

/// One kind of record the API serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
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

impl Resource {
    /// Every resource, parents before children.
    pub const ALL: [Resource; 10] = [
        Resource::Group,
        Resource::Partnership,
        Resource::Application,
        Resource::Customer,
        Resource::Deal,
        Resource::Lead,
        Resource::Action,
        Resource::Transaction,
        Resource::Reward,
        Resource::PartnerTeamMember,
    ];

    /// The list path under `/api/v2/`. Partner-team members are listed one team at a time,
    /// at `partner-team/{team_key}`.
    pub fn path(self) -> &'static str {
        match self {
            Resource::Partnership => "partnerships",
            Resource::Customer => "customers",
            Resource::Deal => "deals",
            Resource::Lead => "leads",
            Resource::Transaction => "transactions",
            Resource::Reward => "rewards",
            Resource::Action => "actions",
            Resource::Group => "groups",
            Resource::Application => "applications",
            Resource::PartnerTeamMember => "partner-team",
        }
    }

    /// The name in the API's messages and in event types (`deal`, `deal.updated`).
    pub fn singular(self) -> &'static str {
        match self {
            Resource::Partnership => "partnership",
            Resource::Customer => "customer",
            Resource::Deal => "deal",
            Resource::Lead => "lead",
            Resource::Transaction => "transaction",
            Resource::Reward => "reward",
            Resource::Action => "action",
            Resource::Group => "group",
            Resource::Application => "application",
            Resource::PartnerTeamMember => "partner_team",
        }
    }

    /// Whether only `min_created`/`max_created` are sure to filter its lists: transactions
    /// and rewards, whose lists ignore `min_updated`/`max_updated` while
    /// `SimulatorConfig::created_only_ignore_updated_filter` is on (docs/correctness.md, question 3).
    pub fn created_only(self) -> bool {
        matches!(self, Resource::Transaction | Resource::Reward)
    }
}

impl Resource {
    /// The resource called `name`: its plural (`deals`, `partner_team_members`), its list path
    /// (`partner-team`) or its singular (`deal`).
    pub fn named(name: &str) -> Option<Resource> {
        Resource::ALL.into_iter().find(|r| r.to_string() == name || r.path() == name || r.singular() == name)
    }
}

/// Anything that names a kind of record: a [`Resource`], or a value whose `Display` is one of
/// its names, as the mirror's `ObjectKind` is (`deals`). The simulator fakes the vendor and
/// knows nothing of the mirror's types; the two meet by the API's own names, as the real API
/// and the mirror do.
pub trait AsResource {
    fn resource(&self) -> Resource;
}

impl<T: fmt::Display + ?Sized> AsResource for T {
    /// Panics on a name no resource has: a test asked for something the API does not serve.
    fn resource(&self) -> Resource {
        let name = self.to_string();
        Resource::named(&name).unwrap_or_else(|| panic!("the simulator serves nothing called {name:?}"))
    }
}

impl fmt::Display for Resource {
    /// The plural name, e.g. `deals` or `partner_team_members`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resource::PartnerTeamMember => f.write_str("partner_team_members"),
            other => f.write_str(other.path()),
        }
    }
}
