//! Exporter time bases → absolute nanoseconds since the Unix epoch, and back (for the encoders).
//!
//! Owns the arithmetic of every timestamp form NetFlow v5/v9 and IPFIX use: seconds, milliseconds,
//! NTP-format micro/nanoseconds (RFC 7011 §6.1.9/§6.1.10), delta microseconds before the export time
//! (IEs 158/159) and milliseconds of exporter uptime (v5, v9 and IEs 21/22). Pure functions: no state,
//! no panics (saturating arithmetic), and a result of 0 means "unknown / before the epoch".

/// Seconds between the NTP era-0 epoch (1900-01-01) and the Unix epoch.
pub const NTP_UNIX_OFFSET_SECS: u64 = 2_208_988_800;

const NS_PER_SEC: u64 = 1_000_000_000;

/// The time bases a template field can use. Stored in a compiled template, one per start/end slot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(u8)]
pub enum TimeKind {
    /// The template carries no such timestamp.
    #[default]
    Absent,
    /// dateTimeSeconds (150/151): seconds since the Unix epoch.
    Seconds,
    /// dateTimeMilliseconds (152/153): milliseconds since the Unix epoch.
    Millis,
    /// dateTimeMicroseconds (154/155): NTP format, rounded to the microsecond.
    NtpMicros,
    /// dateTimeNanoseconds (156/157): NTP format.
    NtpNanos,
    /// flowStart/EndDeltaMicroseconds (158/159): microseconds before the message's export time.
    DeltaMicros,
    /// flowStart/EndSysUpTime (21/22): exporter uptime in ms; v9 relates it to the header's sysUptime,
    /// IPFIX to systemInitTimeMilliseconds (160).
    Uptime,
}

/// Times an export message gives to relate its records' timestamps to the wall clock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExportClock {
    /// Export time, ns since the Unix epoch (header unix secs [+ nsecs for v5], or IPFIX export time).
    pub export_ns: u64,
    /// Exporter uptime (ms) at export time, when the header carries it (v5, v9).
    pub uptime_ms: Option<u32>,
}

impl ExportClock {
    /// Convert a raw timestamp of `kind` into ns since the Unix epoch. `init_ms` is the record's
    /// systemInitTimeMilliseconds (160) when it has one (0 otherwise).
    ///
    /// IPFIX's flowStart/EndSysUpTime (21/22) are unsigned32 milliseconds since `init_ms`: they
    /// wrap after ~49.7 days of uptime, and an exporter whose init time is a little after a flow's
    /// start (softflowd) sends a "negative" one, just below 2³². Both are read as v9's are: the
    /// exporter's uptime at export is `export − init` (mod 2³² ms), and the time is the one within
    /// ±2³¹ ms of the export time.
    #[inline(always)]
    pub fn absolute_ns(&self, kind: TimeKind, raw: u64, init_ms: u64) -> u64 {
        match kind {
            TimeKind::Absent => 0,
            TimeKind::Seconds => raw.saturating_mul(NS_PER_SEC),
            TimeKind::Millis => raw.saturating_mul(1_000_000),
            TimeKind::NtpMicros => ntp_micros_to_ns(raw),
            TimeKind::NtpNanos => ntp_to_ns(raw),
            TimeKind::DeltaMicros => self.export_ns.saturating_sub(raw.saturating_mul(1000)),
            TimeKind::Uptime => match self.uptime_ms {
                Some(uptime) => uptime_to_ns(self.export_ns, uptime, raw as u32),
                None if init_ms != 0 => {
                    let uptime_at_export = (self.export_ns / 1_000_000).wrapping_sub(init_ms);
                    uptime_to_ns(self.export_ns, uptime_at_export as u32, raw as u32)
                }
                None => 0,
            },
        }
    }

