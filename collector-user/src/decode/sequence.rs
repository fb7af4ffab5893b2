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
//! | sFlow       | datagrams / samples    | 1 / its samples of a source  |
//!
//! Exporters do not all number as the protocols define. Open vSwitch's NetFlow v5 header carries
//! the number of the datagram's *last* flow (softflowd's IPFIX does the same with records), and
//! older OVS releases count v5 datagrams, not flows. Judged by the definition, every change of
//! datagram size would show as loss or a late datagram. So each tracker learns the exporter's
//! [`Numbering`] from the first datagram that tells the conventions apart and judges by it from then
//! on; until then it judges by the definition.
//!
//! Arithmetic is modulo 2³², so wrap-around is an ordinary step. An exporter that restarts
//! without an uptime to show it (IPFIX) and had sent little before starts again *behind* the
//! expected number, inside the reorder window: its first datagrams look late. When
//! [`RESTART_RUN`] late datagrams in a row follow each other in order, they are a restart after
//! all: counted as one, the loss they gave back is restored, and tracking continues from them.
//! The run's first datagrams stay counted as late: `late` is a counter, and a counter never goes
//! down (the run's last datagram is the restart, not late). A small step back is a late
//! (reordered or duplicated) datagram: it gives back loss counted for it when there is any. A large
//! jump either way, or an uptime that goes back, is an exporter restart: counted as such, never as loss.
//!
//! IPFIX counts options records among the data records (RFC 7011 §3.1: they are Data Records);
//! softflowd leaves them out, and would show one late message and lost records each time it sends
//! its options. A tracker follows whichever of the two an exporter's numbers bear out: when a
//! message right after options records (or carrying them) is out of order as counted, but in
//! order with them left out (or the other way round), it switches.
//!
//! IPFIX numbers data records per observation domain, but Open vSwitch numbers all the domains of
//! one exporter with a single counter: a domain's messages then skip exactly the records sent in
//! the exporter's other domains since its last message (OVS's own statistics, sent in domain 0
//! while flow records go to the configured `obs_domain_id`). [`DomainSequence`] learns that from
//! the first message that is out of order by its domain's count but carries exactly the number
//! following the exporter's previous message ([`ExporterCounter`]), and from then on judges that
//! exporter's domains by its one counter, so a lost message is counted once. An exporter that
//! numbers each domain on its own does not show that pattern (its domains' numbers are unrelated);
//! should one do so by coincidence, its losses are still counted, in the domain after the gap.

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
    /// Datagrams of a NetFlow space (address and engine or source id) that came from another
    /// source port than the datagram before: steadily, when exporters behind one SNAT'ing address
    /// share the space; once, when an exporter restarted from a new port. (IPFIX spaces are per
    /// port, sFlow agents name themselves: 0 for both.)
    pub source_port_changes: u64,
}

impl SequenceCounts {
    /// Add `other`'s counts to these (totals over several spaces).
    pub fn add(&mut self, other: &SequenceCounts) {
        self.lost += other.lost;
        self.late += other.late;
        self.restarts += other.restarts;
        self.source_port_changes += other.source_port_changes;
    }
}

/// Late datagrams in a row, each following the previous one in order, that make a restart.
pub const RESTART_RUN: u8 = 4;

/// How an exporter numbers its datagrams (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Numbering {
    /// Not told apart yet: judged as the protocol defines.
    #[default]
    Undecided,
    /// As the protocol defines: the units sent before this datagram.
    Standard,
    /// The units sent up to this datagram's last one (Open vSwitch NetFlow v5, softflowd IPFIX):
    /// the next datagram's number is this one's plus the *next* datagram's span.
    Inclusive,
    /// One per datagram whatever its span (older Open vSwitch NetFlow v5); loss is then counted in
    /// datagrams.
    Datagrams,
}

/// What ties the observation domains of one IPFIX exporter together (see the module docs): the
/// number its next message would carry if it numbers all its domains with one counter, and whether
/// it has been seen to.
#[derive(Clone, Copy, Debug, Default)]
pub struct ExporterCounter {
    next: Option<u32>,
    shared: bool,
}

