//! `partnerstack-mirror doctor`: read-only probes that answer, for the configured account, the
//! questions the public documentation leaves open (the open questions of docs/correctness.md), check the credentials and
//! the clock, and say which configuration fits.
//!
//! The mirror is correct under every answer; the probes tell an operator which answer they
//! have, so they can tune schedules and know what to expect in the events.

use std::{collections::HashSet, fmt};

pub mod database;

use chrono::Utc;
use futures::TryStreamExt;
use serde_json::Value;

use crate::{
    config::PartnerStackConfig,
    object::ObjectKind,
    partnerstack::{
        probe::{self, Burst, FilterProbe},
        ApiClient, ApiError, Collection, ErrorClass, ListQuery,
    },
    telemetry::error_chain,
};

/// One probe's verdict.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub question: &'static str,
    pub answer: Answer,
    pub detail: String,
    pub recommendation: String,
}

/// What a probe found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Ok,
    Yes,
    No,
    /// The account has no data that would tell.
    Undetermined,
    Problem,
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Answer::Ok => "ok",
            Answer::Yes => "yes",
            Answer::No => "no",
            Answer::Undetermined => "undetermined",
            Answer::Problem => "PROBLEM",
        })
    }
}

/// Every finding, in order.
#[derive(Clone, Debug, Default)]
pub struct DoctorReport {
    pub findings: Vec<Finding>,
}

impl DoctorReport {
    pub fn find(&self, question_prefix: &str) -> Option<&Finding> {
        self.findings.iter().find(|f| f.question.starts_with(question_prefix))
    }

    pub fn healthy(&self) -> bool {
        !self.findings.iter().any(|f| f.answer == Answer::Problem)
    }
}

impl fmt::Display for DoctorReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for x in &self.findings {
            writeln!(f, "[{}] {}\n    {}\n    → {}", x.answer, x.question, x.detail, x.recommendation)?;
        }
        Ok(())
    }
}

/// Objects whose lists are documented to accept `min_updated`.
const UPDATED_OBJECTS: [ObjectKind; 5] =
    [ObjectKind::Deal, ObjectKind::Partnership, ObjectKind::Customer, ObjectKind::Lead, ObjectKind::Action];
/// How far a probe pages through a list looking for an example.
const PROBE_PAGES: usize = 4;

/// Runs every probe. Only the credentials probe stops the rest.
pub async fn examine(api: &ApiClient, config: &PartnerStackConfig) -> DoctorReport {
    let mut report = DoctorReport::default();
    let (groups, one) = (Collection::Objects(ObjectKind::Group), ListQuery { limit: Some(1), ..ListQuery::default() });
    let first = match api.list_page(&groups, &one, None).await {
        Ok(page) => page,
        Err(e) => {
            let fatal = matches!(e.class(), ErrorClass::Fatal);
            report.findings.push(Finding {
                question: "Credentials accepted?",
                answer: Answer::Problem,
                detail: error_chain(&e),
                recommendation: if fatal {
                    "check partnerstack.public_key and the private key (Settings → Integrations → PartnerStack API Keys)".into()
                } else {
                    "check partnerstack.api_url and the network".into()
                },
            });
            return report;
        }
    };
    report.findings.push(Finding {
        question: "Credentials accepted?",
        answer: Answer::Ok,
        detail: "GET /groups answered 200".into(),
        recommendation: "nothing to do".into(),
    });
    report.findings.push(clock(first.server_date));
    report.findings.push(bounds(api).await);
    report.findings.push(archived_listed(api).await);
    for kind in [ObjectKind::Transaction, ObjectKind::Reward] {
        report.findings.push(updated_filter_honoured(api, kind).await);
    }
    report.findings.push(shared_milliseconds(api).await);
    report.findings.push(retry_after(config).await);
    report.findings.push(tags_body());
    report.findings.push(webhook_subscriptions(api).await);
    report
}

/// Which field the API's webhook subscriptions carry their URL in (the body of
/// `POST /v2/webhooks` is not documented): read from the live list, changing nothing.
async fn webhook_subscriptions(api: &ApiClient) -> Finding {
    let question = "Webhook subscriptions: which field holds the URL?";
    match api.subscriptions().await {
        Ok(subs) => match subs.iter().find_map(|s| s.url_field()) {
            Some(field) => Finding {
                question,
                answer: Answer::Ok,
                detail: format!("{} subscription(s); the URL is in `{field}`", subs.len()),
                recommendation: format!("`webhooks register` sends `{field}`"),
            },
            None => Finding {
                question,
                answer: Answer::Undetermined,
                detail: format!("{} subscription(s), none with a URL field to read", subs.len()),
                recommendation: "`webhooks register` sends `target`, and `url` if the API asks for it".into(),
            },
        },
        Err(e) => Finding {
            question,
            answer: Answer::Undetermined,
            detail: format!("GET /webhooks failed: {}", error_chain(&e)),
            recommendation: "webhook intake still works; register the subscription in PartnerStack's dashboard".into(),
        },
    }
}

