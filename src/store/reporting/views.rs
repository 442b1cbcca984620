//! The reports every partner program runs, as views over the `_current` views: the joins
//! from customers and deals to their partner, revenue, rewards by status, the deal pipeline
//! and the lead funnel, with amounts in currency units (the tables keep the API's cents).
//!
//! A view's columns only ever append (`CREATE OR REPLACE VIEW`); each column is listed with
//! its description, which becomes its comment.

use super::{ident, Script};

/// One report view: its name, what it answers, its query and its columns described.
pub struct Report {
    pub name: &'static str,
    pub about: &'static str,
    pub sql: &'static str,
    pub columns: &'static [(&'static str, &'static str)],
}

/// One row per partner key: the live partnership with that key if there is one, else the
/// latest, so a join on `partner_key` never multiplies rows.
const PARTNERS: &str = "(SELECT DISTINCT ON (partner_key) key, partner_key, email, first_name, last_name, group_name \
     FROM partnerships WHERE partner_key IS NOT NULL ORDER BY partner_key, deleted_at IS NOT NULL, updated_at DESC NULLS LAST, key)";

const PARTNER: &[(&str, &str)] = &[
    ("partnership_key", "PartnerStack's key of the partnership (`partnerships.key`)."),
    ("partner_key", "The partner's own key (`partnerships.partner_key`)."),
    ("partner_email", "The partner's email address."),
];

