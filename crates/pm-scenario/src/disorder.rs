//! Delivery disorder drawn for each real webhook: whether it is held back (reordered or
//! late), how many copies follow it and where, and which bad deliveries shadow it.
//!
//! Distances are in deliveries; the layout turns them into positions.

use pm_domain::ProviderEventId;

use crate::config::Faults;
use crate::dice::{Dice, Stream};
use crate::fault::{self, FaultBody};
use crate::ids::Ids;
use crate::plan::{Displacement, FaultReason};
use crate::story::Story;

/// Near copies follow their original within this many deliveries.
pub(crate) const NEAR_COPY_WINDOW: u64 = 5;
/// Fault deliveries land within this many deliveries before or after their webhook.
pub(crate) const FAULT_WINDOW: u64 = 3;

/// Where a copy goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum CopyAt {
    /// This many deliveries after the original.
    Near(u64),
    /// This fraction of the way from the original to the end of the run.
    Far(f64),
}

/// A bad delivery that shadows a real webhook.
#[derive(Debug, Clone)]
pub(crate) struct FaultDraw {
    pub(crate) reason: FaultReason,
    pub(crate) event_id: ProviderEventId,
    pub(crate) body: FaultBody,
    /// Deliveries after (positive) or before (negative) the real webhook.
    pub(crate) offset: i64,
}

/// The disorder of one real webhook.
#[derive(Debug, Clone, Default)]
pub(crate) struct Extras {
    /// How it is held back, and by how many deliveries.
    pub(crate) displacement: Option<(Displacement, f64)>,
    pub(crate) copies: Vec<CopyAt>,
    pub(crate) faults: Vec<FaultDraw>,
}

impl Extras {
    /// Deliveries besides the original.
    pub(crate) fn extra_deliveries(&self) -> usize {
        self.copies.len() + self.faults.len()
    }
}

/// Draws disorder from the `Delivery` stream, story by story.
#[derive(Debug)]
pub(crate) struct Disorder {
    faults: Faults,
    dice: Dice,
    /// Deliveries sent during `late_by_ms` at the mean rate.
    late_deliveries: f64,
}

impl Disorder {
    pub(crate) fn new(seed: u64, faults: &Faults, mean_rate: f64) -> Self {
        Disorder {
            faults: faults.clone(),
            dice: Dice::new(seed, Stream::Delivery),
            late_deliveries: faults.late_by_ms as f64 * mean_rate / 1000.0,
        }
    }

    /// One [`Extras`] per event of the story.
    pub(crate) fn draw(&mut self, story: &Story, ids: &Ids) -> Vec<Extras> {
        let f = &self.faults;
        let d = &mut self.dice;
        let mut fault_number = 0;
        story
            .events
            .iter()
            .map(|event| {
                let u = d.unit();
                let displacement = if u < f.reorder {
                    let by = d.between(1, u64::from(f.reorder_window));
                    Some((
                        Displacement::Reordered {
                            by: u32::try_from(by).unwrap_or(u32::MAX),
                        },
                        by as f64,
                    ))
                } else if u < f.reorder + f.late {
                    Some((
                        Displacement::Late {
                            by_ms: f.late_by_ms,
                        },
                        self.late_deliveries,
                    ))
                } else {
                    None
                };
                let mut copies = Vec::new();
                if d.chance(f.duplicate) {
                    for _ in 0..d.between(1, u64::from(f.duplicate_copies_max)) {
                        copies.push(if d.chance(f.duplicate_far_share) {
                            CopyAt::Far(d.unit())
                        } else {
                            CopyAt::Near(d.between(1, NEAR_COPY_WINDOW))
                        });
                    }
                }
                let mut faults = Vec::new();
                for reason in FaultReason::ALL {
                    let share = match reason {
                        FaultReason::Malformed => f.malformed,
                        FaultReason::BadSignature => f.bad_signature,
                        FaultReason::StaleTimestamp => f.stale_timestamp,
                        FaultReason::InvalidFields => f.invalid_fields,
                    };
                    if d.chance(share) {
                        let event_id = ids.fault(story.index, fault_number);
                        fault_number += 1;
                        let body = fault::build(reason, story, event, &event_id, d);
                        let span = 2 * FAULT_WINDOW + 1;
                        let offset = i64::try_from(d.below(span)).unwrap_or(0)
                            - i64::try_from(FAULT_WINDOW).unwrap_or(0);
                        faults.push(FaultDraw {
                            reason,
                            event_id,
                            body,
                            offset,
                        });
                    }
                }
                Extras {
                    displacement,
                    copies,
                    faults,
                }
            })
            .collect()
    }
}
