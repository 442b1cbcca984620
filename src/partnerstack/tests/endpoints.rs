//! Each endpoint method against the simulator over HTTP, whose routes follow the API's
//! documentation: the HTTP method and path each write sends (the simulator's write log), what
//! each read brings back, and which of them the client retries.

use futures::{future::BoxFuture, FutureExt};
use partnerstack_simulator::{Fault, Resource, RunningSimulator, Simulator, SimulatorConfig};

use super::*;
use crate::object::ObjectKind;

async fn simulator() -> RunningSimulator {
    let config = SimulatorConfig { records: 300, ..SimulatorConfig::default() };
    Simulator::new(config).start("127.0.0.1:0".parse().unwrap()).await.unwrap()
}

fn client_of(sim: &RunningSimulator) -> ApiClient {
    let config = sim.simulator.config();
    let private_key = SecretString::from(config.private_key);
    ApiClient::new(ClientConfig { public_key: config.public_key, private_key, ..super::config(sim.base_url.parse().unwrap()) }).unwrap()
}

/// The key of the first live record of `resource`, and the record.
fn live(sim: &RunningSimulator, resource: Resource) -> (String, Value) {
    let record = sim.simulator.records(resource).into_iter().find(|r| r["archived"] == false).unwrap();
    (record["key"].as_str().unwrap().to_owned(), record)
}

fn text<'a>(value: &'a Value, field: &str) -> &'a str {
    value[field].as_str().unwrap_or_else(|| panic!("no {field} in {value}"))
}

#[tokio::test]
async fn each_write_sends_the_http_method_and_path_the_api_documents() {
    let sim = simulator().await;
    let api = client_of(&sim);
    let (partnership, partner) = live(&sim, Resource::Partnership);
    let partner_key = text(&partner, "partner_key");
    let (lead, _) = live(&sim, Resource::Lead);

    let deal = api.create(ObjectKind::Deal, &json!({"partner_key": partner_key, "external_key": "ep-deal", "account_name": "EP"})).await;
    let deal = text(&deal.unwrap(), "key").to_owned();
    assert_eq!(api.update(ObjectKind::Deal, &deal, &json!({"stage": "Closed Won"})).await.unwrap()["stage"], "Closed Won");
    // A customer is addressed by its customer_key, which may hold a `/` or a `%`.
    let customer = json!({"customer_key": "ep/1%", "email": "ep@example.test", "partner_key": partner_key, "name": "EP"});
    api.create(ObjectKind::Customer, &customer).await.unwrap();
    assert_eq!(api.update(ObjectKind::Customer, "ep/1%", &json!({"name": "EP 2"})).await.unwrap()["name"], "EP 2");
    api.modify_tags(&partnership, &json!({"add": ["ep-tag"]})).await.unwrap();
    let converted = api.convert(ObjectKind::Lead, &lead, &json!({"customer_key": "ep-conv"})).await.unwrap();
    assert_eq!(converted["customer_key"], "ep-conv", "the customer the lead became");
    api.archive(ObjectKind::Deal, &deal).await.unwrap();
    let subscription = api.subscribe("http://127.0.0.1:9/hook", &["deal.created".to_owned()]).await.unwrap();
    api.unsubscribe(&subscription.key).await.unwrap();

    let sent: Vec<(String, String)> = sim.simulator.writes().into_iter().map(|w| (w.method, w.path)).collect();
    let expected = [
        ("POST", "/api/v2/deals".to_owned()),
        ("PATCH", format!("/api/v2/deals/{deal}")),
        ("POST", "/api/v2/customers".to_owned()),
        ("PATCH", "/api/v2/customers/ep%2F1%25".to_owned()),
        ("PATCH", format!("/api/v2/partnerships/{partnership}/tags")),
        ("POST", format!("/api/v2/leads/{lead}/convert")),
        ("DELETE", format!("/api/v2/deals/{deal}")),
        ("POST", "/api/v2/webhooks".to_owned()),
        ("DELETE", format!("/api/v2/webhooks/{}", subscription.key)),
    ];
    assert_eq!(sent, expected.map(|(method, path)| (method.to_owned(), path)));
    assert!(sim.simulator.record(Resource::Partnership, &partnership).unwrap()["tags"].as_array().unwrap().contains(&json!("ep-tag")));
    assert_eq!(sim.simulator.record(Resource::Deal, &deal).unwrap()["archived"], true);
}