pub const REPORTS: &[Report] = &[
    Report {
        name: "partner_customers",
        about: "One row per live customer with its partnership (live too): who referred whom. Customers per partner: \
                SELECT partner_key, count(*) FROM partner_customers GROUP BY 1.",
        sql: "SELECT p.key AS partnership_key, p.partner_key, p.email AS partner_email, p.first_name AS partner_first_name, \
                     p.last_name AS partner_last_name, p.group_key, p.group_name, \
                     c.key AS customer_key, c.customer_external_key, c.email AS customer_email, c.name AS customer_name, \
                     c.source_type, c.test, c.created_at AS customer_created_at \
              FROM partnerships_current p JOIN customers_current c ON c.partnership_key = p.key",
        columns: &[
            PARTNER[0],
            PARTNER[1],
            PARTNER[2],
            ("partner_first_name", "The partner's first name."),
            ("partner_last_name", "The partner's last name."),
            ("group_key", "PartnerStack's key of the partner's group (`groups.key`)."),
            ("group_name", "The name of the partner's group."),
            ("customer_key", "PartnerStack's key of the customer (`customers.key`; what transactions and rewards call `customer_key`)."),
            ("customer_external_key", "YOUR key for the customer (`customers.customer_key`)."),
            ("customer_email", "The customer's email address."),
            ("customer_name", "The customer's name."),
            ("source_type", "How the customer came: `link`, `api`, `form`, `import`, …"),
            ("test", "True for a customer created by or under a test partner."),
            ("customer_created_at", "When the customer was created at PartnerStack."),
        ],
    },
    Report {
        name: "partner_deals",
        about: "One row per live deal with its partner (by `partner_key`) and its amount in currency units.",
        sql: "SELECT d.key AS deal_key, d.external_key, d.account_name, d.stage, (d.amount / 100.0)::numeric(20, 2) AS amount, \
                              d.close_date, d.source, p.key AS partnership_key, d.partner_key, p.email AS partner_email, d.customer_key, \
                              d.created_at, d.updated_at \
                       FROM deals_current d LEFT JOIN partners p ON p.partner_key = d.partner_key",
        columns: &[
            ("deal_key", "PartnerStack's key of the deal (`deals.key`)."),
            ("external_key", "YOUR key for the deal (e.g. the CRM opportunity id)."),
            ("account_name", "The prospect's company."),
            ("stage", "The deal's stage."),
            ("amount", "The deal's value in currency units (`deals.amount` / 100)."),
            ("close_date", "The expected or actual close date."),
            ("source", "`partner` (registered by the partner) or `vendor` (added by you)."),
            PARTNER[0],
            PARTNER[1],
            PARTNER[2],
            ("customer_key", "PartnerStack's key of the customer the deal became (`customers.key`)."),
            ("created_at", "When the deal was created at PartnerStack."),
            ("updated_at", "When PartnerStack last changed the deal."),
        ],
    },
    Report {
        name: "partner_revenue",
        about: "One row per partnership credited with live, non-test transactions: their count and revenue in US dollars \
                (`amount_usd` / 100), all and approved only. Refunds are negative and count against the revenue.",
        sql: "SELECT t.partnership_key, p.partner_key, p.email AS partner_email, p.group_name, \
                     count(*) AS transactions, count(*) FILTER (WHERE t.approved) AS approved_transactions, \
                     (coalesce(sum(t.amount_usd), 0) / 100.0)::numeric(20, 2) AS revenue_usd, \
                     (coalesce(sum(t.amount_usd) FILTER (WHERE t.approved), 0) / 100.0)::numeric(20, 2) AS approved_revenue_usd \
              FROM transactions_current t LEFT JOIN partnerships p ON p.key = t.partnership_key \
              WHERE t.test IS NOT TRUE \
              GROUP BY t.partnership_key, p.partner_key, p.email, p.group_name",
        columns: &[
            PARTNER[0],
            PARTNER[1],
            PARTNER[2],
            ("group_name", "The name of the partner's group."),
            ("transactions", "How many live, non-test transactions credit the partnership."),
            ("approved_transactions", "How many of them are approved."),
            ("revenue_usd", "Their sum in US dollars (`transactions.amount_usd` / 100; refunds negative)."),
            ("approved_revenue_usd", "The sum of the approved ones in US dollars."),
        ],
    },
    Report {
        name: "partner_rewards",
        about: "One row per partnership and reward status: how many live rewards and how much, in currency units \
                (`rewards.amount` / 100). Owed but unpaid: WHERE reward_status IN ('pending', 'approved').",
        sql: "SELECT r.partnership_key, p.partner_key, p.email AS partner_email, r.reward_status, count(*) AS rewards, \
                     (coalesce(sum(r.amount), 0) / 100.0)::numeric(20, 2) AS amount \
              FROM rewards_current r LEFT JOIN partnerships p ON p.key = r.partnership_key \
              GROUP BY r.partnership_key, p.partner_key, p.email, r.reward_status",
        columns: &[
            PARTNER[0],
            PARTNER[1],
            PARTNER[2],
            ("reward_status", "`hold`, `pending`, `approved`, `declined` or `paid`."),
            ("rewards", "How many live rewards of the partnership have this status."),
            ("amount", "Their sum in currency units (`rewards.amount` / 100)."),
        ],
    },
    Report {
        name: "deal_pipeline",
        about: "The live deals by stage: how many, and their value in currency units (`deals.amount` / 100). The pipeline \
                as it stood at another time is the same query over `deals_history` (see its comment).",
        sql: "SELECT d.stage, count(*) AS deals, (coalesce(sum(d.amount), 0) / 100.0)::numeric(20, 2) AS amount, \
                     (avg(d.amount) / 100.0)::numeric(20, 2) AS average_amount, \
                     min(d.close_date) AS first_close_date, max(d.close_date) AS last_close_date \
              FROM deals_current d GROUP BY d.stage",
        columns: &[
            ("stage", "The deal stage."),
            ("deals", "How many live deals are at this stage."),
            ("amount", "Their value in currency units (`deals.amount` / 100; deals without an amount count as 0)."),
            ("average_amount", "The average value of those with an amount, in currency units."),
            ("first_close_date", "The earliest close date among them."),
            ("last_close_date", "The latest close date among them."),
        ],
    },
    Report {
        name: "lead_funnel",
        about: "The live leads by partner and status: how many, how many approved and declined, and their value in \
                currency units (`leads.amount` / 100).",
        sql: "SELECT l.partner_key, p.key AS partnership_key, p.email AS partner_email, l.status, count(*) AS leads, \
                              count(*) FILTER (WHERE l.approved) AS approved, count(*) FILTER (WHERE NOT l.approved) AS declined, \
                              (coalesce(sum(l.amount), 0) / 100.0)::numeric(20, 2) AS amount \
                       FROM leads_current l LEFT JOIN partners p ON p.partner_key = l.partner_key \
                       GROUP BY l.partner_key, p.key, p.email, l.status",
        columns: &[
            ("partner_key", "The partner's own key (`leads.partner_key`)."),
            ("partnership_key", "PartnerStack's key of the partner's partnership (`partnerships.key`)."),
            ("partner_email", "The partner's email address."),
            ("status", "`open`, `closed`, `dead`, `closed won` or `closed lost`."),
            ("leads", "How many live leads of the partner have this status."),
            ("approved", "How many of them are approved."),
            ("declined", "How many of them are declined."),
            ("amount", "Their value in currency units (`leads.amount` / 100)."),
        ],
    },
];

pub(super) fn write(script: &mut Script) {
    for report in REPORTS {
        // `partners` is spelled out where a view uses it: a view cannot see another's CTE.
        let sql = report.sql.replace(" partners p ", &format!(" {PARTNERS} p "));
        script.push(&format!("CREATE OR REPLACE VIEW {} AS {sql}", ident(report.name)));
        script.comment("VIEW", &ident(report.name), report.about);
        script.comment_columns(report.name, report.columns.iter().copied());
    }
}
