//! The sFlow v5 datagram header: version, agent address (IPv4 or IPv6), sub-agent id, datagram
//! sequence number, agent uptime and the number of samples that follow.
//!
//! ```text
//! 0       version = 5
//! 4       agent address type (1 IPv4, 2 IPv6)
//! 8       agent address (4 or 16 bytes)
//! 12|24   sub_agent_id
//! +4      sequence_number (datagrams sent by this agent + sub-agent)
//! +8      uptime (ms)
//! +12     num_samples
//! +16     samples
//! ```

use super::xdr::{self, put_address, put_u32};
use crate::decode::ErrorReason;
use std::net::IpAddr;

/// Offsets of the header.
pub mod field {
    pub const VERSION: usize = 0;
    pub const AGENT_TYPE: usize = 4;
    pub const AGENT: usize = 8;
    /// The fields after the agent address, relative to its end.
    pub const SUB_AGENT_ID: usize = 0;
    pub const SEQUENCE: usize = 4;
    pub const UPTIME: usize = 8;
    pub const NUM_SAMPLES: usize = 12;
    pub const TAIL_LEN: usize = 16;
    /// The shortest header (IPv4 agent).
    pub const MIN_LEN: usize = AGENT + 4 + TAIL_LEN;
}

/// sFlow version number this module decodes.
pub const VERSION: u32 = 5;

/// The parsed header, with the samples still as bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header<'a> {
    /// Agent address in record form (IPv4-mapped when IPv4).
    pub agent: [u8; 16],
    pub sub_agent_id: u32,
    pub sequence: u32,
    pub uptime_ms: u32,
    pub num_samples: u32,
    /// Everything after the header.
    pub samples: &'a [u8],
}

impl<'a> Header<'a> {
    /// Parse the header of `datagram`.
    ///
    /// Errors: [`ErrorReason::TruncatedHeader`] when cut short, [`ErrorReason::UnknownVersion`] when the
    /// version is not 5, [`ErrorReason::BadAgentAddress`] for an address type other than 1 or 2.
    #[inline]
    pub fn parse(datagram: &'a [u8]) -> Result<Self, ErrorReason> {
        let Some(head) = xdr::fixed::<{ field::AGENT }>(datagram) else {
            return Err(ErrorReason::TruncatedHeader);
        };
        if xdr::word(head, field::VERSION) != VERSION {
            return Err(ErrorReason::UnknownVersion);
        }
        let rest = datagram.get(field::AGENT..).unwrap_or_default();
        let (agent, rest) = match xdr::word(head, field::AGENT_TYPE) {
            1 => match rest.split_first_chunk::<4>() {
                Some((v4, rest)) => (xdr::mapped_v4(*v4), rest),
                None => return Err(ErrorReason::TruncatedHeader),
            },
            2 => match rest.split_first_chunk::<16>() {
                Some((v6, rest)) => (*v6, rest),
                None => return Err(ErrorReason::TruncatedHeader),
            },
            _ => return Err(ErrorReason::BadAgentAddress),
        };
        let Some((tail, samples)) = rest.split_first_chunk::<{ field::TAIL_LEN }>() else {
            return Err(ErrorReason::TruncatedHeader);
        };
        Ok(Header {
            agent,
            sub_agent_id: xdr::word(tail, field::SUB_AGENT_ID),
            sequence: xdr::word(tail, field::SEQUENCE),
            uptime_ms: xdr::word(tail, field::UPTIME),
            num_samples: xdr::word(tail, field::NUM_SAMPLES),
            samples,
        })
    }
}

/// The header fields to emit (the encoder half).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderRepr {
    pub agent: IpAddr,
    pub sub_agent_id: u32,
    pub sequence: u32,
    pub uptime_ms: u32,
}

impl HeaderRepr {
    /// Append the header with `num_samples` to `out`.
    pub fn emit(&self, num_samples: u32, out: &mut Vec<u8>) {
        put_u32(out, VERSION);
        put_address(out, Some(self.agent));
        put_u32(out, self.sub_agent_id);
        put_u32(out, self.sequence);
        put_u32(out, self.uptime_ms);
        put_u32(out, num_samples);
    }

    /// Bytes [`HeaderRepr::emit`] writes.
    pub fn len(&self) -> usize {
        match self.agent {
            IpAddr::V4(_) => field::MIN_LEN,
            IpAddr::V6(_) => field::MIN_LEN + 12,
        }
    }

    /// Never empty; present for the `len` convention.
    pub fn is_empty(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::ipv4_bytes;

    /// Version 5, agent 192.0.2.1, sub-agent 3, sequence 1000, uptime 60000 ms, 0 samples.
    const V4_HEADER: [u8; 28] = [
        0, 0, 0, 5, 0, 0, 0, 1, 192, 0, 2, 1, 0, 0, 0, 3, 0, 0, 0x03, 0xe8, 0, 0, 0xea, 0x60, 0, 0,
        0, 0,
    ];

    #[test]
    fn deconstruct_ipv4_header() {
        let h = Header::parse(&V4_HEADER).unwrap();
        assert_eq!(h.agent, ipv4_bytes([192, 0, 2, 1]));
        assert_eq!(
            (h.sub_agent_id, h.sequence, h.uptime_ms, h.num_samples),
            (3, 1000, 60_000, 0)
        );
        assert!(h.samples.is_empty());
    }

    #[test]
    fn construct_matches_bytes_and_ipv6_round_trips() {
        let repr = HeaderRepr {
            agent: "192.0.2.1".parse().unwrap(),
            sub_agent_id: 3,
            sequence: 1000,
            uptime_ms: 60_000,
        };
        let mut out = Vec::new();
        repr.emit(0, &mut out);
        assert_eq!(out, V4_HEADER);
        assert_eq!(out.len(), repr.len());

        let v6 = HeaderRepr {
            agent: "2001:db8::7".parse().unwrap(),
            ..repr
        };
        let mut out = Vec::new();
        v6.emit(9, &mut out);
        out.push(0xee);
        assert_eq!(out.len(), v6.len() + 1);
        let h = Header::parse(&out).unwrap();
        assert_eq!(
            h.agent,
            "2001:db8::7"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets()
        );
        assert_eq!(h.num_samples, 9);
        assert_eq!(h.samples, &[0xee]);
    }

    #[test]
    fn truncated_at_every_offset_is_truncated_header() {
        for cut in 0..V4_HEADER.len() {
            assert_eq!(
                Header::parse(&V4_HEADER[..cut]),
                Err(ErrorReason::TruncatedHeader),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn bad_version_and_agent_type_are_named() {
        let mut bad = V4_HEADER;
        bad[3] = 4;
        assert_eq!(Header::parse(&bad), Err(ErrorReason::UnknownVersion));
        let mut bad = V4_HEADER;
        bad[7] = 0;
        assert_eq!(Header::parse(&bad), Err(ErrorReason::BadAgentAddress));
        bad[7] = 3;
        assert_eq!(Header::parse(&bad), Err(ErrorReason::BadAgentAddress));
    }
}
