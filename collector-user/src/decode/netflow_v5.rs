//! NetFlow v5: a 24-byte header and up to 30 fixed 48-byte records. (Decoder in progress.)

use super::{DatagramMeta, ErrorReason, RecordSink};

/// Decode one v5 datagram; returns the number of records handed to `sink`.
pub fn decode(
    _meta: &DatagramMeta,
    datagram: &[u8],
    _sink: &mut impl RecordSink,
) -> Result<usize, ErrorReason> {
    if datagram.len() < 24 {
        return Err(ErrorReason::TruncatedHeader);
    }
    Err(ErrorReason::UnknownVersion)
}