fn clock(server: Option<chrono::DateTime<Utc>>) -> Finding {
    let question = "Clock in step with the API?";
    let Some(server) = server else {
        return Finding {
            question,
            answer: Answer::Undetermined,
            detail: "the API sent no Date header".into(),
            recommendation: "keep sync.settle at 5s or more".into(),
        };
    };
    let skew = (Utc::now() - server).num_milliseconds() as f64 / 1000.0;
    // The Date header has one-second resolution.
    let ok = skew.abs() <= 2.0;
    Finding {
        question,
        answer: if ok { Answer::Ok } else { Answer::Problem },
        detail: format!("local clock is {skew:+.1}s from the API's Date header"),
        recommendation: if ok {
            "nothing to do".into()
        } else {
            format!("run NTP, or set sync.settle above {:.0}s", skew.abs().ceil() + 5.0)
        },
    }
}

async fn keys(api: &ApiClient, listing: &Collection, query: ListQuery) -> Result<HashSet<String>, ApiError> {
    let pages: Vec<_> = api.list(listing, query).try_collect().await?;
    Ok(pages
        .iter()
        .flat_map(|p| p.items.iter())
        .filter_map(|raw| serde_json::from_str::<Value>(raw.get()).ok())
        .filter_map(|v| v.get("key").and_then(Value::as_str).map(str::to_owned))
        .collect())
}

/// Question 1 of docs/correctness.md: takes one record and asks for windows that start, then end, on its exact
/// `updated_at`.
async fn bounds(api: &ApiClient) -> Finding {
    let question = "9.1 Are min_updated/max_updated bounds inclusive?";
    for listing in UPDATED_OBJECTS.map(Collection::Objects) {
        let Ok(page) = api.list_page(&listing, &ListQuery { limit: Some(1), ..ListQuery::default() }, None).await else { continue };
        let Some(record) = page.items.first().and_then(|r| serde_json::from_str::<Value>(r.get()).ok()) else { continue };
        let (Some(key), Some(updated)) = (record.get("key").and_then(Value::as_str), record.get("updated_at").and_then(Value::as_i64))
        else {
            continue;
        };
        let window = |from, until| ListQuery { min_updated: Some(from), max_updated: Some(until), ..ListQuery::default() };
        let from = keys(api, &listing, window(updated, updated + 60_000)).await;
        let until = keys(api, &listing, window(updated - 60_000, updated)).await;
        let (Ok(from), Ok(until)) = (from, until) else { continue };
        let (min_inclusive, max_inclusive) = (from.contains(key), until.contains(key));
        let word = |b: bool| if b { "inclusive" } else { "exclusive" };
        return Finding {
            question,
            answer: if min_inclusive && max_inclusive { Answer::Yes } else { Answer::No },
            detail: format!("on {listing}, record {key}: min_updated is {}, max_updated is {}", word(min_inclusive), word(max_inclusive)),
            recommendation: "nothing to do: every window is requested 1 ms wider on both sides, right under either answer".into(),
        };
    }
    Finding {
        question,
        answer: Answer::Undetermined,
        detail: "no record to probe with".into(),
        recommendation: "nothing to do: every window is requested 1 ms wider on both sides".into(),
    }
}

/// Question 2 of docs/correctness.md: looks for an archived record in the first pages of the lists that archive.
async fn archived_listed(api: &ApiClient) -> Finding {
    let question = "9.2 Do archived records stay in list results?";
    let archiving = [ObjectKind::Deal, ObjectKind::Partnership, ObjectKind::Lead, ObjectKind::Customer, ObjectKind::Action];
    for listing in archiving.map(Collection::Objects) {
        let mut pages = std::pin::pin!(api.list(&listing, ListQuery::default()));
        for _ in 0..PROBE_PAGES {
            let Ok(Some(page)) = pages.try_next().await else { break };
            for raw in &page.items {
                let Ok(v) = serde_json::from_str::<Value>(raw.get()) else { continue };
                if matches!(v.get("archived"), Some(Value::Bool(true))) || v.get("archived").and_then(Value::as_str) == Some("true") {
                    let key = v.get("key").and_then(Value::as_str).unwrap_or("?");
                    return Finding {
                        question,
                        answer: Answer::Yes,
                        detail: format!("{listing} lists {key} with archived: true"),
                        recommendation: "archives arrive as <object>.deleted events from polls; keep sync.reconcile_schedule for records that are deleted outright".into(),
                    };
                }
            }
            if !page.has_more {
                break;
            }
        }
    }
    Finding {
        question,
        answer: Answer::Undetermined,
        detail: format!(
            "no archived record in the first {PROBE_PAGES} pages of each list: either none exist, or archived records vanish from lists"
        ),
        recommendation: "keep sync.reconcile_schedule: the key scan marks vanished records deleted under either answer".into(),
    }
}

