//! A push converges: what differs is queued once, a run before the write-backs land queues
//! nothing twice, and once they land the next run finds nothing to do.

use partnerstack_mirror::sync::Reading;
use partnerstack_simulator::Mutation;

use super::*;

/// Every live partnership's tier from its customers: `tier:gold` with 3 or more, `tier:silver`
/// with one or two, `tier:bronze` without (the tests' stand-in for revenue in a warehouse).
fn tier_query(schema: &str) -> String {
    format!(
        "SELECT p.key, ARRAY['tier:' || CASE WHEN count(c.key) >= 3 THEN 'gold' WHEN count(c.key) >= 1 THEN 'silver' ELSE 'bronze' END] AS tags \
         FROM {schema}.partnerships p LEFT JOIN {schema}.customers c ON c.partner_key = p.partner_key AND c.deleted_at IS NULL \
         WHERE p.deleted_at IS NULL GROUP BY p.key"
    )
}

fn tiers(store: &Store) -> PushConfig {
    push_config(
        "tiers",
        &format!("object = \"partnerships\"\nquery = {:?}\nmanage_tags = [\"tier:*\"]\nmax_changes = 100000", tier_query(store.schema())),
    )
}

#[tokio::test]
async fn a_push_converges_and_a_second_run_before_the_write_backs_land_queues_nothing_twice() {
    let (sim, store, _) = mirrored(300).await;
    let tiers = pusher(&store, &tiers(&store)).await;
    let live: i64 = sqlx::query_scalar("SELECT count(*) FROM partnerships WHERE deleted_at IS NULL").fetch_one(store.pool()).await.unwrap();

    let first = run(&tiers).await;
    assert_eq!(first.line.outcome, "changed");
    assert_eq!((first.line.rows_read, first.line.changes, first.line.requests_queued), (live, live, live), "no partner has a tier yet");
    assert!(queued(&store, "tiers").await.iter().all(|(op, ..)| op == "modify_tags"));

    let again = run(&tiers).await;
    assert_eq!(again.line.outcome, "unchanged");
    assert_eq!((again.line.changes, again.line.in_flight, again.line.requests_queued), (0, live, 0), "{:?}", again.line);
    assert_eq!(queued(&store, "tiers").await.len() as i64, live, "nothing was queued twice");

    land(&store, &sim).await;
    let tag_writes = writes(&sim).iter().filter(|(m, p)| m == "PATCH" && p.ends_with("/tags")).count() as i64;
    assert_eq!(tag_writes, live, "each partnership's tags were changed once");
    let settled = run(&tiers).await;
    assert_eq!((settled.line.outcome.as_str(), settled.line.unchanged, settled.line.changes), ("unchanged", live, 0), "{:?}", settled.line);

    // A change in the data the query reads is a new difference, queued once.
    let (key, partner_key): (String, String) =
        sqlx::query_as("SELECT key, partner_key FROM partnerships WHERE 'tier:bronze' = ANY (tags) ORDER BY key LIMIT 1")
            .fetch_one(store.pool())
            .await
            .unwrap();
    let tier_before: Vec<String> = tags_at_api(&sim, &key).into_iter().filter(|t| t.starts_with("tier:")).collect();
    assert_eq!(tier_before, ["tier:bronze"]);
    for i in 0..3 {
        execute(
            &store,
            &format!(
                "INSERT INTO customers (key, customer_key, partner_key, raw) VALUES ('cus_push_{i}', 'push-{i}', '{partner_key}', '{{}}')"
            ),
        )
        .await;
    }
    let moved = run(&tiers).await;
    assert_eq!((moved.line.changes, moved.line.requests_queued), (1, 1), "{:?}", moved.line);
    land(&store, &sim).await;
    let tier_after: Vec<String> = tags_at_api(&sim, &key).into_iter().filter(|t| t.starts_with("tier:")).collect();
    assert_eq!(tier_after, ["tier:gold"]);
    assert_eq!(run(&tiers).await.line.changes, 0);
}

#[tokio::test]
async fn manage_tags_adds_and_removes_only_the_tags_it_owns() {
    let (sim, store, syncer) = mirrored(200).await;
    let keys = partnership_keys(&store, 2).await;
    // One partner carries a stale tier and tags of its own; the push owns only tier:*.
    sim.simulator
        .apply(Mutation::PartnershipTags {
            key: keys[0].clone(),
            add: vec!["tier:platinum".into(), "vip".into(), "beta".into()],
            remove: vec![],
        })
        .unwrap();
    syncer.sync_object(ObjectKind::Partnership, Reading::Changes).await.unwrap();
    let others: Vec<String> = tags_at_api(&sim, &keys[0]).into_iter().filter(|t| !t.starts_with("tier:")).collect();
    assert!(others.contains(&"vip".to_owned()));
    // The query wants a tier and a tag outside the patterns, which the push must ignore.
    let query = format!(
        "SELECT key, ARRAY['tier:silver', 'not-mine'] AS tags FROM {}.partnerships WHERE key IN ('{}', '{}')",
        store.schema(),
        keys[0],
        keys[1]
    );
    let config = push_config("tiers", &format!("object = \"partnership\"\nquery = {query:?}\nmanage_tags = [\"tier:*\"]"));
    let tiers = pusher(&store, &config).await;

    let plan = tiers.plan().await.unwrap();
    let stale = plan.requests.iter().find(|r| r.object_key.as_deref() == Some(keys[0].as_str())).unwrap();
    assert_eq!(stale.payload, serde_json::json!({"add": ["tier:silver"], "remove": ["tier:platinum"]}));
    run(&tiers).await;
    land(&store, &sim).await;

    let mut expected = others.clone();
    expected.push("tier:silver".into());
    expected.sort();
    let mut now = tags_at_api(&sim, &keys[0]);
    now.sort();
    assert_eq!(now, expected, "tags outside tier:* are left alone, the stale tier is gone");
    assert!(!tags_at_api(&sim, &keys[1]).contains(&"not-mine".to_owned()));
    assert_eq!(run(&tiers).await.line.changes, 0);
}