/// The sequence space of one (exporter, domain): its tracker, and how its numbers relate to the
/// exporter's single counter when it has one.
#[derive(Clone, Copy, Debug)]
pub struct DomainSequence {
    pub tracker: SequenceTracker,
    /// Exporter number − the number the tracker judges, for an exporter with one counter.
    shift: u32,
}

impl DomainSequence {
    pub const fn new(tracker: SequenceTracker) -> Self {
        DomainSequence { tracker, shift: 0 }
    }

    /// Observe a message as [`SequenceTracker::observe_with_options`] does (`span` and the
    /// options records in it). With `exporter` (IPFIX): a message
    /// that is a gap or late by its domain's own count but carries exactly the number that follows
    /// the exporter's previous message (in any domain) shows that the exporter numbers all its
    /// domains with one counter. From then on each domain is judged by that counter: a message is
    /// in order when it follows the exporter's previous one, and a gap is counted once, in the
    /// domain of the message after it. After a message of unknown extent the exporter's next
    /// number is unknown, and the next message of any domain is not judged.
    #[inline(always)]
    pub fn observe(
        &mut self,
        exporter: Option<&mut ExporterCounter>,
        seq: u32,
        (span, options): (Option<u32>, u32),
        uptime_ms: Option<u32>,
    ) -> SequenceEvent {
        if let Some(exporter) = exporter {
            if let (Some(expected), Some(next)) = (self.tracker.expected, exporter.next) {
                // (The exporter's next number counts options records: one that leaves them out
                // is not taken for numbering its domains together.)
                if !exporter.shared
                    && seq == next
                    && seq.wrapping_sub(self.shift) != expected
                    && !self.tracker.options_uncounted
                {
                    exporter.shared = true;
                }
                if exporter.shared {
                    self.shift = next.wrapping_sub(expected);
                }
            } else if exporter.shared {
                // The exporter's previous message had an unknown extent: this one cannot be
                // judged (as after such a message in its own domain).
                self.tracker.expected = None;
            }
            exporter.next = span.map(|records| seq.wrapping_add(records));
        }
        self.tracker
            .observe_with_options(seq.wrapping_sub(self.shift), span, options, uptime_ms)
    }
}

