//! Listing and replaying dead letters.

use std::sync::Arc;

use pm_kafka::dlq::{DeadLetterInfo, ErrorClass};
use pm_kafka::replay::{self, Filter, ReplayOptions};
use pm_kafka::{headers, Topics};
use tokio_util::sync::CancellationToken;

use crate::harness::{eventually, header, Env, Recorder};

fn opts() -> ReplayOptions {
    ReplayOptions {
        to: None,
        dry_run: false,
        limit: None,
        rate: None,
        max_replays: 3,
        from_beginning: false,
        detached: false,
    }
}

/// Puts dead letters on the DLQ the way the consumer does.
async fn dead_letters(env: &Env, n: usize, class: ErrorClass) {
    let dlq = Topics::dlq(&env.topics.orders);
    for i in 0..n {
        let info = DeadLetterInfo {
            error: format!("order o{i} is not known yet"),
            class,
            attempts: 5,
            original_topic: env.topics.orders.clone(),
            original_partition: 0,
            original_offset: i as i64,
            first_failed_at: chrono::Utc::now(),
        };
        let original = vec![
            (headers::CORRELATION_ID.to_owned(), format!("c{i}")),
            (headers::EVENT_TYPE.to_owned(), "chargeback".to_owned()),
        ];
        env.producer
            .send(
                &dlq,
                format!("user-{i}").as_bytes(),
                format!("payload-{i}").as_bytes(),
                info.headers(&original),
            )
            .await
            .expect("send");
    }
}

async fn run_replay(env: &Env, filter: Filter, opts: ReplayOptions) -> replay::ReplaySummary {
    let (config, dlq, producer) = (
        env.config.clone(),
        Topics::dlq(&env.topics.orders),
        env.producer.clone(),
    );
    tokio::task::spawn_blocking(move || {
        replay::replay(
            &config,
            &dlq,
            &filter,
            &opts,
            &producer,
            &CancellationToken::new(),
            |_, _| {},
        )
    })
    .await
    .expect("task")
    .expect("replay")
}

#[tokio::test]
async fn list_filters_without_consuming() {
    let env = Env::new(1).await;
    dead_letters(&env, 3, ErrorClass::Retryable).await;
    dead_letters(&env, 1, ErrorClass::Permanent).await;
    let dlq = Topics::dlq(&env.topics.orders);
    let all = replay::list(&env.config, &dlq, &Filter::default(), 100).expect("list");
    assert_eq!(all.len(), 4);
    let info = all[0].info.as_ref().expect("dead-letter headers");
    assert_eq!((info.class, info.attempts), (ErrorClass::Retryable, 5));
    assert_eq!(all[0].correlation_id.as_deref(), Some("c0"));
    let f = Filter {
        error_class: Some(ErrorClass::Permanent),
        ..Filter::default()
    };
    assert_eq!(
        replay::list(&env.config, &dlq, &f, 100)
            .expect("list")
            .len(),
        1
    );
    let f = Filter {
        error_contains: Some("o1 ".to_owned()),
        key: Some("user-1".to_owned()),
        ..Filter::default()
    };
    assert_eq!(
        replay::list(&env.config, &dlq, &f, 100)
            .expect("list")
            .len(),
        1
    );
    let f = Filter {
        event_type: Some("order".to_owned()),
        ..Filter::default()
    };
    assert!(replay::list(&env.config, &dlq, &f, 100)
        .expect("list")
        .is_empty());
    let f = Filter {
        since: Some(chrono::Utc::now() + chrono::Duration::hours(1)),
        ..Filter::default()
    };
    assert!(replay::list(&env.config, &dlq, &f, 100)
        .expect("list")
        .is_empty());
    // Listing twice sees the same.
    assert_eq!(
        replay::list(&env.config, &dlq, &Filter::default(), 100)
            .expect("list")
            .len(),
        4
    );
}

#[tokio::test]
async fn replay_republishes_once_with_a_replay_count_and_resumes() {
    let env = Env::new(1).await;
    dead_letters(&env, 4, ErrorClass::Retryable).await;

    let dry = run_replay(
        &env,
        Filter::default(),
        ReplayOptions {
            dry_run: true,
            ..opts()
        },
    )
    .await;
    assert_eq!(dry.replayed, 4);
    assert!(
        env.read_all(&env.topics.orders).is_empty(),
        "a dry run publishes nothing"
    );

    let first = run_replay(
        &env,
        Filter::default(),
        ReplayOptions {
            limit: Some(3),
            ..opts()
        },
    )
    .await;
    assert_eq!((first.replayed, first.failed), (3, 0));
    let second = run_replay(&env, Filter::default(), opts()).await;
    assert_eq!(
        second.replayed, 1,
        "an interrupted replay resumes where it stopped"
    );
    let third = run_replay(&env, Filter::default(), opts()).await;
    assert_eq!(third.replayed, 0);

    let replayed = env.read_all(&env.topics.orders);
    assert_eq!(replayed.len(), 4);
    for m in &replayed {
        assert_eq!(header(m, headers::REPLAY_COUNT).as_deref(), Some("1"));
        assert!(
            header(m, "pm-dlq-error").is_none(),
            "dead-letter headers are not carried back"
        );
        assert!(header(m, headers::CORRELATION_ID).is_some());
    }

    // The replayed messages are consumed like any other.
    let rec = Arc::new(Recorder::default());
    let (stop, task) = env.start(
        env.settings("after-replay"),
        rec.clone(),
        env.producer.clone(),
    );
    eventually("replayed messages applied", || {
        rec.applied.lock().expect("lock").len() == 4
    })
    .await;
    stop.cancel();
    task.await.expect("task");
}