#[tokio::test]
async fn an_upsert_creates_a_missing_transaction_once_and_updates_nothing_else() {
    let (sim, store, _) = mirrored(300).await;
    // `billing.invoices`: paid invoices that must each be a transaction; two exist already.
    let billing = format!("{}_billing", store.schema());
    let existing: Vec<(String, String)> = sqlx::query_as(
        "SELECT t.key, c.customer_key FROM transactions t JOIN customers c ON c.key = t.customer_key \
         WHERE t.deleted_at IS NULL AND c.customer_key IS NOT NULL ORDER BY t.key LIMIT 2",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    let customer = existing[0].1.clone();
    execute(
        &store,
        &format!(
            "CREATE SCHEMA {billing};
             CREATE TABLE {billing}.invoices (number text, customer text, cents bigint, currency text, paid boolean);
             INSERT INTO {billing}.invoices VALUES
               ('{t0}', '{c0}', 1, 'USD', true), ('{t1}', '{c1}', 2, 'USD', true),
               ('inv-0001', '{customer}', 9900, 'usd', true), ('inv-0002', '{customer}', 500, 'EUR', true),
               ('inv-0003', '{customer}', 700, 'USD', false);",
            t0 = existing[0].0,
            c0 = existing[0].1,
            t1 = existing[1].0,
            c1 = existing[1].1,
        ),
    )
    .await;
    let query = format!(
        "SELECT number AS key, customer AS customer_external_key, cents AS amount, upper(currency) AS currency \
         FROM {billing}.invoices WHERE paid"
    );
    let config = push_config("invoices", &format!("object = \"transactions\"\nkey = \"key\"\nquery = {query:?}"));
    let invoices = pusher(&store, &config).await;

    let first = run(&invoices).await;
    assert_eq!((first.line.rows_read, first.line.changes, first.line.unchanged), (4, 2, 2), "{:?}", first.line);
    assert_eq!(run(&invoices).await.line.in_flight, 2, "the creates on their way are not queued again");
    land(&store, &sim).await;
    assert_eq!(run(&invoices).await.line.changes, 0, "both exist now");
    assert_eq!(run(&invoices).await.line.unchanged, 4);

    let posts: Vec<String> = writes(&sim).into_iter().filter(|(m, _)| m == "POST").map(|(_, p)| p).collect();
    assert_eq!(posts.len(), 2, "one create per missing invoice and nothing else: {posts:?}");
    assert!(writes(&sim).iter().all(|(m, _)| m == "POST"), "existing transactions are not touched");
    let created = sim.simulator.record(ObjectKind::Transaction, "inv-0001").expect("created with the invoice's number as its key");
    assert_eq!((created["amount"].as_i64(), created["currency"].as_str()), (Some(9900), Some("USD")));
    assert!(sim.simulator.record(ObjectKind::Transaction, "inv-0003").is_none(), "an unpaid invoice is not a transaction");
}

#[tokio::test]
async fn a_deal_stage_follows_a_crm_table_and_keeps_its_order_with_requests_queued_by_hand() {
    let (sim, store, _) = mirrored(300).await;
    let crm = format!("{}_crm", store.schema());
    let deals: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT key, external_key, stage FROM deals WHERE deleted_at IS NULL AND external_key IS NOT NULL \
         AND stage <> 'Closed Won' ORDER BY key LIMIT 5",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    execute(&store, &format!("CREATE SCHEMA {crm}; CREATE TABLE {crm}.opportunities (id text PRIMARY KEY, stage text)")).await;
    for (i, (_, external_key, stage)) in deals.iter().enumerate() {
        let wanted = if i < 2 { "Closed Won" } else { stage.as_str() };
        execute(&store, &format!("INSERT INTO {crm}.opportunities VALUES ('{external_key}', '{wanted}')")).await;
    }
    // Someone queued a change of the first deal by hand before the push ran.
    queue::enqueue(&store, "update", "deal", Some(&deals[0].0), serde_json::json!({"stage": "Negotiation"})).await;
    let query =
        format!("SELECT d.key, o.stage FROM {crm}.opportunities o JOIN {schema}.deals d ON d.external_key = o.id", schema = store.schema());
    let config = push_config("crm-stages", &format!("object = \"deals\"\nquery = {query:?}"));
    let stages = pusher(&store, &config).await;

    let report = run(&stages).await;
    assert_eq!((report.line.changes, report.line.unchanged), (2, 3), "{:?}", report.line);
    let requests = queued(&store, "crm-stages").await;
    assert_eq!(requests.iter().map(|(_, _, p, _)| p.clone()).collect::<Vec<_>>(), vec![serde_json::json!({"stage": "Closed Won"}); 2]);
    land(&store, &sim).await;

    for (key, ..) in &deals[..2] {
        assert_eq!(sim.simulator.record(ObjectKind::Deal, key).unwrap()["stage"], "Closed Won", "{key}: the push's request ran last");
    }
    assert_eq!(run(&stages).await.line.changes, 0);
}
