//! sFlow v5 datagrams: flow and counter samples. (Decoder in progress.)

use super::{DatagramMeta, ErrorReason, RecordSink};

/// sFlow decoder state of one worker (sequence trackers per agent and sample source).
#[derive(Debug, Default)]
pub struct SflowDecoder {}

impl SflowDecoder {
    /// Decode one sFlow datagram; returns the number of records handed to `sink`.
    pub fn decode(
        &mut self,
        _meta: &DatagramMeta,
        datagram: &[u8],
        _sink: &mut impl RecordSink,
    ) -> Result<usize, ErrorReason> {
        if datagram.len() < 28 {
            return Err(ErrorReason::TruncatedHeader);
        }
        Err(ErrorReason::UnknownVersion)
    }
}
