//! Layout: stories and their disorder become deliveries in send order.
//!
//! Every real webhook gets a sort key: its slot in generation order (ticks), pushed back
//! when it is reordered or late, then pushed behind whatever it depends on (a chargeback
//! behind its order's `success`, a decision behind its `opened`), so causality holds in
//! the send order whatever the disorder. Copies go after their original (a few
//! deliveries later, or a fraction of the way to the end of the run), faults around it.
//! Sorting by `(key, sequence)` gives the send order; the arrival process gives each
//! position its send time. Distances in deliveries are turned into keys with the
//! expected number of deliveries per real webhook.

use pm_domain::evidence::EvidenceFile;

use crate::disorder::{CopyAt, Extras};
use crate::plan::{Action, ActionKind, Delivery, DeliveryKind, Expect, Signing};
use crate::scenario::Scenario;
use crate::story::Story;

/// Key units per real webhook in generation order.
const SLOT: u64 = 1 << 16;

/// The laid-out plan, before the ledger.
#[derive(Debug)]
pub(crate) struct Layout {
    pub(crate) deliveries: Vec<Delivery>,
    pub(crate) actions: Vec<Action>,
    /// `first[story][event]`: index of the event's original (= first) delivery.
    pub(crate) first: Vec<Vec<usize>>,
}

#[derive(Debug, Clone, Copy)]
enum Source {
    Original,
    Copy,
    Fault(usize),
}

#[derive(Debug, Clone, Copy)]
struct Item {
    key: u64,
    seq: u64,
    story: usize,
    event: usize,
    source: Source,
}

/// Lays out the deliveries and actions of `stories` (with one `Extras` per event).
pub(crate) fn lay_out(scenario: &Scenario, stories: &[Story], extras: &[Vec<Extras>]) -> Layout {
    let density = scenario.config().faults.deliveries_per_original().max(1.0);
    let per_delivery = SLOT as f64 / density;
    let span = |deliveries: f64| (deliveries * per_delivery).round() as u64;

    let keys = real_keys(stories, extras, span);
    let end_key = keys.iter().map(Vec::len).sum::<usize>() as u64 * SLOT;

    let mut items = Vec::new();
    let mut seq = 0_u64;
    let mut push = |items: &mut Vec<Item>, key, story, event, source| {
        items.push(Item {
            key,
            seq,
            story,
            event,
            source,
        });
        seq += 1;
    };
    for (s, story) in stories.iter().enumerate() {
        for e in 0..story.events.len() {
            let key = keys[s][e];
            push(&mut items, key, s, e, Source::Original);
            for copy in &extras[s][e].copies {
                let at = match *copy {
                    CopyAt::Near(n) => key + span(n as f64).max(1),
                    CopyAt::Far(frac) => {
                        key + 1 + (end_key.saturating_sub(key) as f64 * frac) as u64
                    }
                };
                push(&mut items, at, s, e, Source::Copy);
            }
            for (i, fault) in extras[s][e].faults.iter().enumerate() {
                let off = span(fault.offset.unsigned_abs() as f64);
                let at = if fault.offset < 0 {
                    key.saturating_sub(off)
                } else {
                    key + off
                };
                push(&mut items, at, s, e, Source::Fault(i));
            }
        }
    }
    items.sort_unstable_by_key(|i| (i.key, i.seq));

    let mut first: Vec<Vec<usize>> = stories.iter().map(|s| vec![0; s.events.len()]).collect();
    for (idx, item) in items.iter().enumerate() {
        if matches!(item.source, Source::Original) {
            first[item.story][item.event] = idx;
        }
    }
    let (actions, last_action) = actions(stories, &first);
    let times = scenario.arrival().times(items.len());
    let deliveries = items
        .iter()
        .zip(times)
        .map(|(item, at_ms)| delivery(item, at_ms, stories, extras, &first, &last_action))
        .collect();
    Layout {
        deliveries,
        actions,
        first,
    }
}

