//! `doctor`'s look at the database: reachable, new enough, encrypted, and the privileges the
//! mirror's role needs (docs/your-database.md), each named in words a DBA can act on. Read-only: nothing
//! is created or granted here.

use super::{Answer, Finding};
use crate::{
    config::Config,
    daemon::{self, WiringError},
    store::{Store, StoreError},
    telemetry::error_chain,
};

/// Every database finding, in order. Stops after the first when the database cannot be used.
pub async fn examine(config: &Config) -> Vec<Finding> {
    let store = match daemon::store(config).await {
        Ok(store) => store,
        Err(e) => {
            let too_old = matches!(e, WiringError::ServerTooOld { .. });
            return vec![Finding {
                question: "Database reachable and supported?",
                answer: Answer::Problem,
                detail: error_chain(&e),
                recommendation: if too_old {
                    "upgrade the server to PostgreSQL 14 or newer".into()
                } else {
                    "check database.url (host, port, database, user, password, sslmode, sslrootcert) and the network".into()
                },
            }];
        }
    };
    let mut findings = Vec::new();
    findings.push(match store.connection_security().await {
        Ok((tls, version)) => encryption(tls, &version),
        Err(e) => problem("Database reachable and supported?", &e, "check the database"),
    });
    findings.push(schema_privileges(&store).await);
    findings.push(ownership(&store).await);
    findings.push(roles(&store, config).await);
    if store.holds_mirror().await.unwrap_or(false) {
        findings.push(pinned(&store).await);
    }
    findings
}

fn encryption(tls: Option<String>, version: &str) -> Finding {
    let question = "Database connection encrypted (TLS)?";
    match tls {
        Some(tls) => Finding {
            question,
            answer: Answer::Yes,
            detail: format!("PostgreSQL {version} over {tls}"),
            recommendation: "nothing to do; `sslmode=verify-full` (with `sslrootcert` for a private CA) also checks the server's name"
                .into(),
        },
        None => Finding {
            question,
            answer: Answer::No,
            detail: format!("PostgreSQL {version} over plain text"),
            recommendation: "fine on one host or a private network; elsewhere add `sslmode=verify-full` (or `require`) to database.url"
                .into(),
        },
    }
}

async fn schema_privileges(store: &Store) -> Finding {
    let question = "May the mirror's role create or build in its schema?";
    match store.missing_schema_privilege().await {
        Ok(None) => Finding {
            question,
            answer: Answer::Ok,
            detail: format!("schema \"{}\": owned by the role, or creatable by it", store.schema()),
            recommendation: "nothing to do".into(),
        },
        Ok(Some(missing)) => Finding {
            question,
            answer: Answer::Problem,
            detail: format!("role \"{}\" lacks {} on {}", missing.role, missing.privilege, missing.object),
            recommendation: missing.remedy,
        },
        Err(e) => problem(question, &e, "check the database"),
    }
}

async fn ownership(store: &Store) -> Finding {
    let question = "Does the mirror's role own the schema's objects?";
    match store.objects_owned_by_others().await {
        Ok(others) if others.is_empty() => Finding {
            question,
            answer: Answer::Ok,
            detail: "every table, view and function of the schema".into(),
            recommendation: "nothing to do".into(),
        },
        Ok(others) => Finding {
            question,
            answer: Answer::Problem,
            detail: others.join("; "),
            recommendation: format!(
                "migrations and grants need the owner: run the mirror as that role, or `ALTER TABLE … OWNER TO` the mirror's role \
                 (`REASSIGN OWNED BY <old> TO <mirror role>` moves everything; it acts on the whole database, so check first) in \
                 schema \"{}\"",
                store.schema()
            ),
        },
        Err(e) => problem(question, &e, "check the database"),
    }
}

async fn roles(store: &Store, config: &Config) -> Finding {
    let question = "Do the roles of database.readers, consumers and writers exist?";
    let named = config.database.roles.tiers().len();
    match store.check_roles(&config.database.roles).await {
        Ok(()) => Finding {
            question,
            answer: Answer::Ok,
            detail: if named == 0 { "none named: no other role may use the schema".into() } else { format!("all {named} exist") },
            recommendation: "nothing to do".into(),
        },
        Err(e @ (StoreError::UnknownRoles(_) | StoreError::OwnRole(_))) => Finding {
            question,
            answer: Answer::Problem,
            detail: e.to_string(),
            recommendation: "create the roles (as a DBA) or correct the lists; the daemon refuses to start until then".into(),
        },
        Err(e) => problem(question, &e, "check the database"),
    }
}

async fn pinned(store: &Store) -> Finding {
    let question = "Does every function of the schema pin its search_path?";
    match store.unpinned_functions().await {
        Ok(none) if none.is_empty() => Finding {
            question,
            answer: Answer::Ok,
            detail: "calls with schema-qualified names work from any session".into(),
            recommendation: "nothing to do".into(),
        },
        Ok(unpinned) => Finding {
            question,
            answer: Answer::Problem,
            detail: format!("not pinned: {}", unpinned.join(", ")),
            recommendation: "run `partnerstack-mirror migrate` (as the schema's owner), which pins them".into(),
        },
        Err(e) => problem(question, &e, "check the database"),
    }
}

fn problem(question: &'static str, e: &StoreError, recommendation: &str) -> Finding {
    Finding { question, answer: Answer::Problem, detail: error_chain(e), recommendation: recommendation.into() }
}