/// Follows one sequence space.
#[derive(Clone, Copy, Debug)]
pub struct SequenceTracker {
    /// Next expected sequence number by the protocol's definition (last number + its span), if known.
    expected: Option<u32>,
    /// Sequence number of the last datagram that moved the expectation (valid while `expected` is).
    last_seq: u32,
    /// The exporter's numbering, as far as learned.
    numbering: Numbering,
    /// Late datagrams in a row that followed each other in order (0: none), the number the next
    /// one would carry, and the loss they gave back.
    late_run: u8,
    late_run_next: u32,
    late_run_given_back: u64,
    /// Exporter uptime (ms) in the last datagram, when the protocol sends one.
    last_uptime_ms: Option<u32>,
    /// Options records (IPFIX) in the last datagram that moved the expectation, and whether this
    /// exporter leaves them out of its numbering (then they are not in its spans).
    last_options: u32,
    options_uncounted: bool,
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
            last_seq: 0,
            numbering: Numbering::Undecided,
            late_run: 0,
            late_run_next: 0,
            late_run_given_back: 0,
            last_uptime_ms: None,
            last_options: 0,
            options_uncounted: false,
            reorder_window,
            max_gap,
            counts: SequenceCounts {
                lost: 0,
                late: 0,
                restarts: 0,
                source_port_changes: 0,
            },
        }
    }

    /// This tracker, judging by the protocol's numbering from the start instead of learning it:
    /// for a space whose spans vary from datagram to datagram and whose exporters all number as
    /// defined (sFlow samples), where a gap that happens to equal a change of span must not be
    /// taken for another numbering.
    pub const fn with_standard_numbering(mut self) -> Self {
        self.numbering = Numbering::Standard;
        self
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
            self.last_seq = seq;
            self.late_run = 0;
            self.last_uptime_ms = Some(uptime_ms);
        }
        in_order
    }

    /// The exporter's numbering, as learned so far.
    pub fn numbering(&self) -> Numbering {
        self.numbering
    }

    /// Bring the tracker up to date with in-order observations its owner followed without it: the
    /// state [`SequenceTracker::observe`] leaves after an in-order `observe(expected - 1, Some(1),
    /// Some(uptime_ms))`. Counts are unchanged, as in-order observations leave them.
    pub fn resume_in_order(&mut self, expected: u32, uptime_ms: u32) {
        self.expected = Some(expected);
        self.last_seq = expected.wrapping_sub(1);
        self.late_run = 0;
        self.last_uptime_ms = Some(uptime_ms);
    }

    /// Observe a datagram with sequence number `seq` advancing the space by `span` units.
    ///
    /// `span` is `None` when the datagram's extent is unknown (an IPFIX message whose data sets could
    /// not all be decoded): the next datagram is then taken as a fresh start, not judged.
    /// `uptime_ms` is the exporter's uptime when the protocol sends it (v5, v9, sFlow).
    #[inline(always)]
    pub fn observe(
        &mut self,
        seq: u32,
        span: Option<u32>,
        uptime_ms: Option<u32>,
    ) -> SequenceEvent {
        self.observe_with_options(seq, span, 0, uptime_ms)
    }

    /// [`SequenceTracker::observe`] for an IPFIX message whose `span` includes `options` options
    /// records (see the module docs on exporters that leave them out).
    #[inline]
    pub fn observe_with_options(
        &mut self,
        seq: u32,
        span: Option<u32>,
        options: u32,
        uptime_ms: Option<u32>,
    ) -> SequenceEvent {
        // The common case, as the general path below judges it: exactly the protocol's expected
        // number, with a numbering that judges by it (an undecided one may learn `Standard` here),
        // and no options records in the message (then the span is all numbered).
        if self.expected == Some(seq)
            && options == 0
            && matches!(self.numbering, Numbering::Standard | Numbering::Undecided)
            && !self.clock_went_back(uptime_ms)
        {
            if self.numbering == Numbering::Undecided {
                self.expectation(seq, seq, span);
            }
            if uptime_ms.is_some() {
                self.last_uptime_ms = uptime_ms;
            }
            self.late_run = 0;
            self.expected = span.map(|s| seq.wrapping_add(s));
            self.last_seq = seq;
            self.last_options = 0;
            return SequenceEvent::InOrder;
        }
        self.judge(seq, span, options, uptime_ms)
    }

    /// The part of a message's `span` its exporter numbers: all of it, or without its `options`
    /// records when the exporter leaves them out.
    #[inline(always)]
    fn numbered(&self, span: Option<u32>, options: u32) -> Option<u32> {
        match options != 0 && self.options_uncounted {
            true => span.map(|s| s.saturating_sub(options)),
            false => span,
        }
    }

    /// Uptime runs for ~49.7 days before wrapping; a step back of more than a minute is a reboot.
    #[inline(always)]
    fn clock_went_back(&self, uptime_ms: Option<u32>) -> bool {
        uptime_ms
            .zip(self.last_uptime_ms)
            .is_some_and(|(now, last)| last.saturating_sub(now) > 60_000)
    }

    /// [`SequenceTracker::observe_with_options`] for every case but the common one.
    #[inline(never)]
    fn judge(
        &mut self,
        seq: u32,
        full_span: Option<u32>,
        options: u32,
        uptime_ms: Option<u32>,
    ) -> SequenceEvent {
        let restarted_clock = self.clock_went_back(uptime_ms);
        if uptime_ms.is_some() {
            self.last_uptime_ms = uptime_ms;
        }
        if !restarted_clock && (options != 0 || self.last_options != 0) {
            self.recount_options(seq, full_span, options);
        }
        let span = self.numbered(full_span, options);
        let judged = match self.expected {
            Some(standard) if !restarted_clock => Some(self.expectation(seq, standard, span)),
            _ => None,
        };
        let event = match (self.expected, judged) {
            (None, _) | (_, Some(None)) => SequenceEvent::First,
            (Some(_), None) => SequenceEvent::Restart,
            (Some(_), Some(Some(expected))) => {
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
        let event = match event {
            SequenceEvent::Late => self.late(seq, span),
            other => {
                self.late_run = 0;
                other
            }
        };
        match event {
            SequenceEvent::Gap(n) => self.counts.lost += u64::from(n),
            SequenceEvent::Restart => self.counts.restarts += 1,
            SequenceEvent::Late | SequenceEvent::First | SequenceEvent::InOrder => {}
        }
        if event != SequenceEvent::Late {
            self.expected = span.map(|s| seq.wrapping_add(s));
            self.last_seq = seq;
            self.last_options = options;
        }
        event
    }

    /// Switch how options records are numbered when the other way puts `seq` in order and the
    /// current one does not (the message follows options records, or carries some). The
    /// expectation the last message left is rewritten the other way too.
    fn recount_options(&mut self, seq: u32, full_span: Option<u32>, options: u32) {
        let Some(standard) = self.expected else {
            return;
        };
        let span = self.numbered(full_span, options);
        let (other_standard, other_span) = match self.options_uncounted {
            true => (standard.wrapping_add(self.last_options), full_span),
            false => (
                standard.wrapping_sub(self.last_options),
                full_span.map(|s| s.saturating_sub(options)),
            ),
        };
        if !self.in_order(seq, standard, span) && self.in_order(seq, other_standard, other_span) {
            self.options_uncounted = !self.options_uncounted;
            self.expected = Some(other_standard);
        }
    }

    /// Whether `seq` is in order by a numbering this tracker follows or may still learn (no
    /// learning here): `standard` is the protocol's expectation, `span` this message's.
    fn in_order(&self, seq: u32, standard: u32, span: Option<u32>) -> bool {
        let inclusive = span.map(|s| self.last_seq.wrapping_add(s)) == Some(seq);
        match self.numbering {
            Numbering::Standard => seq == standard,
            Numbering::Inclusive => inclusive,
            Numbering::Datagrams => seq == self.last_seq.wrapping_add(1),
            Numbering::Undecided => seq == standard || inclusive,
        }
    }

    /// Count a late datagram, or, when it completes a run of [`RESTART_RUN`] late datagrams in
    /// order, restore the run's given-back loss and call it a restart (the run's earlier datagrams
    /// stay counted late: counters never go down).
    fn late(&mut self, seq: u32, span: Option<u32>) -> SequenceEvent {
        let before = self.counts.lost;
        self.counts.lost = before.saturating_sub(u64::from(span.unwrap_or(1)));
        let given_back = before - self.counts.lost;
        let Some(span) = span else {
            self.counts.late += 1;
            self.late_run = 0;
            return SequenceEvent::Late;
        };
        if self.late_run > 0 && self.late_run_next == seq {
            self.late_run += 1;
            self.late_run_given_back += given_back;
        } else {
            self.late_run = 1;
            self.late_run_given_back = given_back;
        }
        self.late_run_next = seq.wrapping_add(span);
        if self.late_run < RESTART_RUN {
            self.counts.late += 1;
            return SequenceEvent::Late;
        }
        self.counts.lost += self.late_run_given_back;
        self.late_run = 0;
        SequenceEvent::Restart
    }

    /// The number `seq` is judged against, by the numbering learned so far; `standard` is the
    /// protocol's expectation. Learns the numbering when this datagram is the first to tell the
    /// conventions apart. `None`: not judged (an inclusive numbering needs this datagram's span).
    fn expectation(&mut self, seq: u32, standard: u32, span: Option<u32>) -> Option<u32> {
        let inclusive = span.map(|s| self.last_seq.wrapping_add(s));
        let per_datagram = self.last_seq.wrapping_add(1);
        match self.numbering {
            Numbering::Standard => Some(standard),
            Numbering::Inclusive => inclusive,
            Numbering::Datagrams => Some(per_datagram),
            Numbering::Undecided => {
                if seq == standard {
                    if inclusive != Some(seq) && per_datagram != seq {
                        self.numbering = Numbering::Standard;
                    }
                } else if inclusive == Some(seq) && per_datagram != seq {
                    self.numbering = Numbering::Inclusive;
                } else if per_datagram == seq && inclusive != Some(seq) {
                    self.numbering = Numbering::Datagrams;
                } else if per_datagram == seq {
                    // Both other conventions agree on it (span 1): in order, still undecided.
                    return Some(seq);
                } else {
                    return Some(standard);
                }
                Some(seq)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker() -> SequenceTracker {
        SequenceTracker::new(1000, 1_000_000)
    }

    /// Observe `(seq, span)` pairs; the events after the first.
    fn feed(t: &mut SequenceTracker, datagrams: &[(u32, u32)]) -> Vec<SequenceEvent> {
        let events: Vec<_> = datagrams
            .iter()
            .map(|&(seq, span)| t.observe(seq, Some(span), None))
            .collect();
        events[1..].to_vec()
    }

    #[test]
    fn the_in_order_shortcut_judges_as_the_general_path() {
        // Streams of every kind (in order, gaps, late, duplicates, restarts, uptime going back,
        // unknown spans, each numbering convention, options records counted or not):
        // `observe_with_options` (with its shortcut) and `judge` (the general path alone) give
        // the same events and leave the same state.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let mut shortcuts = 0;
        for stream in 0..200 {
            let (mut fast, mut general) = (tracker(), tracker());
            let (mut seq, mut uptime) = (next(1 << 32) as u32, 1_000_000u32);
            let with_uptime = stream % 2 == 0;
            for _ in 0..200 {
                let span = match next(10) {
                    0 => None,
                    1..=4 => Some(1),
                    _ => Some(1 + next(30) as u32),
                };
                let step = match next(20) {
                    0 => seq.wrapping_sub(next(50) as u32),
                    1 => seq.wrapping_add(next(50) as u32),
                    2 => next(1 << 32) as u32,
                    _ => seq,
                };
                uptime = match next(30) {
                    0 => uptime.wrapping_sub(120_000),
                    1 => uptime.wrapping_sub(10),
                    _ => uptime.wrapping_add(1_000),
                };
                let uptime_ms = with_uptime.then_some(uptime);
                let options = match (span, next(4)) {
                    (Some(span), 0) => next(u64::from(span) + 1) as u32,
                    _ => 0,
                };
                if fast.expected == Some(step) {
                    shortcuts += 1;
                }
                assert_eq!(
                    fast.observe_with_options(step, span, options, uptime_ms),
                    general.judge(step, span, options, uptime_ms),
                    "stream {stream}"
                );
                assert_eq!(
                    format!("{fast:?}"),
                    format!("{general:?}"),
                    "stream {stream}"
                );
                // Next number by the convention of the stream: standard (options records counted
                // or not), inclusive or per datagram.
                let numbered = span.unwrap_or(1) - if stream % 4 == 0 { options } else { 0 };
                seq = match stream % 3 {
                    0 => step.wrapping_add(numbered),
                    1 => step.wrapping_add(1 + next(3) as u32),
                    _ => step.wrapping_add(1),
                };
            }
        }
        assert!(
            shortcuts > 10_000,
            "the shortcut was taken {shortcuts} times"
        );
    }

    #[test]
    fn a_restart_without_uptime_on_a_small_stream_is_a_restart_after_a_run() {
        // IPFIX counts data records; 100 messages of 6, then the exporter restarts from 0.
        let mut t = tracker();
        for i in 0..100 {
            t.observe(i * 6, Some(6), None);
        }
        // A gap before the restart: 6 records lost, and they stay lost.
        assert_eq!(t.observe(606, Some(6), None), SequenceEvent::Gap(6));
        let events: Vec<_> = (0..4).map(|i| t.observe(i * 6, Some(6), None)).collect();
        assert_eq!(
            events,
            [
                SequenceEvent::Late,
                SequenceEvent::Late,
                SequenceEvent::Late,
                SequenceEvent::Restart
            ]
        );
        // The run's first three were counted late when they came, and stay so (a counter).
        assert_eq!(
            t.counts,
            SequenceCounts {
                lost: 6,
                late: 3,
                restarts: 1,
                source_port_changes: 0,
            }
        );
        assert_eq!(t.observe(24, Some(6), None), SequenceEvent::InOrder);
    }

    #[test]
    fn options_records_are_numbered_as_the_exporter_numbers_them() {
        // (sequence number, records, of which options records)
        let observe = |t: &mut SequenceTracker, messages: &[(u32, u32, u32)]| -> Vec<_> {
            messages
                .iter()
                .map(|&(seq, span, options)| t.observe_with_options(seq, Some(span), options, None))
                .collect()
        };
        use SequenceEvent::*;
        // Standard numbering that leaves options records out: the message after them is in order.
        let mut t = tracker();
        let events = observe(&mut t, &[(0, 10, 1), (9, 10, 0), (19, 5, 2), (22, 4, 0)]);
        assert_eq!(events, [First, InOrder, InOrder, InOrder]);
        // A gap after options records is still loss, counted once.
        assert_eq!(observe(&mut t, &[(30, 1, 0)]), [Gap(4)]);
        assert_eq!(t.counts.lost, 4);
        // The same exporter counting them after all: it follows back, without loss or late.
        let mut t = tracker();
        let events = observe(&mut t, &[(0, 10, 1), (9, 10, 1), (19, 5, 0), (24, 5, 0)]);
        assert_eq!(events, [First, InOrder, InOrder, InOrder]);
        assert_eq!(t.counts, SequenceCounts::default());
    }

    #[test]
    fn late_datagrams_not_in_order_among_themselves_stay_late() {
        let mut t = tracker();
        for i in 0..10 {
            t.observe(i * 10, Some(10), None);
        }
        // Four old datagrams arriving again, but not one after the other: reordering, not a restart.
        for seq in [30, 10, 50, 20] {
            assert_eq!(t.observe(seq, Some(10), None), SequenceEvent::Late);
        }
        assert_eq!(t.counts.late, 4);
        assert_eq!(t.counts.restarts, 0);
        // An in-order datagram ends any run.
        assert_eq!(t.observe(100, Some(10), None), SequenceEvent::InOrder);
        for seq in [0, 10, 20] {
            assert_eq!(t.observe(seq, Some(10), None), SequenceEvent::Late);
        }
        assert_eq!(t.observe(110, Some(10), None), SequenceEvent::InOrder);
        assert_eq!(t.observe(30, Some(10), None), SequenceEvent::Late);
        assert_eq!(t.counts.restarts, 0);
    }

    #[test]
    fn inclusive_numbering_is_learned_and_judged_by() {
        // Open vSwitch v5: the header carries the index of the datagram's last flow.
        let mut t = tracker();
        let events = feed(&mut t, &[(29, 30), (59, 30), (64, 5), (94, 30), (106, 12)]);
        assert!(
            events.iter().all(|e| *e == SequenceEvent::InOrder),
            "{events:?}"
        );
        assert_eq!(t.numbering(), Numbering::Inclusive);
        assert_eq!(t.counts, SequenceCounts::default());
        // A lost datagram of 30 flows is still loss, in flows.
        assert_eq!(t.observe(156, Some(20), None), SequenceEvent::Gap(30));
        assert_eq!(t.counts.lost, 30);
    }

    #[test]
    fn per_datagram_numbering_is_learned_and_loss_counts_datagrams() {
        // Older Open vSwitch v5: one per datagram, whatever its flow count.
        let mut t = tracker();
        let events = feed(&mut t, &[(0, 30), (1, 30), (2, 10), (3, 30)]);
        assert!(
            events.iter().all(|e| *e == SequenceEvent::InOrder),
            "{events:?}"
        );
        assert_eq!(t.numbering(), Numbering::Datagrams);
        assert_eq!(t.observe(5, Some(30), None), SequenceEvent::Gap(1));
        assert_eq!(t.counts.lost, 1);
    }

    #[test]
    fn standard_numbering_once_learned_is_not_talked_out_of() {
        let mut t = tracker();
        let events = feed(&mut t, &[(0, 30), (30, 5)]);
        assert_eq!(events, [SequenceEvent::InOrder]);
        assert_eq!(t.numbering(), Numbering::Standard);
        // Expected 35; 45 with span 10 is what an inclusive exporter would send, but this one is
        // standard: 10 flows lost.
        assert_eq!(t.observe(45, Some(10), None), SequenceEvent::Gap(10));
        assert_eq!(t.numbering(), Numbering::Standard);
    }

    #[test]
    fn equal_spans_leave_the_numbering_undecided_and_judge_by_the_definition() {
        let mut t = tracker();
        let events = feed(&mut t, &[(0, 30), (30, 30), (60, 30)]);
        assert!(
            events.iter().all(|e| *e == SequenceEvent::InOrder),
            "{events:?}"
        );
        assert_eq!(t.numbering(), Numbering::Undecided);
        assert_eq!(t.observe(120, Some(30), None), SequenceEvent::Gap(30));
        assert_eq!(t.numbering(), Numbering::Undecided);
    }

    #[test]
    fn inclusive_numbering_without_a_span_is_not_judged() {
        let mut t = tracker();
        feed(&mut t, &[(29, 30), (34, 5)]);
        assert_eq!(t.numbering(), Numbering::Inclusive);
        assert_eq!(t.observe(40, None, None), SequenceEvent::First);
        assert_eq!(t.observe(99, Some(3), None), SequenceEvent::First);
        assert_eq!(t.observe(102, Some(3), None), SequenceEvent::InOrder);
        assert_eq!(t.counts, SequenceCounts::default());
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

#[cfg(test)]
mod domain_tests {
    use super::*;

    /// Domains 0 and 5 of one exporter: (domain, sequence number, records) per message.
    fn run(messages: &[(usize, u32, u32)]) -> [SequenceCounts; 2] {
        let mut exporter = ExporterCounter::default();
        let mut domains = [DomainSequence::new(SequenceTracker::new(3_000, 10_000_000)); 2];
        for &(d, seq, n) in messages {
            domains[d].observe(Some(&mut exporter), seq, (Some(n), 0), None);
        }
        domains.map(|d| d.tracker.counts)
    }

    const NONE: SequenceCounts = SequenceCounts {
        lost: 0,
        late: 0,
        restarts: 0,
        source_port_changes: 0,
    };

    #[test]
    fn one_counter_over_all_domains_is_not_loss() {
        // Open vSwitch: flow records in domain 5 (index 1), one statistics record in domain 0
        // now and then, all numbered by one counter.
        let shared = [
            (1, 0, 10),
            (1, 10, 10),
            (0, 20, 1),
            (1, 21, 10),
            (1, 31, 5),
            (0, 36, 1),
        ];
        assert_eq!(run(&shared), [NONE; 2]);
        // A lost flow message still counts as loss in its domain, and only there.
        let lost = [
            (1, 0, 10),
            (0, 10, 1),
            (1, 11, 10),
            (1, 31, 10),
            (0, 41, 1),
            (1, 42, 3),
        ];
        let [stats, flows] = run(&lost);
        assert_eq!((stats.lost, flows.lost), (0, 10));
    }

    #[test]
    fn one_counter_per_domain_is_judged_per_domain() {
        // Standard IPFIX numbering, interleaved: never shifted.
        let own = [
            (1, 0, 10),
            (0, 0, 1),
            (1, 10, 10),
            (0, 1, 1),
            (1, 20, 4),
            (0, 2, 1),
        ];
        assert_eq!(run(&own), [NONE; 2]);
        // A gap is loss, even when it happens to equal the other domain's records.
        let gap = [(1, 0, 10), (0, 0, 1), (1, 11, 10)];
        assert_eq!(run(&gap)[1].lost, 1);
    }

    #[test]
    fn unknown_extent_is_judged_after_it() {
        // A message of unknown extent (an undecodable set) in domain 0: the exporter's next number
        // is unknown, so domain 5's next message is not judged (no loss, no late); once a
        // message's extent is known again, the shared counter explains the steps again.
        let mut exporter = ExporterCounter::default();
        let mut flows = DomainSequence::new(SequenceTracker::new(3_000, 10_000_000));
        let mut stats = DomainSequence::new(SequenceTracker::new(3_000, 10_000_000));
        flows.observe(Some(&mut exporter), 0, (Some(10), 0), None);
        stats.observe(Some(&mut exporter), 10, (Some(1), 0), None);
        flows.observe(Some(&mut exporter), 11, (Some(10), 0), None);
        assert!(exporter.shared);
        stats.observe(Some(&mut exporter), 21, (None, 0), None);
        flows.observe(Some(&mut exporter), 22, (Some(10), 0), None);
        stats.observe(Some(&mut exporter), 32, (Some(1), 0), None);
        flows.observe(Some(&mut exporter), 33, (Some(10), 0), None);
        let counts = [flows, stats].map(|d| d.tracker.counts);
        assert_eq!(counts.map(|c| c.lost), [0, 0]);
    }
}