/// Keys of the real webhooks: generation slot, displacement, then causality.
fn real_keys(
    stories: &[Story],
    extras: &[Vec<Extras>],
    span: impl Fn(f64) -> u64,
) -> Vec<Vec<u64>> {
    let mut order: Vec<(u64, usize, usize)> = stories
        .iter()
        .enumerate()
        .flat_map(|(s, story)| {
            story
                .events
                .iter()
                .enumerate()
                .map(move |(e, ev)| (ev.tick, s, e))
        })
        .collect();
    order.sort_unstable();
    let mut keys: Vec<Vec<u64>> = stories.iter().map(|s| vec![0; s.events.len()]).collect();
    for (slot, &(_, s, e)) in order.iter().enumerate() {
        // Held back past at least the next real webhook, landing between two slots.
        let shift = extras[s][e]
            .displacement
            .map_or(0, |(_, by)| span(by).max(SLOT) + SLOT / 2);
        keys[s][e] = slot as u64 * SLOT + shift;
    }
    for (s, story) in stories.iter().enumerate() {
        // Prerequisites come earlier in the story, so one pass settles chains.
        for (e, event) in story.events.iter().enumerate() {
            if let Some(dep) = event.depends_on {
                keys[s][e] = keys[s][e].max(keys[s][dep] + 1);
            }
        }
    }
    keys
}

/// The merchant actions, in the order they must be performed, and for each story the
/// index of its last action.
fn actions(stories: &[Story], first: &[Vec<usize>]) -> (Vec<Action>, Vec<Option<usize>>) {
    let mut pending: Vec<(usize, usize, u8, Action)> = Vec::new();
    for (s, story) in stories.iter().enumerate() {
        let Some(dispute) = &story.dispute else {
            continue;
        };
        let Some(evidence) = &dispute.evidence else {
            continue;
        };
        let after = first[s][dispute.opened];
        let files: Vec<EvidenceFile> = evidence.files.clone();
        pending.push((
            after,
            s,
            0,
            Action {
                after_delivery: after,
                order_id: story.order_id.clone(),
                kind: ActionKind::AddEvidence {
                    fields: evidence.fields.clone(),
                    files,
                },
            },
        ));
        if evidence.submit {
            pending.push((
                after,
                s,
                1,
                Action {
                    after_delivery: after,
                    order_id: story.order_id.clone(),
                    kind: ActionKind::Submit,
                },
            ));
        }
    }
    pending.sort_by_key(|(after, s, step, _)| (*after, *s, *step));
    let mut last = vec![None; stories.len()];
    let actions = pending
        .into_iter()
        .enumerate()
        .map(|(i, (_, s, _, action))| {
            last[s] = Some(i);
            action
        })
        .collect();
    (actions, last)
}

fn delivery(
    item: &Item,
    at_ms: u64,
    stories: &[Story],
    extras: &[Vec<Extras>],
    first: &[Vec<usize>],
    last_action: &[Option<usize>],
) -> Delivery {
    let story = &stories[item.story];
    let event = &story.events[item.event];
    let extra = &extras[item.story][item.event];
    let real = |kind, displaced| Delivery {
        at_ms,
        route: event.route,
        body: event.fields.render(),
        signing: Signing::Valid,
        provider_event_id: Some(event.event_id.clone()),
        order_id: story.order_id.clone(),
        kind,
        expect: Expect::Accepted,
        displaced,
        depends_on: event.depends_on.map(|d| first[item.story][d]),
        wait_for_action: if event.waits_for_actions {
            last_action[item.story]
        } else {
            None
        },
    };
    match item.source {
        Source::Original => real(DeliveryKind::Original, extra.displacement.map(|d| d.0)),
        Source::Copy => real(
            DeliveryKind::Duplicate {
                original: first[item.story][item.event],
            },
            None,
        ),
        Source::Fault(i) => {
            let fault = &extra.faults[i];
            Delivery {
                at_ms,
                route: event.route,
                body: fault.body.body.clone(),
                signing: fault.body.signing,
                provider_event_id: Some(fault.event_id.clone()),
                order_id: story.order_id.clone(),
                kind: DeliveryKind::Fault(fault.reason),
                expect: Expect::Rejected(fault.reason.status()),
                displaced: None,
                depends_on: None,
                wait_for_action: None,
            }
        }
    }
}
