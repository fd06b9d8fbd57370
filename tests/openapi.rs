//! Every `/api/` response checked against the OpenAPI 3.1 document the tracker serves: each
//! endpoint with data, every documented error status, and every line of an NDJSON export.
//! The document itself is checked to describe every `/api/` route of the route table.

mod common;

use std::time::Duration;

use common::client::{self, RequestSpec};
use common::{PgCluster, Tracker};
use hyper::Method;
use serde_json::{Value, json};

/// Checks `instance` against a schema of the document (inline, with `$ref`s into its
/// components).
fn check(document: &Value, schema: &Value, instance: &Value, what: &str) {
    let mut schema = schema.clone();
    schema["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
    schema["components"] = document["components"].clone();
    let validator = jsonschema::validator_for(&schema)
        .unwrap_or_else(|e| panic!("{what}: the document's schema does not compile: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{what}: {errors:#?}\n{instance:#}");
}

/// The schema of a response: the operation's, or the shared response it refers to.
fn response_schema(document: &Value, path: &str, status: u16) -> Value {
    let operation = &document["paths"][path]["get"];
    assert!(operation.is_object(), "{path} is not described");
    let mut response = operation["responses"][status.to_string()].clone();
    assert!(response.is_object(), "{path} does not describe {status}");
    if let Some(reference) = response["$ref"].as_str() {
        let name = reference.trim_start_matches("#/components/responses/");
        response = document["components"]["responses"][name].clone();
    }
    response["content"]["application/json"]["schema"].clone()
}

async fn answer(tracker: &Tracker, document: &Value, target: &str, status: u16) {
    let reply = tracker.get(target).await;
    assert_eq!(reply.status, status, "{target}: {}", reply.text());
    let path = target.split('?').next().unwrap();
    if status == 200 {
        assert_eq!(
            reply.header("content-type"),
            Some("application/json"),
            "{target}"
        );
    }
    check(
        document,
        &response_schema(document, path, status),
        &reply.json(),
        target,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_api_response_matches_the_openapi_document() {
    let (database, site, config) = common::setup().await;
    site.add_page("/live");
    let tracker = Tracker::start(&config.set("OXITRAFFIC_MIN_DELAY_SECS", "0"));
    tracker.wait_for_health(200, Duration::from_secs(15)).await;
    let db = PgCluster::shared().connect(&database).await;
    db.batch_execute(
        "INSERT INTO paths (path) VALUES ('/'), ('/blog/\"quoted\"'), ('/quiet');
         INSERT INTO visits (path_id, registered_at, referrer, spent_time_seconds, utm_source, utm_campaign)
         SELECT 1 + i % 2, now() - (i % 40) * interval '1 day',
                CASE WHEN i % 3 = 0 THEN 'https://news.example/item/' || (i % 5) END,
                CASE WHEN i % 4 <> 0 THEN 5 + i % 4000 END,
                CASE WHEN i % 7 = 0 THEN 'newsletter' END, CASE WHEN i % 14 = 0 THEN 'spring' END
         FROM generate_series(1, 400) i;",
    )
    .await
    .unwrap();
    // Views, visitors and a page open now, through the real endpoints.
    let token = tracker.get("/register?path=%2Flive").await.text();
    assert_eq!(tracker.get("/visitor").await.status, 200);
    let _ = token;

    let served = tracker.get("/api/openapi.json").await;
    assert_eq!(served.status, 200);
    let document = served.json();
    assert_eq!(document["openapi"], "3.1.0");
    // The document is itself valid against the OpenAPI 3.1 meta-structure we rely on.
    for (path, item) in document["paths"].as_object().unwrap() {
        assert!(path.starts_with("/api/"), "{path}");
        assert!(item["get"]["responses"]["200"].is_object(), "{path}");
    }

    // Let the views flush (about every second) so views and visitors are not all zeros.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for target in [
        "/api/summary",
        "/api/summary?path=%2F&from=2020-01-01&to=2029-01-01",
        "/api/daily",
        "/api/daily?path=%2Fquiet",
        "/api/pages",
        "/api/pages?sort=engagement&limit=1&offset=1",
        "/api/pages?sort=spent",
        "/api/pages?sort=path",
        "/api/referrers",
        "/api/referrers?path=%2F&limit=1",
        "/api/campaigns",
        "/api/live",
        "/api/counts",
        "/api/count?path=%2F",
        "/api/history?path=%2F",
    ] {
        answer(&tracker, &document, target, 200).await;
    }
    for (target, status) in [
        ("/api/summary?from=2024-02-01&to=2024-01-01", 400),
        ("/api/daily?from=nope", 400),
        ("/api/pages?limit=0", 400),
        ("/api/pages?sort=nope", 400),
        ("/api/referrers?from=2000-01-01&to=2024-01-01", 400),
        ("/api/export?format=xml", 400),
        ("/api/count", 400),
        ("/api/summary?path=%2Fnope", 404),
        ("/api/history?path=%2Fnope", 404),
        ("/api/campaigns?path=%2Fnope", 404),
    ] {
        answer(&tracker, &document, target, status).await;
    }
    // 405 is a JSON object too, with Allow.
    let refused = client::send(tracker.addr, RequestSpec::new(Method::POST, "/api/summary")).await;
    assert_eq!(refused.status, 405);
    assert_eq!(refused.header("allow"), Some("GET, HEAD"));
    check(
        &document,
        &response_schema(&document, "/api/summary", 405),
        &refused.json(),
        "POST /api/summary",
    );

    // An NDJSON export: every line is an ExportedVisit.
    let export = tracker
        .get("/api/export?from=2020-01-01&to=2029-01-01&format=ndjson")
        .await;
    assert_eq!(export.status, 200);
    assert_eq!(export.header("content-type"), Some("application/x-ndjson"));
    let lines: Vec<&str> = export
        .body
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| std::str::from_utf8(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 400);
    let exported = json!({"$ref": "#/components/schemas/ExportedVisit"});
    for line in lines {
        check(
            &document,
            &exported,
            &serde_json::from_str(line).unwrap(),
            "an export line",
        );
    }
    let csv = tracker
        .get("/api/export?from=2020-01-01&to=2029-01-01")
        .await;
    assert_eq!(csv.header("content-type"), Some("text/csv; charset=utf-8"));
    let text = csv.text();
    let mut rows = text.lines();
    assert_eq!(
        rows.next(),
        Some("path,registered_at,referrer,spent_time_seconds,utm_source,utm_medium,utm_campaign")
    );
    assert_eq!(rows.count(), 400);
}
