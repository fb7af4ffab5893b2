//! Export sequence numbers → loss, reorder and restart counts, per sequence space.
//!
//! One [`SequenceTracker`] follows one sequence space: (exporter, domain) for NetFlow/IPFIX,
//! agent + sub-agent and each sample source for sFlow. The caller says how far each datagram
//! advances the sequence (its `span`), so one tracker serves every protocol's semantics:
//!
//! | protocol    | sequence counts        | span of one datagram         |
//! |-------------|------------------------|------------------------------|
//! | NetFlow v5  | flows                  | records in the datagram      |
//! | NetFlow v9  | export packets         | 1                            |
//! | IPFIX       | data records (domain)  | data records in the message  |
//! | sFlow       | datagrams / samples    | 1                            |
//!
//! Arithmetic is modulo 2³², so wrap-around is an ordinary step. A small step back is a late
//! (reordered or duplicated) datagram: it gives back loss counted for it when there is any. A large
//! jump either way, or an uptime that goes back, is an exporter restart: counted as such, never as loss.

/// What one observation meant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SequenceEvent {
    /// First datagram of this sequence space (or first after the span was unknown).
    First,
    /// Exactly the expected sequence number.
    InOrder,
    /// `n` units were skipped: lost (unless they arrive late).
    Gap(u32),
    /// Behind the expected number: reordered or duplicated; expectation unchanged.
    Late,
    /// The exporter restarted (uptime went back or the sequence jumped far): tracking restarts here.
    Restart,
}

/// Running totals for one sequence space.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SequenceCounts {
    /// Units (records, packets, samples — as the protocol counts) missing, net of late arrivals.
    pub lost: u64,
    /// Datagrams that arrived behind the expected sequence number.
    pub late: u64,
    /// Exporter restarts detected.
    pub restarts: u64,
}

/// Follows one sequence space.
#[derive(Clone, Copy, Debug)]
pub struct SequenceTracker {
    /// Next expected sequence number, if known.
    expected: Option<u32>,
    /// Exporter uptime (ms) in the last datagram, when the protocol sends one.
    last_uptime_ms: Option<u32>,
    /// Steps back of at most this many units are "late"; further back is a restart.
    reorder_window: u32,
    /// Steps forward of more than this many units are a restart, not loss.
    max_gap: u32,
    pub counts: SequenceCounts,
}

impl SequenceTracker {
    /// A tracker that calls a step back of up to `reorder_window` units late, and a jump forward of
    /// more than `max_gap` units a restart.
    pub const fn new(reorder_window: u32, max_gap: u32) -> Self {
        SequenceTracker {
            expected: None,
            last_uptime_ms: None,
            reorder_window,
            max_gap,
            counts: SequenceCounts {
                lost: 0,
                late: 0,
                restarts: 0,
            },
        }
    }

    /// The common case of [`SequenceTracker::observe`]`(seq, Some(1), Some(uptime_ms))` alone:
    /// when `seq` is exactly the expected number and the uptime did not go back, records it (same
    /// state as `observe`, event `InOrder`) and returns `true`; otherwise changes nothing and
    /// returns `false`, for the caller to call `observe`.
    #[inline(always)]
    pub fn advance_in_order(&mut self, seq: u32, uptime_ms: u32) -> bool {
        let in_order =
            self.expected == Some(seq) && self.last_uptime_ms.is_some_and(|last| uptime_ms >= last);
        if in_order {
            self.expected = Some(seq.wrapping_add(1));
            self.last_uptime_ms = Some(uptime_ms);
        }
        in_order
    }

    /// Bring the tracker up to date with in-order observations its owner followed without it: the
    /// state [`SequenceTracker::observe`] leaves after an in-order `observe(expected - 1, Some(1),
    /// Some(uptime_ms))`. Counts are unchanged, as in-order observations leave them.
    pub fn resume_in_order(&mut self, expected: u32, uptime_ms: u32) {
        self.expected = Some(expected);
        self.last_uptime_ms = Some(uptime_ms);
    }

