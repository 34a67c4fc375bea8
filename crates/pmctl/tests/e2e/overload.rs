//! A hostile or overwhelming client against a real `serve-api` process: slow-header
//! connections are closed while webhooks are still served, and a flood is shed with fast
//! 503s while every acknowledged webhook is stored.

use std::time::Duration;

use futures::future::join_all;
use pm_storage::testing::TestDatabase;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::process::{order_json, send_webhook, Pmctl, SECRET};

async fn api(db: &TestDatabase, extra: &[&str]) -> Pmctl {
    let mut args = vec!["serve-api"];
    args.extend_from_slice(extra);
    Pmctl::start(
        &args,
        &[("PM_DATABASE_URL", &db.url), ("PM_WEBHOOK_SECRETS", SECRET)],
    )
    .await
}

async fn stored(db: &TestDatabase, order_id: &str) -> bool {
    sqlx::query_scalar::<_, i64>("SELECT count(*) FROM orders WHERE order_id = $1")
        .bind(order_id)
        .fetch_one(&db.pool)
        .await
        .expect("count")
        == 1
}

/// Reads until the server closes the connection; `true` when it did within `within`.
async fn closed_by_server(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 512];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test]
async fn slow_header_connections_are_closed_and_webhooks_are_still_served() {
    let db = TestDatabase::new().await;
    let api = api(&db, &["--header-timeout", "2s"]).await;
    let addr = format!("127.0.0.1:{}", api.port);

    // 200 clients trickle a request head, one byte every 300 ms, never finishing it.
    let slow: Vec<_> = (0..200)
        .map(|_| {
            let addr = addr.clone();
            tokio::spawn(async move {
                let mut stream = TcpStream::connect(&addr).await.expect("connect");
                stream
                    .write_all(b"POST /webhooks/payments/orders HTTP/1.1\r\nHost: x\r\n")
                    .await
                    .expect("write");
                let (mut reader, mut writer) = stream.into_split();
                let trickle = tokio::spawn(async move {
                    for byte in b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        if writer.write_all(&[*byte]).await.is_err() {
                            return;
                        }
                    }
                });
                let mut buf = [0u8; 256];
                let closed = tokio::time::timeout(Duration::from_secs(20), async {
                    loop {
                        match reader.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                    }
                })
                .await
                .is_ok();
                trickle.abort();
                closed
            })
        })
        .collect();
    // One that connects and says nothing at all, and one that stays open after a request.
    let mut idle = TcpStream::connect(&addr).await.expect("connect");
    let mut kept_alive = TcpStream::connect(&addr).await.expect("connect");
    kept_alive
        .write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut head = [0u8; 64];
    let n = kept_alive.read(&mut head).await.expect("response");
    assert!(
        head[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&head[..n])
    );

    // Meanwhile a provider's webhook is answered.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = send_webhook(
        &api,
        "/webhooks/payments/orders",
        &order_json("slow-1", "o-slow", "created", 1),
    )
    .await;
    assert_eq!(r.status(), 202);
    assert!(stored(&db, "o-slow").await);

    let closed = join_all(slow).await;
    let closed = closed.into_iter().filter(|c| matches!(c, Ok(true))).count();
    assert_eq!(closed, 200, "every slow-header connection was closed");
    assert!(
        closed_by_server(&mut idle, Duration::from_secs(20)).await,
        "a silent connection is closed too"
    );
    assert!(
        closed_by_server(&mut kept_alive, Duration::from_secs(20)).await,
        "and an idle keep-alive connection"
    );
}

#[tokio::test]
async fn a_flood_is_shed_with_fast_503s_and_every_acknowledged_webhook_is_stored() {
    let db = TestDatabase::new().await;
    let api = api(&db, &["--max-in-flight", "4"]).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let t = chrono::Utc::now().timestamp();
    let url = api.url("/webhooks/payments/orders");
    // 2,000 webhooks from 200 concurrent senders, far past what 4 in flight can take.
    let senders = (0..200).map(|sender| {
        let (client, url) = (client.clone(), url.clone());
        tokio::spawn(async move {
            let mut answers = Vec::new();
            for i in 0..10 {
                let order_id = format!("flood-{sender}-{i}");
                let body = order_json(&format!("evt-{order_id}"), &order_id, "created", 1);
                let sent = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header(
                        pm_domain::signature::HEADER,
                        pm_domain::signature::header_value(SECRET.as_bytes(), t, body.as_bytes()),
                    )
                    .body(body)
                    .send()
                    .await;
                let answer = match sent {
                    Ok(r) => (r.status().as_u16(), r.headers().contains_key("retry-after")),
                    Err(e) => panic!("no answer (a hang or a reset): {e}"),
                };
                answers.push((order_id, answer));
            }
            answers
        })
    });
    let answers: Vec<_> = join_all(senders)
        .await
        .into_iter()
        .flat_map(|a| a.expect("sender"))
        .collect();

    let (mut accepted, mut shed) = (Vec::new(), 0);
    for (order_id, (status, retry_after)) in &answers {
        match status {
            202 => accepted.push(order_id.clone()),
            503 => {
                assert!(retry_after, "a 503 says when to retry");
                shed += 1;
            }
            other => panic!("{order_id}: unexpected {other}"),
        }
    }
    assert!(
        shed > 0,
        "nothing was shed: the flood did not reach the limit"
    );
    assert!(!accepted.is_empty());
    let stored_ids: Vec<String> = sqlx::query_scalar("SELECT order_id FROM orders")
        .fetch_all(&db.pool)
        .await
        .expect("orders");
    let stored_ids: std::collections::HashSet<_> = stored_ids.into_iter().collect();
    for id in &accepted {
        assert!(
            stored_ids.contains(id),
            "{id} was acknowledged but not stored"
        );
    }
    assert_eq!(
        stored_ids.len(),
        accepted.len(),
        "a shed webhook was applied"
    );
}
