//! Keyset pagination: every row exactly once, in order, in both directions, with filters.

use std::collections::HashSet;

use pm_domain::order::OrderStatus;
use pm_domain::pagination::{PageRequest, Sort};
use pm_storage::events::{list_events, EventFilter, EventTable};
use pm_storage::orders::{self, OrderFilter};
use pm_storage::testing::TestDatabase;
use pm_storage::webhooks::{apply_order_tx, Delivery};

use crate::fixtures::{order, t};

/// 25 orders; several share a `created_at` so the id breaks ties.
async fn seed(db: &TestDatabase) {
    for i in 0..25 {
        let status = [
            OrderStatus::Created,
            OrderStatus::Updated,
            OrderStatus::Success,
        ][i % 3];
        let mut w = order(&format!("e{i}"), &format!("o{i:02}"), status, 100);
        w.created_at = t((i / 3) as i64);
        let delivery = Delivery {
            event_id: pm_domain::EventId::generate(),
            received_at: pm_domain::time::now() - chrono::Duration::seconds(100 - i as i64),
            correlation_id: None,
        };
        apply_order_tx(&db.pool, &w, &delivery).await.expect("seed");
    }
}

async fn all_pages(
    db: &TestDatabase,
    filter: &OrderFilter,
    sort: Sort,
    limit: i64,
) -> (Vec<String>, usize) {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = PageRequest::new(Some(limit), sort, cursor.as_deref()).expect("page");
        let result = orders::list(&db.pool, filter, &page).await.expect("list");
        pages += 1;
        ids.extend(result.items.iter().map(|o| o.order_id.clone()));
        match result.next_cursor {
            Some(c) => cursor = Some(c),
            None => return (ids, pages),
        }
    }
}

#[tokio::test]
async fn orders_page_through_without_duplicates_or_gaps_in_both_directions() {
    let db = TestDatabase::new().await;
    seed(&db).await;
    let (asc, pages) = all_pages(&db, &OrderFilter::default(), Sort::Asc, 7).await;
    assert_eq!(pages, 4);
    let expected: Vec<String> = (0..25).map(|i| format!("o{i:02}")).collect();
    assert_eq!(asc, expected);
    let (mut desc, _) = all_pages(&db, &OrderFilter::default(), Sort::Desc, 7).await;
    desc.reverse();
    assert_eq!(desc, expected);
}

#[tokio::test]
async fn pagination_is_stable_under_concurrent_inserts() {
    let db = TestDatabase::new().await;
    seed(&db).await;
    let first = orders::list(
        &db.pool,
        &OrderFilter::default(),
        &PageRequest::new(Some(10), Sort::Asc, None).expect("page"),
    )
    .await
    .expect("first page");
    // A row inserted before the cursor position is not seen, nothing is repeated or skipped.
    let mut early = order("e-new", "o-new", OrderStatus::Created, 0);
    early.created_at = t(-50);
    apply_order_tx(&db.pool, &early, &Delivery::now())
        .await
        .expect("insert");
    let next = PageRequest::new(Some(100), Sort::Asc, first.next_cursor.as_deref()).expect("page");
    let rest = orders::list(&db.pool, &OrderFilter::default(), &next)
        .await
        .expect("rest");
    let seen: Vec<_> = first
        .items
        .iter()
        .chain(rest.items.iter())
        .map(|o| o.order_id.clone())
        .collect();
    assert_eq!(
        seen,
        (0..25).map(|i| format!("o{i:02}")).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn order_filters_combine() {
    let db = TestDatabase::new().await;
    seed(&db).await;
    let filter = OrderFilter {
        statuses: vec![OrderStatus::Success, OrderStatus::Created],
        ..Default::default()
    };
    let (ids, _) = all_pages(&db, &filter, Sort::Asc, 3).await;
    assert_eq!(ids.len(), 17);
    let filter = OrderFilter {
        statuses: vec![OrderStatus::Updated],
        created_from: Some(t(2)),
        created_to: Some(t(5)),
        ..Default::default()
    };
    let (ids, _) = all_pages(&db, &filter, Sort::Asc, 3).await;
    // created_at 2..5 (exclusive) holds o06..o14; of those, i % 3 == 1 are `updated`.
    assert_eq!(ids, ["o07", "o10", "o13"]);
    sqlx::query(
        "UPDATE orders SET on_hold = true, hold_reason = 'risk' WHERE order_id IN ('o01', 'o02')",
    )
    .execute(&db.pool)
    .await
    .expect("hold");
    let (ids, _) = all_pages(
        &db,
        &OrderFilter {
            on_hold: Some(true),
            ..Default::default()
        },
        Sort::Asc,
        1,
    )
    .await;
    assert_eq!(ids, ["o01", "o02"]);
    let other_user =
        pm_domain::UserId::parse("11111111-1111-4111-8111-111111111111").expect("uuid");
    let (ids, _) = all_pages(
        &db,
        &OrderFilter {
            user_id: Some(other_user),
            ..Default::default()
        },
        Sort::Asc,
        5,
    )
    .await;
    assert!(ids.is_empty());
}

#[tokio::test]
async fn events_page_in_time_order_with_kind_and_window_filters() {
    let db = TestDatabase::new().await;
    seed(&db).await;
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = PageRequest::new(Some(4), Sort::Desc, cursor.as_deref()).expect("page");
        let result = list_events(&db.pool, EventTable::Order, &EventFilter::default(), &page)
            .await
            .expect("events");
        pages += 1;
        seen.extend(result.items.iter().map(|e| (e.created_at, e.event_id)));
        match result.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert!(pages >= 3);
    assert_eq!(seen.len(), 25);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 25);
    assert!(seen.windows(2).all(|w| w[0] > w[1]), "strictly descending");

    let now = pm_domain::time::now();
    let filter = EventFilter {
        aggregate_ids: vec!["o03".to_owned()],
        kinds: vec!["webhook_received".to_owned()],
        time_from: Some(now - chrono::Duration::hours(1)),
        time_to: Some(now + chrono::Duration::hours(1)),
    };
    let page = PageRequest::new(None, Sort::Asc, None).expect("page");
    let result = list_events(&db.pool, EventTable::Order, &filter, &page)
        .await
        .expect("filtered");
    assert_eq!(result.items.len(), 1);
    let filter = EventFilter {
        kinds: vec!["hold_set".to_owned()],
        ..Default::default()
    };
    assert!(list_events(&db.pool, EventTable::Order, &filter, &page)
        .await
        .expect("none")
        .items
        .is_empty());
}
