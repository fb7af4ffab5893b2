//! Named reasons for everything a decoder refuses or skips. Each reason has a stable snake_case name
//! used as the `reason` label in metrics, in `collector replay` error lines and in summaries.
//!
//! Add a reason with one line in the `reasons!` list below.

macro_rules! reasons {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// Why a datagram, set or record was not decoded.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ErrorReason {
            $($(#[$doc])* $variant,)*
        }

        impl ErrorReason {
            /// Every reason, in index order.
            pub const ALL: &'static [ErrorReason] = &[$(ErrorReason::$variant,)*];
            /// Number of reasons (size of a per-reason counter array).
            pub const COUNT: usize = Self::ALL.len();

            /// Stable snake_case name.
            pub const fn name(self) -> &'static str {
                match self {
                    $(ErrorReason::$variant => $name,)*
                }
            }

            /// Index into a `[u64; ErrorReason::COUNT]` counter array.
            pub const fn index(self) -> usize {
                self as usize
            }
        }
    };
}

reasons! {
    /// Shorter than the smallest header of any protocol.
    TooShort => "too_short",
    /// The version field names no protocol we decode.
    UnknownVersion => "unknown_version",
    /// The protocol header is cut short.
    TruncatedHeader => "truncated_header",
    /// NetFlow v5: record count is 0, above 30, or more than the datagram holds.
    BadRecordCount => "bad_record_count",
    /// A record runs past the end of its set or datagram.
    TruncatedRecord => "truncated_record",
    /// IPFIX: the message length in the header does not match the datagram.
    BadMessageLength => "bad_message_length",
    /// Bytes after the end of the message (IPFIX: its length field; NetFlow v5: its records): the
    /// message is decoded, the bytes after it (another message packed into the datagram, or
    /// garbage) are not.
    TrailingBytes => "trailing_bytes",
    /// A set (v9 flowset) is shorter than its header or runs past the message.
    BadSetLength => "bad_set_length",
    /// A set id that is reserved (v9: 2..255 other than 0/1; IPFIX: 0, 1, 4..255).
    BadSetId => "bad_set_id",
    /// A template record is malformed (id below 256, field count runs past the set, zero-length field, ...).
    BadTemplate => "bad_template",
    /// A template's fields would make records larger than a datagram can be.
    TemplateTooLarge => "template_too_large",
    /// A variable-length field's length runs past the record.
    BadVariableLength => "bad_variable_length",
    /// A record's element was left out (its record field zero), counted per record: the template
    /// gives it a length its type cannot have (RFC 7011 §6.2 allows unsigned integers shorter
    /// than their type, never longer), a variable-length value is longer than its type, or the
    /// value does not fit its 32-bit record field (observationPointId or selectorId above
    /// 2³²−1; such a selector still finds its own sampling rate).
    FieldSkipped => "field_skipped",
    /// A data set refers to a template this exporter has not sent (held as early data when possible).
    TemplateMissing => "template_missing",
    /// Early data held for a template that never arrived, dropped when it aged out or the buffer was full.
    EarlyDataDropped => "early_data_dropped",
    /// A template was evicted to respect the cache's memory caps.
    TemplateEvicted => "template_evicted",
    /// sFlow: the agent address type is neither IPv4 nor IPv6.
    BadAgentAddress => "bad_agent_address",
    /// sFlow: a sample's length runs past the datagram or is shorter than its fixed part.
    BadSampleLength => "bad_sample_length",
    /// sFlow: a flow or counter record's length runs past its sample or is shorter than its fixed part.
    BadRecordLength => "bad_record_length",
    /// sFlow: the sample or record count cannot fit in the datagram.
    BadSampleCount => "bad_sample_count",
    /// sFlow: an address inside a flow record has a type other than unknown (0), IPv4 (1) or IPv6 (2).
    BadRecordAddress => "bad_record_address",
}

impl std::fmt::Display for ErrorReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::error::Error for ErrorReason {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_indices_dense() {
        let mut names: Vec<_> = ErrorReason::ALL.iter().map(|r| r.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ErrorReason::COUNT);
        for (i, r) in ErrorReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }
}
