//! Read routes over HTTP: list shapes, filters and cursor pagination.

use std::collections::HashSet;

use crate::app::{order, TestApp};

#[tokio::test]
async fn empty_lists_are_empty_arrays_not_null() {
    let app = TestApp::spawn().await;
    for path in ["/orders", "/disputes", "/orders/events", "/disputes/events"] {
        let (status, body) = app.get(path).await;
        assert_eq!(status, 200);
        assert_eq!(body["items"], serde_json::json!([]), "{path}");
        assert_eq!(body["has_more"], false);
        assert!(body["next_cursor"].is_null());
    }
}

#[tokio::test]
async fn orders_page_through_three_pages_with_filters() {
    let app = TestApp::spawn().await;
    for i in 0..12 {
        let status = if i % 2 == 0 { "success" } else { "created" };
        let mut body = order(
            &format!("e{i}"),
            &format!("o{i:02}"),
            status,
            "2026-01-02T00:00:00Z",
        );
        body["created_at"] = serde_json::json!(format!("2026-01-01T00:00:{:02}Z", i / 2));
        assert_eq!(app.order_webhook(&body).await.status(), 202);
    }
    for sort in ["asc", "desc"] {
        let mut seen = Vec::new();
        let mut next: Option<String> = None;
        let mut pages = 0;
        loop {
            let cursor = next
                .as_ref()
                .map(|c| format!("&cursor={c}"))
                .unwrap_or_default();
            let (status, body) = app
                .get(&format!(
                    "/orders?status=success&limit=2&sort={sort}{cursor}"
                ))
                .await;
            assert_eq!(status, 200, "{body}");
            pages += 1;
            seen.extend(
                body["items"]
                    .as_array()
                    .expect("items")
                    .iter()
                    .map(|o| o["order_id"].as_str().unwrap_or("").to_owned()),
            );
            assert_eq!(
                body["has_more"].as_bool(),
                Some(!body["next_cursor"].is_null())
            );
            match body["next_cursor"].as_str() {
                Some(c) => next = Some(c.to_owned()),
                None => break,
            }
        }
        assert_eq!(pages, 3, "{sort}");
        let mut expected: Vec<String> = (0..12).step_by(2).map(|i| format!("o{i:02}")).collect();
        if sort == "desc" {
            expected.reverse();
        }
        assert_eq!(seen, expected, "{sort}");
        assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 6);
    }
    // A cursor from one direction is refused in the other.
    let (_, first) = app.get("/orders?limit=2&sort=asc").await;
    let cursor = first["next_cursor"].as_str().expect("cursor");
    assert_eq!(
        app.get(&format!("/orders?sort=desc&cursor={cursor}"))
            .await
            .0,
        400
    );

    let (_, filtered) = app.get("/orders?created_from=2026-01-01T00:00:02Z&created_to=2026-01-01T00:00:04Z&status=created").await;
    let ids: Vec<_> = filtered["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|o| o["order_id"].clone())
        .collect();
    assert_eq!(ids, [serde_json::json!("o07"), serde_json::json!("o05")]);
    let (_, by_user) = app
        .get(&format!(
            "/orders?user_id={}&on_hold=false&limit=1000",
            crate::app::USER
        ))
        .await;
    assert_eq!(by_user["items"].as_array().map(Vec::len), Some(12));
}

#[tokio::test]
async fn dispute_filters() {
    let app = TestApp::spawn().await;
    app.open_dispute("ord-a").await;
    app.open_dispute("ord-b").await;
    let (_, open) = app.get("/disputes?status=open&reason=fraud").await;
    assert_eq!(open["items"].as_array().map(Vec::len), Some(2));
    let (_, none) = app.get("/disputes?status=won").await;
    assert_eq!(none["items"].as_array().map(Vec::len), Some(0));
    let (_, one) = app.get("/disputes?order_id=ord-b").await;
    assert_eq!(one["items"][0]["order_id"], "ord-b");
    assert_eq!(one["items"][0]["currency"], "USD");
    let (_, other_reason) = app.get("/disputes?reason=duplicate").await;
    assert_eq!(other_reason["items"].as_array().map(Vec::len), Some(0));
}

/// The ids of a list response's items under `key`, sorted.
fn ids(list: &serde_json::Value, key: &str) -> Vec<String> {
    let mut ids: Vec<String> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i[key].as_str().expect("id").to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn lists_filter_on_several_ids_in_either_spelling() {
    let app = TestApp::spawn().await;
    let a = app.open_dispute("ord-a").await;
    let b = app.open_dispute("ord-b").await;
    app.open_dispute("ord-c").await;

    for query in [
        "/orders?order_id=ord-a&order_id=ord-c",
        "/orders?order_ids=ord-a,ord-c",
        "/orders?order_id=ord-a&order_ids=ord-c,ord-a",
    ] {
        let (status, list) = app.get(query).await;
        assert_eq!(status, 200, "{query}: {list}");
        assert_eq!(ids(&list, "order_id"), ["ord-a", "ord-c"], "{query}");
    }
    let (_, list) = app.get("/disputes?order_ids=ord-b,ord-c").await;
    assert_eq!(ids(&list, "order_id"), ["ord-b", "ord-c"]);
    let (_, list) = app
        .get(&format!("/disputes?dispute_id={a}&dispute_id={b}"))
        .await;
    let mut expected = vec![a.clone(), b.clone()];
    expected.sort();
    assert_eq!(ids(&list, "dispute_id"), expected);
    let (_, events) = app.get("/orders/events?order_ids=ord-a,ord-b").await;
    let mut orders: Vec<String> = ids(&events, "order_id");
    orders.dedup();
    assert_eq!(orders, ["ord-a", "ord-b"]);
    let (_, events) = app.get(&format!("/disputes/events?dispute_ids={a}")).await;
    assert!(
        events["items"]
            .as_array()
            .is_some_and(|e| !e.is_empty() && e.iter().all(|e| e["dispute_id"] == a.as_str())),
        "{events}"
    );

    // Bad ids are named; too many is refused rather than truncated.
    let (status, problem) = app.get("/disputes?dispute_ids=not-a-uuid").await;
    assert_eq!(status, 400);
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("dispute_id")),
        "{problem}"
    );
    let (status, _) = app.get("/orders?order_ids=ord-a,,ord-b").await;
    assert_eq!(status, 400);
    let many: Vec<String> = (0..101).map(|i| format!("o{i}")).collect();
    let (status, problem) = app
        .get(&format!("/orders?order_ids={}", many.join(",")))
        .await;
    assert_eq!(status, 400);
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("at most 100")),
        "{problem}"
    );
}