    /// Observe a datagram with sequence number `seq` advancing the space by `span` units.
    ///
    /// `span` is `None` when the datagram's extent is unknown (an IPFIX message whose data sets could
    /// not all be decoded): the next datagram is then taken as a fresh start, not judged.
    /// `uptime_ms` is the exporter's uptime when the protocol sends it (v5, v9, sFlow).
    pub fn observe(
        &mut self,
        seq: u32,
        span: Option<u32>,
        uptime_ms: Option<u32>,
    ) -> SequenceEvent {
        let restarted_clock = match (self.last_uptime_ms, uptime_ms) {
            // Uptime runs for ~49.7 days before wrapping; a step back of more than a minute is a reboot.
            (Some(last), Some(now)) => now < last && last - now > 60_000,
            _ => false,
        };
        if uptime_ms.is_some() {
            self.last_uptime_ms = uptime_ms;
        }
        let event = match self.expected {
            None => SequenceEvent::First,
            Some(_) if restarted_clock => SequenceEvent::Restart,
            Some(expected) => {
                let ahead = seq.wrapping_sub(expected);
                let behind = expected.wrapping_sub(seq);
                if ahead == 0 {
                    SequenceEvent::InOrder
                } else if ahead <= self.max_gap {
                    SequenceEvent::Gap(ahead)
                } else if behind <= self.reorder_window {
                    SequenceEvent::Late
                } else {
                    SequenceEvent::Restart
                }
            }
        };
        match event {
            SequenceEvent::Gap(n) => self.counts.lost += u64::from(n),
            SequenceEvent::Late => {
                self.counts.late += 1;
                self.counts.lost = self
                    .counts
                    .lost
                    .saturating_sub(u64::from(span.unwrap_or(1)));
            }
            SequenceEvent::Restart => self.counts.restarts += 1,
            SequenceEvent::First | SequenceEvent::InOrder => {}
        }
        if event != SequenceEvent::Late {
            self.expected = span.map(|s| seq.wrapping_add(s));
        }
        event
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker() -> SequenceTracker {
        SequenceTracker::new(1000, 1_000_000)
    }

    #[test]
    fn in_order_stream_counts_nothing() {
        let mut t = tracker();
        assert_eq!(t.observe(100, Some(30), None), SequenceEvent::First);
        assert_eq!(t.observe(130, Some(30), None), SequenceEvent::InOrder);
        assert_eq!(t.observe(160, Some(5), None), SequenceEvent::InOrder);
        assert_eq!(t.counts, SequenceCounts::default());
    }

    #[test]
    fn advance_in_order_is_observe_when_in_order_and_nothing_otherwise() {
        let states = [None, Some((10u32, 5_000u32)), Some((u32::MAX, 100_000))];
        for state in states {
            let mut t = tracker();
            if let Some((seq, uptime)) = state {
                t.observe(seq, Some(1), Some(uptime));
            }
            for seq in [9u32, 10, 11, 12, 0, 1] {
                for uptime in [0u32, 4_999, 5_000, 5_001, 99_999, 100_000, 200_000] {
                    let (mut fast, mut full) = (t, t);
                    let event = full.observe(seq, Some(1), Some(uptime));
                    let next = state.is_some_and(|(s, u)| seq == s.wrapping_add(1) && uptime >= u);
                    let taken = fast.advance_in_order(seq, uptime);
                    assert_eq!(taken, next, "{state:?} {seq} {uptime}");
                    if taken {
                        assert_eq!(event, SequenceEvent::InOrder, "{state:?} {seq} {uptime}");
                        assert_eq!(format!("{fast:?}"), format!("{full:?}"));
                    } else {
                        assert_eq!(format!("{fast:?}"), format!("{t:?}"));
                        let went_back = state.is_some_and(|(_, last)| uptime < last);
                        assert!(event != SequenceEvent::InOrder || went_back);
                    }
                }
            }
        }
    }

    #[test]
    fn resume_in_order_is_the_state_after_in_order_observations() {
        let (mut followed, mut resumed) = (tracker(), tracker());
        for t in [&mut followed, &mut resumed] {
            t.observe(5, Some(1), Some(1_000));
        }
        for (seq, uptime) in [(6, 1_000), (7, 2_000), (8, 2_500)] {
            assert_eq!(
                followed.observe(seq, Some(1), Some(uptime)),
                SequenceEvent::InOrder
            );
        }
        resumed.resume_in_order(9, 2_500);
        assert_eq!(format!("{followed:?}"), format!("{resumed:?}"));
        assert_eq!(
            resumed.observe(9, Some(1), Some(2_400)),
            SequenceEvent::InOrder
        );
    }

    #[test]
    fn gap_is_counted_in_units() {
        let mut t = tracker();
        t.observe(0, Some(30), None);
        assert_eq!(t.observe(90, Some(30), None), SequenceEvent::Gap(60));
        assert_eq!(t.counts.lost, 60);
    }

    #[test]
    fn wrap_around_is_in_order() {
        let mut t = tracker();
        t.observe(u32::MAX - 9, Some(10), None);
        assert_eq!(t.observe(0, Some(1), None), SequenceEvent::InOrder);
        assert_eq!(t.observe(3, Some(1), None), SequenceEvent::Gap(2));
        assert_eq!(t.counts.lost, 2);
    }

    #[test]
    fn late_datagram_returns_its_loss() {
        let mut t = tracker();
        t.observe(1, Some(1), None);
        assert_eq!(t.observe(3, Some(1), None), SequenceEvent::Gap(1));
        assert_eq!(t.observe(2, Some(1), None), SequenceEvent::Late);
        assert_eq!(t.counts.lost, 0);
        assert_eq!(t.counts.late, 1);
        assert_eq!(t.observe(4, Some(1), None), SequenceEvent::InOrder);
    }

    #[test]
    fn duplicate_without_loss_is_late_and_loss_stays_zero() {
        let mut t = tracker();
        t.observe(1, Some(1), None);
        t.observe(2, Some(1), None);
        assert_eq!(t.observe(2, Some(1), None), SequenceEvent::Late);
        assert_eq!(t.counts.lost, 0);
    }

    #[test]
    fn sequence_reset_is_restart_not_loss() {
        let mut t = tracker();
        t.observe(5_000_000, Some(1), None);
        assert_eq!(t.observe(0, Some(1), None), SequenceEvent::Restart);
        assert_eq!(t.counts.lost, 0);
        assert_eq!(t.counts.restarts, 1);
        assert_eq!(t.observe(1, Some(1), None), SequenceEvent::InOrder);
    }

    #[test]
    fn uptime_going_back_is_restart_even_with_plausible_sequence() {
        let mut t = tracker();
        t.observe(10, Some(1), Some(10_000_000));
        assert_eq!(t.observe(12, Some(1), Some(1_000)), SequenceEvent::Restart);
        assert_eq!(t.counts.lost, 0);
        assert_eq!(t.counts.restarts, 1);
    }

    #[test]
    fn unknown_span_resynchronises() {
        let mut t = tracker();
        t.observe(10, None, None);
        assert_eq!(t.observe(500, Some(1), None), SequenceEvent::First);
        assert_eq!(t.counts, SequenceCounts::default());
    }
}