    /// The raw value of `kind` that [`ExportClock::absolute_ns`] turns back into `ns` (encoders).
    pub fn raw_for(&self, kind: TimeKind, ns: u64, init_ms: u64) -> u64 {
        match kind {
            TimeKind::Absent => 0,
            TimeKind::Seconds => ns / NS_PER_SEC,
            TimeKind::Millis => ns / 1_000_000,
            TimeKind::NtpMicros => ns_to_ntp_micros(ns),
            TimeKind::NtpNanos => ns_to_ntp(ns),
            TimeKind::DeltaMicros => self.export_ns.saturating_sub(ns) / 1000,
            TimeKind::Uptime => match self.uptime_ms {
                Some(uptime) => {
                    let ago_ms = self.export_ns.saturating_sub(ns) / 1_000_000;
                    u64::from(uptime.wrapping_sub(ago_ms as u32))
                }
                None => u64::from((ns / 1_000_000).wrapping_sub(init_ms) as u32),
            },
        }
    }
}

/// Uptime-relative ms → absolute ns: `t_ms` happened `uptime_ms - t_ms` ms before `export_ns`.
///
/// The difference is taken as a signed 32-bit value, so uptime wrap-around (every ~49.7 days) is
/// an ordinary step, and a flow stamped slightly after the header (exporter clock skew) lands after
/// the export time instead of 49 days before it. Times before the epoch are 0.
#[inline(always)]
pub fn uptime_to_ns(export_ns: u64, uptime_ms: u32, t_ms: u32) -> u64 {
    UptimeBase::new(export_ns, uptime_ms).ns(t_ms)
}

/// [`uptime_to_ns`] for many timestamps of one export message: what depends on the message only
/// (export time, uptime) is folded into two constants, leaving an addition, a multiplication and
/// an addition per timestamp.
///
/// With `d = (uptime - t) as i32` (the signed difference, in ms before the export), `y = 2^31 - 1 - d`
/// lies in `0..2^32` and is the wrapping `u32` sum `t + offset_ms` (`offset_ms = 2^31 - 1 - uptime`),
/// and `export - d ms` is `low_ns + y ms` (`low_ns = export - (2^31 - 1) ms`): no sign extension,
/// and the product of two unsigned 32-bit numbers (SSE2 `pmuludq` does two at once).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UptimeBase {
    /// `2^31 - 1 - uptime_ms`, wrapping.
    pub offset_ms: u32,
    /// Export time − (2^31 − 1) ms, in ns: the time of the earliest timestamp a message can carry.
    pub low_ns: i64,
}

impl UptimeBase {
    const HALF_MS: u32 = (1 << 31) - 1;

    #[inline(always)]
    pub fn new(export_ns: u64, uptime_ms: u32) -> UptimeBase {
        // Export times come from 32-bit seconds (≤ 4.3e18 ns); larger ones are capped so that every
        // result (≤ 2^62 + 2.2e15) fits an i64.
        UptimeBase {
            offset_ms: Self::HALF_MS.wrapping_sub(uptime_ms),
            low_ns: export_ns.min(1 << 62) as i64 - i64::from(Self::HALF_MS) * 1_000_000,
        }
    }

    /// The absolute time of `t_ms` before clamping to the epoch (negative before it).
    #[inline(always)]
    pub fn signed_ns(&self, t_ms: u32) -> i64 {
        self.low_ns + i64::from(t_ms.wrapping_add(self.offset_ms)) * 1_000_000
    }

    /// The absolute time of `t_ms`, ns since the epoch; 0 for times before it.
    #[inline(always)]
    pub fn ns(&self, t_ms: u32) -> u64 {
        self.signed_ns(t_ms).max(0) as u64
    }

    /// True when no timestamp can land before the epoch (any export time after 1970-01-25):
    /// then [`UptimeBase::signed_ns`] is never negative and equals [`UptimeBase::ns`].
    #[inline(always)]
    pub fn never_clamps(&self) -> bool {
        self.low_ns >= 0
    }
}

/// NTP timestamp (seconds since 1900 in the high 32 bits, binary fraction in the low 32) → ns
/// since the Unix epoch; 0 before 1970.
pub fn ntp_to_ns(raw: u64) -> u64 {
    let (secs, frac) = (raw >> 32, raw & 0xffff_ffff);
    match secs.checked_sub(NTP_UNIX_OFFSET_SECS) {
        Some(unix) => unix * NS_PER_SEC + ((frac * NS_PER_SEC) >> 32),
        None => 0,
    }
}