#[tokio::test]
async fn each_read_brings_back_what_its_path_names() {
    let sim = simulator().await;
    let api = client_of(&sim);
    let (deal, _) = live(&sim, Resource::Deal);
    assert_eq!(text(&api.record(ObjectKind::Deal, &deal).await.unwrap(), "key"), deal);

    // Every deal has 0–2 attachments; the first with one.
    let mut attached = None;
    for deal in sim.simulator.keys(Resource::Deal) {
        if let Some(file) = api.deal_files(&deal).await.unwrap().into_iter().next() {
            attached = Some((deal, file));
            break;
        }
    }
    let (deal, file) = attached.expect("a deal with an attachment");
    let link = api.deal_file_link(&deal, text(&file, "key")).await.unwrap().expect("a download link");
    let (content, _) = api.download(&link).await.unwrap();
    assert!(!content.is_empty());

    let team = sim.simulator.team_keys().into_iter().next().unwrap();
    let pages: Vec<Page> = api.list(&Collection::TeamMembers(team.clone()), ListQuery::default()).try_collect().await.unwrap();
    let members: Vec<Value> = pages.iter().flat_map(|p| &p.items).map(|raw| serde_json::from_str(raw.get()).unwrap()).collect();
    assert!(members.iter().all(|m| m["team_key"] == team.as_str()), "{members:?}");
    let groups = api.list_page(&Collection::Objects(ObjectKind::Group), &ListQuery::default(), None).await.unwrap();
    assert!(!groups.items.is_empty());

    let subscription = api.subscribe("http://127.0.0.1:9/hook", &["deal.created".to_owned()]).await.unwrap();
    assert_eq!(api.subscriptions().await.unwrap().iter().map(|s| &s.key).collect::<Vec<_>>(), [&subscription.key]);
    assert_eq!(sim.simulator.writes().len(), 1, "only the subscription was a write");
}

/// A call of one endpoint method.
type Call<'a> = BoxFuture<'a, Result<(), ApiError>>;

#[tokio::test]
async fn writes_are_sent_once_and_reads_are_retried() {
    let sim = simulator().await;
    let api = client_of(&sim);
    let (deal, _) = live(&sim, Resource::Deal);
    let (partnership, _) = live(&sim, Resource::Partnership);
    let subscription = api.subscribe("http://127.0.0.1:9/hook", &["deal.created".to_owned()]).await.unwrap();
    let (body, tags, customer) = (json!({"stage": "Closed Won"}), json!({"add": ["t"]}), json!({"email": "c@example.test"}));
    let (deals, query) = (Collection::Objects(ObjectKind::Deal), ListQuery::default());
    let writes: Vec<(&str, Call)> = vec![
        ("create", api.create(ObjectKind::Deal, &body).map(|r| r.map(drop)).boxed()),
        ("update", api.update(ObjectKind::Deal, &deal, &body).map(|r| r.map(drop)).boxed()),
        ("archive", api.archive(ObjectKind::Deal, &deal).map(|r| r.map(drop)).boxed()),
        ("modify_tags", api.modify_tags(&partnership, &tags).map(|r| r.map(drop)).boxed()),
        ("convert", api.convert(ObjectKind::Deal, &deal, &customer).map(|r| r.map(drop)).boxed()),
        ("subscribe", api.subscribe("http://127.0.0.1:9/hook", &[]).map(|r| r.map(drop)).boxed()),
    ];
    for (name, call) in writes {
        let before = sim.simulator.request_count();
        sim.simulator.inject(Fault::ServerError(503), 1);
        let error = call.await.unwrap_err();
        assert_eq!(error.status(), Some(503), "{name}");
        assert_eq!(sim.simulator.request_count() - before, 1, "{name} was sent once");
    }
    let reads: Vec<(&str, Call)> = vec![
        ("record", api.record(ObjectKind::Deal, &deal).map(|r| r.map(drop)).boxed()),
        ("deal_files", api.deal_files(&deal).map(|r| r.map(drop)).boxed()),
        ("list_page", api.list_page(&deals, &query, None).map(|r| r.map(drop)).boxed()),
        ("subscriptions", api.subscriptions().map(|r| r.map(drop)).boxed()),
        ("unsubscribe", api.unsubscribe(&subscription.key).boxed()),
    ];
    for (name, call) in reads {
        let before = sim.simulator.request_count();
        sim.simulator.inject(Fault::ServerError(503), 1);
        call.await.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(sim.simulator.request_count() - before, 2, "{name} was sent again after the 503");
    }
}