/// Question 4 of docs/correctness.md: pages through the first records of the lists by `updated_at` window (the way
/// polls read them), in small pages, looking for records that share one `updated_at`
/// millisecond, and for such a group split by a page boundary.
async fn shared_milliseconds(api: &ApiClient) -> Finding {
    let question = "9.4 Do records share one updated_at millisecond (also across a page boundary)?";
    let recommendation = "nothing to do: polls read whole milliseconds (a window never ends inside one) and overlap by sync.lookback";
    let mut seen = 0;
    for listing in UPDATED_OBJECTS.map(Collection::Objects) {
        let query = ListQuery { limit: Some(25), min_updated: Some(0), ..ListQuery::default() };
        let mut pages = std::pin::pin!(api.list(&listing, query));
        let mut counts: std::collections::HashMap<i64, usize> = std::collections::HashMap::new();
        let mut across = None;
        let mut last_of_page = None;
        for _ in 0..PROBE_PAGES {
            let Ok(Some(page)) = pages.try_next().await else { break };
            let stamps: Vec<i64> =
                page.items.iter().filter_map(|raw| serde_json::from_str::<Value>(raw.get()).ok()?.get("updated_at")?.as_i64()).collect();
            if let (Some(before), Some(first)) = (last_of_page, stamps.first()) {
                if before == *first {
                    across = Some(before);
                }
            }
            last_of_page = stamps.last().copied();
            for ms in stamps {
                *counts.entry(ms).or_default() += 1;
                seen += 1;
            }
            if !page.has_more {
                break;
            }
        }
        let shared = counts.values().filter(|n| **n > 1).count();
        if shared > 0 {
            let largest = counts.values().max().copied().unwrap_or(0);
            let boundary = match across {
                Some(ms) => format!("; the group at {ms} spans a page boundary"),
                None => String::new(),
            };
            return Finding {
                question,
                answer: Answer::Yes,
                detail: format!("on {listing}: {shared} milliseconds shared, up to {largest} records in one{boundary}"),
                recommendation: recommendation.into(),
            };
        }
    }
    Finding {
        question,
        answer: Answer::Undetermined,
        detail: format!("no shared millisecond among the {seen} records probed"),
        recommendation: recommendation.into(),
    }
}

/// Question 6 of docs/correctness.md cannot be probed without changing a partnership: said so, with where the answer
/// comes from.
fn tags_body() -> Finding {
    Finding {
        question: "9.6 Which body does PATCH /partnerships/{key}/tags take?",
        answer: Answer::Undetermined,
        detail: "not probed: it would change a partnership".into(),
        recommendation:
            "nothing to do: the first modify_tags request checks the tags afterwards and fails naming 9.6 if the API ignored its body"
                .into(),
    }
}

/// Question 3 of docs/correctness.md: a `min_updated` in the future must return nothing if it is honoured (the probe
/// the daemon also runs, at start and daily).
async fn updated_filter_honoured(api: &ApiClient, kind: ObjectKind) -> Finding {
    let listing = Collection::Objects(kind);
    let question = if kind == ObjectKind::Transaction {
        "9.3 Is min_updated honoured on /transactions?"
    } else {
        "9.3 Is min_updated honoured on /rewards?"
    };
    let problem = |e: ApiError| Finding {
        question,
        answer: Answer::Problem,
        detail: error_chain(&e),
        recommendation: "check access to this list".into(),
    };
    match probe::updated_filter(api, kind).await {
        FilterProbe::Empty => Finding {
            question,
            answer: Answer::Undetermined,
            detail: format!("{listing} is empty"),
            recommendation: "nothing to do".into(),
        },
        FilterProbe::Honoured => Finding {
            question,
            answer: Answer::Yes,
            detail: format!("{listing}?min_updated=<next year> returned nothing"),
            recommendation: "nothing to do: the daemon finds this too, polls the list by updated windows and drops its hourly rescan"
                .into(),
        },
        FilterProbe::Ignored => Finding {
            question,
            answer: Answer::No,
            detail: format!("{listing}?min_updated=<next year> still returned records: the filter is ignored"),
            recommendation: "keep sync.rescan_schedule: rescans are the only way to see later changes here".into(),
        },
        FilterProbe::Failed(e) => problem(e),
    }
}

/// Question 5 of docs/correctness.md: a short burst of tiny requests (at most 40) until the first 429, then looks at
/// its headers. Bypasses the client's limiter and retries on purpose.
pub async fn retry_after(config: &PartnerStackConfig) -> Finding {
    let question = "9.5 Does a 429 carry Retry-After?";
    match probe::burst(&config.api_url, &config.public_key, config.private_key.as_ref(), 40).await {
        Burst::Limited { sent, retry_after } => Finding {
            question,
            answer: if retry_after.is_some() { Answer::Yes } else { Answer::No },
            detail: match retry_after {
                Some(h) => format!("429 after {sent} rapid requests, Retry-After: {h}"),
                None => format!("429 after {sent} rapid requests, without Retry-After"),
            },
            recommendation: format!(
                "the client finds the allowed rate from such 429s; to stay clear of them, set \
                 partnerstack.requests_per_second below {} as a ceiling",
                sent.max(2) - 1
            ),
        },
        Burst::Failed(e) => Finding { question, answer: Answer::Problem, detail: e, recommendation: "check the network".into() },
        Burst::Unlimited { sent } => Finding {
            question,
            answer: Answer::Undetermined,
            detail: format!("{sent} rapid requests drew no 429: the limit is higher"),
            recommendation: "retries honour Retry-After when present and back off exponentially otherwise".into(),
        },
    }
}
