//! Drop reports: the engine's first timer.
//!
//! Counting every drop is cheap; logging every drop is not (a flood of bad frames would become a
//! flood of log lines). So the engine aggregates: the first drop after a quiet period arms a
//! timer `interval` later ([`Engine::poll_timeout`](crate::Engine::poll_timeout)) and keeps a
//! copy of the first `SAMPLE_LEN` bytes of that dropped input; when the shell calls
//! [`Engine::handle_timeout`](crate::Engine::handle_timeout) at or after the deadline, the engine
//! queues one [`DropReport`] (drops per reason over the interval, and the sample, dissected) for
//! [`Engine::poll_event`](crate::Engine::poll_event). The shell logs it. Flow-log aggregation
//! (issue 10) follows the same pattern.
//!
//! Nothing is allocated per drop: the sample buffer is allocated once with the engine.

use std::time::{Duration, Instant};

use softvpc_wire::{dissect, ChecksumCapabilities, VXLAN_HEADER_LEN};

use crate::counters::Counters;
use crate::layers::Direction;
use crate::{DropReason, PortId};

/// Bytes of the first dropped input kept for the report.
pub const SAMPLE_LEN: usize = 256;

/// Drops over one interval, reported once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropReport {
    /// When the first drop of the interval happened.
    pub since: Instant,
    /// When the report was made (the `now` given to `handle_timeout`).
    pub until: Instant,
    /// Drops per reason in the interval (reasons with none left out), in [`DropReason::ALL`]
    /// order.
    pub drops: Vec<(DropReason, u64)>,
    /// The first drop of the interval.
    pub sample: DropSample,
}

/// The first dropped input of an interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropSample {
    /// Why it was dropped.
    pub reason: DropReason,
    /// Whether it came from a port (egress) or the underlay (ingress).
    pub direction: Direction,
    /// Egress: the port it came from.
    pub port: Option<PortId>,
    /// Its length.
    pub len: usize,
    /// Its dissection (of the first [`SAMPLE_LEN`] bytes; on ingress, of the inner frame).
    pub packet: String,
}

/// Something the engine tells the shell, from [`Engine::poll_event`](crate::Engine::poll_event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Drops of the last interval.
    Drops(DropReport),
}

/// The drop aggregation state.
#[derive(Debug)]
pub(crate) struct DropReporter {
    interval: Option<Duration>,
    /// Set while an interval is open: (its first drop, its deadline).
    open: Option<(Instant, Instant)>,
    /// The drop counters when the interval opened.
    baseline: [u64; DropReason::ALL.len()],
    sample: Box<[u8; SAMPLE_LEN]>,
    sample_len: usize,
    sample_meta: Option<(DropReason, Direction, Option<PortId>, usize)>,
}

impl DropReporter {
    pub(crate) fn new(interval: Option<Duration>) -> Self {
        DropReporter {
            interval,
            open: None,
            baseline: [0; DropReason::ALL.len()],
            sample: Box::new([0; SAMPLE_LEN]),
            sample_len: 0,
            sample_meta: None,
        }
    }

    /// The deadline of the open interval.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.open.map(|(_, deadline)| deadline)
    }

    /// A drop happened at `now`; `counters` already include it.
    #[inline]
    pub(crate) fn on_drop(
        &mut self,
        now: Instant,
        counters: &Counters,
        reason: DropReason,
        direction: Direction,
        port: Option<PortId>,
        input: &[u8],
    ) {
        let Some(interval) = self.interval else {
            return;
        };
        if self.open.is_some() {
            return;
        }
        self.open = Some((now, now + interval));
        for (i, r) in DropReason::ALL.iter().enumerate() {
            self.baseline[i] = counters.drops(*r);
        }
        // The baseline excludes this drop, so the report counts it.
        self.baseline[reason as usize] = self.baseline[reason as usize].saturating_sub(1);
        let n = input.len().min(SAMPLE_LEN);
        self.sample[..n].copy_from_slice(&input[..n]);
        self.sample_len = n;
        self.sample_meta = Some((reason, direction, port, input.len()));
    }

    /// Closes the interval if its deadline is at or before `now`, returning its report.
    pub(crate) fn on_timeout(&mut self, now: Instant, counters: &Counters) -> Option<DropReport> {
        let (since, deadline) = self.open?;
        if now < deadline {
            return None;
        }
        self.open = None;
        let drops = DropReason::ALL
            .iter()
            .enumerate()
            .map(|(i, r)| (*r, counters.drops(*r).saturating_sub(self.baseline[i])))
            .filter(|(_, n)| *n > 0)
            .collect();
        let (reason, direction, port, len) = self.sample_meta.take()?;
        let bytes = &self.sample[..self.sample_len];
        let caps = ChecksumCapabilities::default();
        let packet = match direction {
            Direction::Egress => dissect(bytes, &caps).to_string(),
            Direction::Ingress => match bytes.get(VXLAN_HEADER_LEN..) {
                Some(inner) => format!(
                    "VXLAN {:02x?} | {}",
                    &bytes[..VXLAN_HEADER_LEN],
                    dissect(inner, &caps)
                ),
                None => format!("{} bytes, shorter than a VXLAN header", bytes.len()),
            },
        };
        Some(DropReport {
            since,
            until: now,
            drops,
            sample: DropSample {
                reason,
                direction,
                port,
                len,
                packet,
            },
        })
    }
}
