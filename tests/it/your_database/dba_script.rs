//! The DBA's setup script of `docs/your-database.md`, run as written, then the mirror run as
//! the role it makes, and each role it names used as the docs say.

use sqlx::{Connection, PgConnection};

use super::{allowed, refused, Scratch};
use crate::support;

const ROLES: [&str; 4] = ["partnerstack_mirror", "partnerstack_bi", "partnerstack_events", "partnerstack_crm"];

/// The SQL block after the `dba-setup-script` marker.
fn script() -> String {
    let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/your-database.md")).unwrap();
    let after = page.split("<!-- dba-setup-script -->").nth(1).expect("the marker before the DBA's script");
    let block = after.split("```sql\n").nth(1).expect("the script's SQL block");
    block.split("```").next().unwrap().to_owned()
}

/// Drops the script's roles (left by an interrupted run against a kept server).
async fn drop_roles(conn: &mut PgConnection) {
    for role in ROLES {
        let _ = sqlx::raw_sql(&format!("DROP OWNED BY {role}; DROP ROLE IF EXISTS {role}")).execute(&mut *conn).await;
    }
}

#[tokio::test]
async fn the_dba_script_in_the_docs_sets_up_a_database_the_mirror_and_its_roles_work_in() {
    let scratch = Scratch::new().await;
    let mut dba = scratch.dba().await;
    drop_roles(&mut dba).await;
    sqlx::raw_sql(&script()).execute(&mut dba).await.expect("the script runs as written");

    let sim = support::simulator(40, |_| {}).await;
    for args in [&["migrate"][..], &["sync"]] {
        let mut command = super::binary_as(&scratch, "partnerstack_mirror", "partnerstack", &sim, args);
        command
            .env("PSM_DATABASE__READERS", "partnerstack_bi")
            .env("PSM_DATABASE__CONSUMERS", "partnerstack_events")
            .env("PSM_DATABASE__WRITERS", "partnerstack_crm");
        support::succeeds(&mut command).await;
    }

    let mut bi = scratch.connect_as("partnerstack_bi").await;
    allowed(&mut bi, "SELECT * FROM partnerstack.partner_revenue").await;
    refused(&mut bi, "SELECT * FROM partnerstack.next_events('bi', 1)").await;
    let mut events = scratch.connect_as("partnerstack_events").await;
    allowed(
        &mut events,
        "SELECT partnerstack.commit_events('automation', (SELECT max(id) FROM partnerstack.next_events('automation', 10)))",
    )
    .await;
    refused(&mut events, "INSERT INTO partnerstack.write_queue (operation, object_type, object_key) VALUES ('refresh', 'deal', 'd')").await;
    let mut crm = scratch.connect_as("partnerstack_crm").await;
    allowed(&mut crm, "INSERT INTO partnerstack.write_queue (operation, object_type, object_key) VALUES ('refresh', 'deal', 'd')").await;
    allowed(&mut crm, "UPDATE partnerstack.write_queue SET status = 'cancelled' WHERE status = 'pending'").await;

    for conn in [bi, events, crm] {
        conn.close().await.unwrap();
    }
    drop(dba);
    let mut admin = PgConnection::connect(&support::database_url()).await.unwrap();
    sqlx::raw_sql(&format!("DROP DATABASE {} WITH (FORCE)", scratch.database)).execute(&mut admin).await.unwrap();
    drop_roles(&mut admin).await;
}