/// dateTimeMicroseconds: NTP format whose fraction is meaningful to the microsecond only (the low
/// 11 bits should be zero), rounded to the nearest microsecond.
pub fn ntp_micros_to_ns(raw: u64) -> u64 {
    let (secs, frac) = (raw >> 32, raw & 0xffff_ffff);
    match secs.checked_sub(NTP_UNIX_OFFSET_SECS) {
        Some(unix) => unix * NS_PER_SEC + (((frac * 1_000_000) + (1 << 31)) >> 32) * 1000,
        None => 0,
    }
}

/// ns since the Unix epoch → NTP timestamp; the fraction is rounded up so [`ntp_to_ns`] gives back
/// exactly `ns`.
pub fn ns_to_ntp(ns: u64) -> u64 {
    let (secs, sub) = (ns / NS_PER_SEC, ns % NS_PER_SEC);
    let frac = (sub << 32).div_ceil(NS_PER_SEC);
    ((secs + NTP_UNIX_OFFSET_SECS) << 32) | frac
}

/// ns since the Unix epoch → dateTimeMicroseconds (sub-microsecond part dropped).
pub fn ns_to_ntp_micros(ns: u64) -> u64 {
    let (secs, us) = (ns / NS_PER_SEC, (ns % NS_PER_SEC) / 1000);
    let frac = (us << 32).div_ceil(1_000_000);
    ((secs + NTP_UNIX_OFFSET_SECS) << 32) | frac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntp_known_value() {
        // 2026-01-01T00:00:00.5Z: Unix 1767225600 s; NTP seconds 3976214400, fraction 0x8000_0000.
        let raw = (3_976_214_400u64 << 32) | 0x8000_0000;
        assert_eq!(ntp_to_ns(raw), 1_767_225_600_500_000_000);
        assert_eq!(ntp_micros_to_ns(raw), 1_767_225_600_500_000_000);
        assert_eq!(ns_to_ntp(1_767_225_600_500_000_000), raw);
        // Before 1970 is unknown, not a wrapped huge value.
        assert_eq!(ntp_to_ns(5 << 32), 0);
    }

    #[test]
    fn ntp_round_trips_every_nanosecond_form() {
        for ns in [0u64, 1, 999_999_999, 1_767_225_600_123_456_789] {
            let ns = ns + 1_000_000_000;
            assert_eq!(ntp_to_ns(ns_to_ntp(ns)), ns);
            let us = ns / 1000 * 1000;
            assert_eq!(ntp_micros_to_ns(ns_to_ntp_micros(ns)), us);
        }
        // A real exporter's micro form with the low 11 bits cleared still lands on the microsecond.
        let raw = ns_to_ntp_micros(1_700_000_000_000_123_000) & !0x7ff;
        assert_eq!(ntp_micros_to_ns(raw), 1_700_000_000_000_123_000);
    }

    #[test]
    fn uptime_relative_with_wrap_and_skew() {
        let export = 1_700_000_000_000_000_000;
        assert_eq!(uptime_to_ns(export, 10_000, 4_000), export - 6_000_000_000);
        // Uptime wrapped between the flow's start and the export.
        assert_eq!(
            uptime_to_ns(export, 500, u32::MAX - 499),
            export - 1_000_000_000
        );
        // Flow stamped 2 ms after the header: skew, not 49 days ago.
        assert_eq!(uptime_to_ns(export, 1_000, 1_002), export + 2_000_000);
        assert_eq!(uptime_to_ns(0, 10, 0), 0);
    }

    /// The signed-difference definition, written out: what [`UptimeBase`] must equal.
    fn uptime_reference(export_ns: u64, uptime_ms: u32, t_ms: u32) -> u64 {
        let before_ns = i64::from(uptime_ms.wrapping_sub(t_ms) as i32) * 1_000_000;
        (export_ns.min(1 << 62) as i64 - before_ns).max(0) as u64
    }

    #[test]
    fn uptime_base_matches_the_signed_difference_at_the_edges() {
        let exports = [
            0,
            1,
            (1 << 31) * 1_000_000 - 1,
            (1u64 << 31) * 1_000_000,
            u64::from(u32::MAX) * 1_000_000,
            1_700_000_000_000_000_000,
            u64::from(u32::MAX) * 1_000_000_000 + 999_999_999,
            u64::MAX,
        ];
        let uptimes = [0, 1, 1 << 31, (1 << 31) - 1, u32::MAX];
        let deltas = [0u32, 1, u32::MAX, 1 << 31, (1 << 31) - 1, (1 << 31) + 1];
        for export in exports {
            for uptime in uptimes {
                let base = UptimeBase::new(export, uptime);
                for delta in deltas {
                    let t = uptime.wrapping_sub(delta);
                    let expect = uptime_reference(export, uptime, t);
                    assert_eq!(base.ns(t), expect, "{export} {uptime} {t}");
                    if base.never_clamps() {
                        assert_eq!(base.signed_ns(t) as u64, expect, "{export} {uptime} {t}");
                    }
                }
            }
        }
        assert!(!UptimeBase::new(0, 0).never_clamps());
        assert!(UptimeBase::new(1_700_000_000_000_000_000, 0).never_clamps());
    }

    proptest::proptest! {
        #[test]
        fn uptime_base_matches_the_signed_difference(export: u64, uptime: u32, t: u32, small: u32) {
            for export in [export, u64::from(small) * 1_000_000] {
                let base = UptimeBase::new(export, uptime);
                let expect = uptime_reference(export, uptime, t);
                proptest::prop_assert_eq!(base.ns(t), expect);
                if base.never_clamps() {
                    proptest::prop_assert_eq!(base.signed_ns(t) as u64, expect);
                }
            }
        }
    }

    #[test]
    fn every_kind_round_trips_through_raw_for() {
        let v9 = ExportClock {
            export_ns: 1_700_000_100_000_000_000,
            uptime_ms: Some(3_600_000),
        };
        let ipfix = ExportClock {
            export_ns: 1_700_000_100_000_000_000,
            uptime_ms: None,
        };
        let t = 1_700_000_040_250_000_000; // whole milliseconds, 60 s before export
        let init_ms = 1_699_990_000_000;
        for kind in [
            TimeKind::Seconds,
            TimeKind::Millis,
            TimeKind::NtpMicros,
            TimeKind::NtpNanos,
            TimeKind::DeltaMicros,
            TimeKind::Uptime,
        ] {
            let expect = if kind == TimeKind::Seconds {
                t / NS_PER_SEC * NS_PER_SEC
            } else {
                t
            };
            for clock in [v9, ipfix] {
                let raw = clock.raw_for(kind, t, init_ms);
                assert_eq!(clock.absolute_ns(kind, raw, init_ms), expect, "{kind:?}");
            }
        }
        assert_eq!(v9.absolute_ns(TimeKind::Absent, 5, 0), 0);
        assert_eq!(ipfix.absolute_ns(TimeKind::Uptime, 5, 0), 0);
    }

    #[test]
    fn ipfix_uptime_wraps_like_v9s() {
        let export_ns = 1_700_000_100_000_000_000;
        let ipfix = ExportClock {
            export_ns,
            uptime_ms: None,
        };
        let flow_ns = export_ns - 30 * NS_PER_SEC;
        let flow_ms = flow_ns / 1_000_000;
        // Booted 60 days before the export: the flow's uptime (5,183,970,000 ms) wrapped past 2³².
        let init_ms = export_ns / 1_000_000 - 60 * 86_400_000;
        let raw = (flow_ms - init_ms) % (1 << 32);
        assert_eq!(ipfix.absolute_ns(TimeKind::Uptime, raw, init_ms), flow_ns);
        // softflowd: an init time 27 s after the flow's start gives an uptime just below 2³².
        let init_ms = flow_ms + 27_000;
        let raw = u64::from(flow_ms.wrapping_sub(init_ms) as u32);
        assert_eq!(raw, (1 << 32) - 27_000);
        assert_eq!(ipfix.absolute_ns(TimeKind::Uptime, raw, init_ms), flow_ns);
        // Both round-trip through the encoders' raw form.
        for init_ms in [export_ns / 1_000_000 - 60 * 86_400_000, flow_ms + 27_000] {
            let raw = ipfix.raw_for(TimeKind::Uptime, flow_ns, init_ms);
            assert_eq!(ipfix.absolute_ns(TimeKind::Uptime, raw, init_ms), flow_ns);
        }
    }
}