#[tokio::test]
async fn max_replays_stops_loops() {
    let env = Env::new(1).await;
    let dlq = Topics::dlq(&env.topics.orders);
    let info = DeadLetterInfo {
        error: "still failing".to_owned(),
        class: ErrorClass::Retryable,
        attempts: 5,
        original_topic: env.topics.orders.clone(),
        original_partition: 0,
        original_offset: 0,
        first_failed_at: chrono::Utc::now(),
    };
    let looped = vec![(headers::REPLAY_COUNT.to_owned(), "3".to_owned())];
    env.producer
        .send(&dlq, b"user-1", b"loop", info.headers(&looped))
        .await
        .expect("send");
    let summary = run_replay(&env, Filter::default(), opts()).await;
    assert_eq!((summary.replayed, summary.over_max_replays), (0, 1));
    let summary = run_replay(
        &env,
        Filter::default(),
        ReplayOptions {
            max_replays: 10,
            from_beginning: true,
            ..opts()
        },
    )
    .await;
    assert_eq!(summary.replayed, 1);
    let to_other = run_replay(
        &env,
        Filter::default(),
        ReplayOptions {
            max_replays: 10,
            from_beginning: true,
            to: Some(env.topics.disputes.clone()),
            ..opts()
        },
    )
    .await;
    assert_eq!(to_other.replayed, 1);
    assert_eq!(env.read_all(&env.topics.disputes).len(), 1);
}

#[tokio::test]
async fn a_detached_replay_of_one_dead_letter_leaves_the_resumable_replay_alone() {
    let env = Env::new(1).await;
    dead_letters(&env, 3, ErrorClass::Retryable).await;
    let dlq = Topics::dlq(&env.topics.orders);
    let all = replay::list(&env.config, &dlq, &Filter::default(), 100).expect("list");
    let chosen = (all[1].dlq_partition, all[1].dlq_offset);
    let one = Filter {
        at: Some(chosen),
        ..Filter::default()
    };
    assert_eq!(
        replay::list(&env.config, &dlq, &one, 100)
            .expect("list")
            .len(),
        1
    );

    let detached = ReplayOptions {
        detached: true,
        ..opts()
    };
    let summary = run_replay(&env, one.clone(), detached.clone()).await;
    assert_eq!((summary.replayed, summary.skipped), (1, 2));
    assert_eq!(
        (
            summary.messages[0].dlq_partition,
            summary.messages[0].dlq_offset
        ),
        chosen
    );
    let again = run_replay(&env, one, detached).await;
    assert_eq!(again.replayed, 1, "a detached replay does not remember");
    assert_eq!(env.read_all(&env.topics.orders).len(), 2);

    let resumed = run_replay(&env, Filter::default(), opts()).await;
    assert_eq!(
        resumed.replayed, 3,
        "the resumable replay still has every dead letter ahead of it"
    );
}

#[tokio::test]
async fn a_failed_publish_is_never_passed_over_and_later_messages_wait_for_the_next_run() {
    let env = Env::new(1).await;
    dead_letters(&env, 3, ErrorClass::Retryable).await;
    // A producer whose broker is unreachable: the first publish fails and the run stops.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let broken = pm_kafka::Producer::new(
        &pm_kafka::KafkaConfig::new(format!("127.0.0.1:{closed}"), "broken"),
        std::time::Duration::from_millis(500),
    )
    .expect("producer");
    let (config, dlq) = (env.config.clone(), Topics::dlq(&env.topics.orders));
    let failed = tokio::task::spawn_blocking(move || {
        replay::replay(
            &config,
            &dlq,
            &Filter::default(),
            &opts(),
            &broken,
            &CancellationToken::new(),
            |_, _| {},
        )
    })
    .await
    .expect("task")
    .expect("replay");
    assert_eq!((failed.replayed, failed.failed), (0, 1));

    // Nothing was committed past the failed message: the next run replays all three; a
    // dead letter that arrives later is left for the run after that, and replayed once.
    let first = run_replay(&env, Filter::default(), opts()).await;
    assert_eq!(first.replayed, 3);
    dead_letters(&env, 1, ErrorClass::Retryable).await;
    let second = run_replay(&env, Filter::default(), opts()).await;
    assert_eq!(second.replayed, 1, "only the one that came after");
}
