//! Forgetting a consumer group's offsets (`pmctl project-analytics --from-beginning`): only
//! a group without members, and its next member then reads the topic from its start.

use std::sync::Arc;
use std::time::Duration;

use pm_kafka::group::{forget, Forgotten, GroupProgress};
use pm_kafka::Producer;

use crate::harness::{eventually, Env, Recorder};

#[tokio::test]
async fn a_group_is_forgotten_only_without_members_and_then_reads_from_the_start() {
    let env = Env::new(2).await;
    let topic = env.topics.orders.clone();
    for i in 0..4 {
        env.send(&topic, &format!("k{i}"), &format!("m{i}")).await;
    }
    let settings = env.settings("forget");
    let group = settings.group.clone();
    assert_eq!(
        forget(&env.config, &group).await.expect("forget"),
        Forgotten::Unknown
    );
    let dlq = Producer::new(&env.config, Duration::from_secs(10)).expect("producer");

    let first = Arc::new(Recorder::default());
    let (stop, task) = env.start(settings.clone(), first.clone(), dlq.clone());
    eventually("the first member applied everything", || {
        first.payloads().len() == 4
    })
    .await;
    assert_eq!(
        forget(&env.config, &group).await.expect("forget"),
        Forgotten::HasMembers,
        "a running member keeps its group"
    );
    stop.cancel();
    task.await.expect("first member");
    let progress = GroupProgress::new(&env.config, &group, &topic).expect("progress");
    assert_eq!(progress.committed().expect("committed"), 4);

    assert_eq!(
        forget(&env.config, &group).await.expect("forget"),
        Forgotten::Deleted
    );
    assert_eq!(progress.committed().expect("committed"), 0);
    let second = Arc::new(Recorder::default());
    let (stop, task) = env.start(settings, second.clone(), dlq);
    eventually("the next member read the topic from its start", || {
        second.payloads().len() == 4
    })
    .await;
    stop.cancel();
    task.await.expect("second member");
    let mut again = second.payloads();
    again.sort();
    assert_eq!(again, ["m0", "m1", "m2", "m3"]);
}
