//! Every operation, from an SQL INSERT to the API, the mirror, its events and `result`; and
//! what the INSERT itself refuses.

use super::*;
use partnerstack_simulator::AsResource;

#[tokio::test]
async fn every_operation_runs_end_to_end_from_an_sql_insert() {
    let sim = support::simulator(600, |_| {}).await;
    let store = support::store().await;
    support::sync_all(&support::syncer(&store, &sim, 250, support::settings())).await;
    let s = &sim.simulator;
    let partnership = s.records(ObjectKind::Partnership).into_iter().find(|p| p["archived"] == false).unwrap();
    let partner_key = partnership["partner_key"].as_str().unwrap().to_owned();
    let live = |kind| {
        s.records(kind).into_iter().filter(|r| r["archived"] == false).map(|r| r["key"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    let (deals, leads, customers) = (live(ObjectKind::Deal), live(ObjectKind::Lead), live(ObjectKind::Customer));

    let creates = [
        (
            ObjectKind::Customer,
            json!({"customer_key": "wb-cust-1", "email": "wb1@example.test", "partner_key": partner_key, "name": "WB One"}),
        ),
        (ObjectKind::Deal, json!({"partner_key": partner_key, "external_key": "wb-deal-1", "account_name": "WB", "amount": 1234})),
        (
            ObjectKind::Lead,
            json!({"partner_key": partner_key, "external_key": "wb-lead@example.test", "status": "open", "meta": {"first_name": "A", "last_name": "B"}}),
        ),
        (
            ObjectKind::Partnership,
            json!({"email": "wb-partner@example.test", "first_name": "W", "last_name": "B", "partner_key": "wb-partner"}),
        ),
        (ObjectKind::Transaction, json!({"key": "wb-txn-1", "customer_external_key": "wb-cust-1", "amount": 990, "currency": "USD"})),
        (ObjectKind::Action, json!({"target_type": "partnership", "target_key": partner_key, "type": "webinar", "value": 1})),
        (ObjectKind::Reward, json!({"amount": 500, "description": "bonus"})),
    ];
    let mut created = Vec::new();
    for (kind, payload) in creates {
        created.push((kind, enqueue(&store, "create", kind.singular(), None, payload).await));
    }
    let update = enqueue(&store, "update", "deal", Some(&deals[0]), json!({"stage": "Closed Won"})).await;
    let delete = enqueue(&store, "delete", "lead", Some(&leads[0]), json!({})).await;
    // Customers are addressed by their customer_key at the API; the queue takes the mirror key.
    let other_updates = [
        ("customer", customers[1].clone(), json!({"name": "Renamed by write-back"})),
        ("lead", leads[2].clone(), json!({"status": "closed won"})),
        ("partnership", partnership["key"].as_str().unwrap().to_owned(), json!({"first_name": "Renamed"})),
    ];
    let mut updates = Vec::new();
    for (object_type, key, payload) in &other_updates {
        updates.push((*object_type, key.clone(), enqueue(&store, "update", object_type, Some(key), payload.clone()).await));
    }
    let other_deletes = [("customer", customers[2].clone()), ("deal", deals[8].clone())];
    let mut deletes = Vec::new();
    for (object_type, key) in &other_deletes {
        deletes.push((*object_type, key.clone(), enqueue(&store, "delete", object_type, Some(key), json!({})).await));
    }
    let tags = enqueue(&store, "modify_tags", "partnership", partnership["key"].as_str(), json!({"add": ["wb-tag"]})).await;
    let convert_deal =
        enqueue(&store, "convert", "deal", Some(&deals[1]), json!({"email": "converted@example.test", "customer_key": "wb-conv-1"})).await;
    let convert_lead = enqueue(&store, "convert", "lead", Some(&leads[1]), json!({"customer_key": "wb-conv-2"})).await;
    let refresh = enqueue(&store, "refresh", "customer", Some(&customers[0]), json!({})).await;
    let files: Vec<i64> = {
        let mut ids = Vec::new();
        for deal in deals.iter().skip(2).take(6) {
            ids.push(enqueue(&store, "fetch_attachments", "deal", Some(deal), json!({})).await);
        }
        ids
    };

    drain(&worker(&store, &sim, "w1"), &store).await;

    for (kind, id) in created {
        let o = outcome(&store, id).await;
        assert_eq!(o.status, "succeeded", "{kind}: {o:?}");
        let key = result_key(&o);
        assert!(s.record(kind, &key).is_some(), "{kind} {key} exists at the API");
        let raw: sqlx::types::Json<Value> = sqlx::query_scalar(&format!("SELECT raw FROM {} WHERE key = $1", kind.table()))
            .bind(&key)
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(raw.0["key"], key.as_str());
        assert_eq!(write_back_events(&store, kind, &key).await, [format!("{}.created", kind.singular())]);
    }
    assert_eq!(outcome(&store, update).await.status, "succeeded");
    let stage: String = sqlx::query_scalar("SELECT stage FROM deals WHERE key = $1").bind(&deals[0]).fetch_one(store.pool()).await.unwrap();
    assert_eq!(stage, "Closed Won");
    assert!(write_back_events(&store, ObjectKind::Deal, &deals[0]).await.contains(&"deal.stage_updated".to_owned()));

    assert_eq!(outcome(&store, delete).await.status, "succeeded");
    let archived: bool =
        sqlx::query_scalar("SELECT archived FROM leads WHERE key = $1").bind(&leads[0]).fetch_one(store.pool()).await.unwrap();
    assert!(archived);
    assert!(write_back_events(&store, ObjectKind::Lead, &leads[0]).await.contains(&"lead.deleted".to_owned()));

    for (object_type, key, id) in updates {
        let o = outcome(&store, id).await;
        assert_eq!(o.status, "succeeded", "update {object_type}: {o:?}");
        let kind: ObjectKind = object_type.parse().unwrap();
        assert!(write_back_events(&store, kind, &key).await.iter().any(|e| e.ends_with("updated")), "update {object_type}");
    }
    for (object_type, key, id) in deletes {
        let o = outcome(&store, id).await;
        assert_eq!(o.status, "succeeded", "delete {object_type}: {o:?}");
        let kind: ObjectKind = object_type.parse().unwrap();
        assert!(write_back_events(&store, kind, &key).await.contains(&format!("{object_type}.deleted")), "delete {object_type}");
    }

    assert_eq!(outcome(&store, tags).await.status, "succeeded");
    let tag_list: Vec<String> = sqlx::query_scalar("SELECT tags FROM partnerships WHERE key = $1")
        .bind(partnership["key"].as_str())
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(tag_list.contains(&"wb-tag".to_owned()));

    for id in [convert_deal, convert_lead] {
        let o = outcome(&store, id).await;
        assert_eq!(o.status, "succeeded", "{o:?}");
        let customer = result_key(&o);
        let rows: i64 =
            sqlx::query_scalar("SELECT count(*) FROM customers WHERE key = $1").bind(&customer).fetch_one(store.pool()).await.unwrap();
        assert_eq!(rows, 1, "the converted customer is mirrored");
    }
    assert_eq!(outcome(&store, refresh).await.status, "succeeded");
    for id in files {
        assert_eq!(outcome(&store, id).await.status, "succeeded");
    }
    let (files, bytes): (i64, Option<i64>) = sqlx::query_as("SELECT count(*), sum(size)::bigint FROM deal_files WHERE content IS NOT NULL")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(files > 0 && bytes.unwrap_or(0) > 0, "attachments were fetched with their content");
}

#[tokio::test]
async fn malformed_inserts_are_rejected_with_a_message_naming_the_problem() {
    let store = support::store().await;
    let cases = [
        ("frobnicate", "deal", Some("d"), json!({}), "unknown operation \"frobnicate\""),
        ("modify_tags", "deal", Some("d"), json!({"add": ["x"]}), "not allowed for object_type \"deal\""),
        ("update", "deal", None, json!({}), "needs object_key"),
        ("create", "customer", None, json!({"email": "a@b.test"}), "missing required field(s): customer_key, partner_key"),
        ("create", "transaction", None, json!({"amount": 1, "currency": "USD"}), "exactly one of customer_key"),
        ("modify_tags", "partnership", Some("p"), json!({"add": "vip"}), "must be an array"),
        // Generated from the catalogue at start (the migrations' older text said it otherwise).
        ("modify_tags", "partnership", Some("p"), json!({}), r#"modify_tags partnership payload needs "add" and/or "remove""#),
        ("update", "deal", Some("d"), json!([1, 2]), "payload must be a JSON object"),
        ("update", "deals", Some("d"), json!({}), r#"unknown object_type "deals"; write "deal" (singular"#),
        ("refresh", "Partnership", Some("p"), json!({}), r#"write "partnership""#),
        ("refresh", "invoice", Some("i"), json!({}), r#"unknown object_type "invoice""#),
    ];
    for (operation, object_type, key, payload, expected) in cases {
        let err = sqlx::query("INSERT INTO write_queue (operation, object_type, object_key, payload) VALUES ($1, $2, $3, $4)")
            .bind(operation)
            .bind(object_type)
            .bind(key)
            .bind(payload)
            .execute(store.pool())
            .await
            .expect_err(expected);
        assert!(err.to_string().contains(expected), "{operation} {object_type}: {err}");
    }
    // The same idempotency key cannot be queued twice.
    let insert = "INSERT INTO write_queue (operation, object_type, object_key, idempotency_key) VALUES ('refresh', 'deal', 'd', 'once')";
    sqlx::query(insert).execute(store.pool()).await.unwrap();
    assert!(sqlx::query(insert).execute(store.pool()).await.is_err());
}

/// History brought over from elsewhere, inserted already finished, is stamped like a request
/// a worker finished, so retention prunes it in its time.
#[tokio::test]
async fn a_request_inserted_already_finished_is_stamped_finished() {
    let store = support::store().await;
    let stamped: Vec<(String, bool)> = sqlx::query_as(
        "INSERT INTO write_queue (operation, object_type, object_key, status) \
         VALUES ('refresh', 'deal', 'a', 'succeeded'), ('refresh', 'deal', 'b', 'cancelled'), ('refresh', 'deal', 'c', 'pending') \
         RETURNING status, finished_at IS NOT NULL",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(stamped, [("succeeded".into(), true), ("cancelled".into(), true), ("pending".into(), false)]);
}

/// A later migration could admit an operation or object type before this binary knows it:
/// such a request fails, naming what it did not know, and nothing reaches the API.
#[tokio::test]
async fn a_request_this_version_cannot_read_fails_naming_what_it_did_not_know() {
    let sim = support::simulator(200, |_| {}).await;
    let store = support::store().await;
    let deal = sim.simulator.keys(ObjectKind::Deal)[0].clone();
    for check in ["write_queue_check", "write_queue_catalogue"] {
        sqlx::query(&format!("ALTER TABLE write_queue DISABLE TRIGGER {check}")).execute(store.pool()).await.unwrap();
    }
    let unknown_operation = enqueue(&store, "archive", "deal", Some(&deal), json!({})).await;
    let unknown_object = enqueue(&store, "refresh", "invoice", Some("inv_1"), json!({})).await;
    drain(&worker(&store, &sim, "w1"), &store).await;
    for (id, expected) in [(unknown_operation, "unsupported request: archive"), (unknown_object, "unknown object_type invoice")] {
        let o = outcome(&store, id).await;
        assert_eq!((o.status.as_str(), o.last_error.as_deref()), ("failed", Some(expected)), "{o:?}");
    }
    assert!(sim.simulator.writes().is_empty());
}

#[tokio::test]
async fn cancelled_requests_are_never_sent() {
    let sim = support::simulator(200, |_| {}).await;
    let store = support::store().await;
    let deal = sim.simulator.keys(ObjectKind::Deal)[0].clone();
    let id = enqueue(&store, "update", "deal", Some(&deal), json!({"amount": 1})).await;
    assert!(store.cancel(id).await.unwrap());
    drain(&worker(&store, &sim, "w1"), &store).await;
    assert_eq!(outcome(&store, id).await.status, "cancelled");
    assert!(sim.simulator.writes().is_empty());

    // A request a worker has started may already have reached the API: it cannot be cancelled.
    let running = enqueue(&store, "update", "deal", Some(&deal), json!({"amount": 2})).await;
    store.claim("some-worker", Duration::from_secs(30)).await.unwrap().expect("claimable");
    let err =
        sqlx::query("UPDATE write_queue SET status = 'cancelled' WHERE id = $1").bind(running).execute(store.pool()).await.unwrap_err();
    assert!(err.to_string().contains("is running; only pending requests can be cancelled"), "{err}");
    assert!(!store.cancel(running).await.unwrap(), "queue cancel says no too");
}

/// SQL is the queue's primary interface: a request cancelled there is finished like one
/// cancelled by `queue cancel` (so retention prunes it), and put back to pending it is open again.
#[tokio::test]
async fn a_request_cancelled_from_sql_is_stamped_finished_and_reopened_when_put_back() {
    let store = support::store().await;
    let id = enqueue(&store, "update", "deal", Some("deal_sql"), json!({"amount": 1})).await;
    let stamps = || async {
        sqlx::query_as::<_, (Option<chrono::DateTime<chrono::Utc>>, chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)>(
            "SELECT finished_at, updated_at, created_at FROM write_queue WHERE id = $1",
        )
        .bind(id)
        .fetch_one(store.pool())
        .await
        .unwrap()
    };
    assert_eq!(stamps().await.0, None);
    let mut tx = store.pool().begin().await.unwrap();
    sqlx::query("UPDATE write_queue SET status = 'cancelled' WHERE id = $1").bind(id).execute(&mut *tx).await.unwrap();
    let cancelled_at: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("SELECT now()").fetch_one(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();
    let (finished, updated, _) = stamps().await;
    assert_eq!(finished, Some(cancelled_at));
    assert_eq!(updated, cancelled_at);
    let pruned = store.prune_finished_requests(Duration::ZERO, 100).await.unwrap();
    assert_eq!(pruned, 1, "retention finds it");

    let id = enqueue(&store, "update", "deal", Some("deal_sql"), json!({"amount": 2})).await;
    sqlx::query("UPDATE write_queue SET status = 'cancelled' WHERE id = $1").bind(id).execute(store.pool()).await.unwrap();
    sqlx::query("UPDATE write_queue SET status = 'pending' WHERE id = $1").bind(id).execute(store.pool()).await.unwrap();
    let finished: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT finished_at FROM write_queue WHERE id = $1").bind(id).fetch_one(store.pool()).await.unwrap();
    assert_eq!(finished, None, "open again");
}

/// `refresh` reads one record of any object read one by one, not only those the API changes.
#[tokio::test]
async fn a_refresh_reads_a_group_into_the_mirror() {
    let sim = support::simulator(100, |_| {}).await;
    let store = support::store().await;
    let group = sim.simulator.keys(ObjectKind::Group)[0].clone();
    let id = enqueue(&store, "refresh", "group", Some(&group), json!({})).await;
    drain(&worker(&store, &sim, "w1"), &store).await;
    assert_eq!(outcome(&store, id).await.status, "succeeded");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM groups WHERE key = $1").bind(&group).fetch_one(store.pool()).await.unwrap();
    assert_eq!(stored, 1);
    let err =
        sqlx::query("INSERT INTO write_queue (operation, object_type, object_key, payload) VALUES ('refresh', 'partner_team', 'x', '{}')")
            .execute(store.pool())
            .await
            .unwrap_err();
    assert!(err.to_string().contains(r#"operation "refresh" is not allowed for object_type "partner_team""#), "{err}");
}

#[tokio::test]
async fn a_tag_change_the_api_accepts_but_ignores_fails_instead_of_passing_for_success() {
    // Question 6 of docs/correctness.md: the body of PATCH /partnerships/{key}/tags is undocumented.
    let sim = support::simulator(200, |c| c.tags_body_understood = false).await;
    let store = support::store().await;
    let partnership = sim.simulator.keys(ObjectKind::Partnership)[0].clone();
    let id = enqueue(&store, "modify_tags", "partnership", Some(&partnership), json!({"add": ["vip"]})).await;
    drain(&worker(&store, &sim, "w1"), &store).await;
    let o = outcome(&store, id).await;
    assert_eq!((o.status.as_str(), o.attempts), ("failed", 1), "{o:?}");
    let error = o.last_error.unwrap();
    assert!(error.contains("\"vip\" not added") && error.contains("Question 6 of docs/correctness.md"), "{error}");
}

#[tokio::test]
async fn a_refresh_that_finds_nothing_fails_and_leaves_the_row_to_the_key_scans() {
    let sim = support::simulator(300, |_| {}).await;
    let store = support::store().await;
    support::sync_all(&support::syncer(&store, &sim, 250, support::settings())).await;
    let deal = sim.simulator.keys(ObjectKind::Deal)[0].clone();
    sim.simulator.apply(Mutation::HardDelete { kind: ObjectKind::Deal.resource(), key: deal.clone() }).unwrap();
    // And a customer the API cannot be asked about: it has no customer_key.
    let customer = sim.simulator.keys(ObjectKind::Customer)[0].clone();
    sqlx::query("UPDATE customers SET customer_key = NULL WHERE key = $1").bind(&customer).execute(store.pool()).await.unwrap();

    let gone = enqueue(&store, "refresh", "deal", Some(&deal), json!({})).await;
    let unaddressable = enqueue(&store, "refresh", "customer", Some(&customer), json!({})).await;
    drain(&worker(&store, &sim, "w1"), &store).await;

    let o = outcome(&store, gone).await;
    assert_eq!((o.status.as_str(), o.http_status), ("failed", Some(404)), "{o:?}");
    let deleted: bool =
        sqlx::query_scalar("SELECT deleted_at IS NOT NULL FROM deals WHERE key = $1").bind(&deal).fetch_one(store.pool()).await.unwrap();
    assert!(!deleted, "a 404 on one read does not delete the row");
    let o = outcome(&store, unaddressable).await;
    assert_eq!(o.status, "failed");
    assert!(o.last_error.unwrap().contains("no customer_key"), "{:?}", outcome(&store, unaddressable).await);
    assert!(sim.simulator.writes().is_empty());
}

#[tokio::test]
async fn identifiers_with_slashes_and_percent_signs_reach_their_record() {
    let sim = support::simulator(200, |_| {}).await;
    let store = support::store().await;
    // A lost create is looked up by its customer_key, which goes into the path.
    sim.simulator.inject(Fault::ApplyThenDrop, 1);
    let created = enqueue_customer(&store, &sim, "acct/42%2Fx").await;
    let w = worker(&store, &sim, "w1");
    drain(&w, &store).await;
    let o = outcome(&store, created).await;
    assert_eq!(o.status, "succeeded", "{o:?}");
    assert_eq!(posts(&sim), 1, "found through /customers/acct%2F42%252Fx, not created again");

    // And the mirror key of that customer is sent to the API as its customer_key.
    let key = result_key(&o);
    let renamed = enqueue(&store, "update", "customer", Some(&key), json!({"name": "Slashed"})).await;
    drain(&w, &store).await;
    assert_eq!(outcome(&store, renamed).await.status, "succeeded");
    assert_eq!(sim.simulator.record(ObjectKind::Customer, &key).unwrap()["name"], "Slashed");
}
