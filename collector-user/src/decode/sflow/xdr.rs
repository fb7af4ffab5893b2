//! XDR primitives shared by the sFlow structures: big-endian words, `data_format` + length framed
//! elements (samples and records), addresses, and their encoders.
//!
//! Every read is a checked `get`; a read past the end yields `None` and the caller names the error.

use std::net::IpAddr;

/// Big-endian u32 at `at`, or `None` past the end.
#[inline(always)]
pub fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(*b.get(at..)?.first_chunk::<4>()?))
}

/// Big-endian u64 at `at`, or `None` past the end.
#[inline(always)]
pub fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(*b.get(at..)?.first_chunk::<8>()?))
}

/// A fixed-size part of a structure, read as an array once its length is checked.
#[inline(always)]
pub fn fixed<const N: usize>(b: &[u8]) -> Option<&[u8; N]> {
    b.first_chunk::<N>()
}

/// Big-endian u32 at a constant offset of a checked fixed part.
#[inline(always)]
pub fn word<const N: usize>(b: &[u8; N], at: usize) -> u32 {
    u32_at(b, at).unwrap_or(0)
}

/// Big-endian u64 at a constant offset of a checked fixed part.
#[inline(always)]
pub fn dword<const N: usize>(b: &[u8; N], at: usize) -> u64 {
    u64_at(b, at).unwrap_or(0)
}

/// The record form of an IPv4 address (IPv4-mapped), built as one 128-bit value rather than byte
/// by byte (same bytes as [`ipv4_bytes`](crate::record::ipv4_bytes), cheaper in the per-datagram and per-record paths).
#[inline(always)]
pub fn mapped_v4(octets: [u8; 4]) -> [u8; 16] {
    (0xffff_u128 << 32 | u128::from(u32::from_be_bytes(octets))).to_be_bytes()
}

/// One `data_format` + `length` framed element (a sample or a record).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Element<'a> {
    /// `enterprise << 12 | format`.
    pub format: u32,
    pub body: &'a [u8],
}

/// Split the next framed element off `rest`: `None` when its 8-byte header or its body runs past
/// the end.
#[inline(always)]
pub fn split_element(rest: &[u8]) -> Option<(Element<'_>, &[u8])> {
    let (head, after) = rest.split_first_chunk::<8>()?;
    let format = word(head, 0);
    let len = word(head, 4) as usize;
    let (body, after) = after.split_at_checked(len)?;
    Some((Element { format, body }, after))
}

/// The 8-byte framing of an element.
pub const ELEMENT_HEADER_LEN: usize = 8;

/// Why an `address` could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressError {
    /// The bytes end inside the address.
    Short,
    /// The type is not 0 (unknown), 1 (IPv4) or 2 (IPv6).
    BadType,
}

/// An sFlow `address`: type 0 (unknown, no bytes), 1 (IPv4), 2 (IPv6).
/// Returns the 16-byte record form (all zero for unknown) and the bytes after it.
#[inline(always)]
pub fn split_address(b: &[u8]) -> Result<([u8; 16], &[u8]), AddressError> {
    let (kind, rest) = b.split_first_chunk::<4>().ok_or(AddressError::Short)?;
    match u32::from_be_bytes(*kind) {
        0 => Ok(([0; 16], rest)),
        1 => {
            let (v4, rest) = rest.split_first_chunk::<4>().ok_or(AddressError::Short)?;
            Ok((mapped_v4(*v4), rest))
        }
        2 => {
            let (v6, rest) = rest.split_first_chunk::<16>().ok_or(AddressError::Short)?;
            Ok((*v6, rest))
        }
        _ => Err(AddressError::BadType),
    }
}

/// Encoders.
pub fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// An `address`; `None` is type 0 (unknown).
pub fn put_address(out: &mut Vec<u8>, addr: Option<IpAddr>) {
    match addr {
        None => put_u32(out, 0),
        Some(IpAddr::V4(v4)) => {
            put_u32(out, 1);
            out.extend_from_slice(&v4.octets());
        }
        Some(IpAddr::V6(v6)) => {
            put_u32(out, 2);
            out.extend_from_slice(&v6.octets());
        }
    }
}

/// Variable-length opaque data: length, bytes, zero padding to a multiple of 4.
pub fn put_opaque(out: &mut Vec<u8>, bytes: &[u8]) {
    put_u32(out, bytes.len() as u32);
    out.extend_from_slice(bytes);
    pad4(out, bytes.len());
}

/// Zero padding after `len` bytes of data.
pub fn pad4(out: &mut Vec<u8>, len: usize) {
    out.extend(core::iter::repeat_n(0u8, (4 - len % 4) % 4));
}

/// A MAC address as sFlow sends it: 6 bytes padded to 8.
pub fn put_mac(out: &mut Vec<u8>, mac: [u8; 6]) {
    out.extend_from_slice(&mac);
    out.extend_from_slice(&[0, 0]);
}

/// A framed element: `format`, then the length of what `body` writes, then those bytes.
pub fn put_element(out: &mut Vec<u8>, format: u32, body: impl FnOnce(&mut Vec<u8>)) {
    put_u32(out, format);
    let len_at = out.len();
    put_u32(out, 0);
    body(out);
    let len = (out.len() - len_at - 4) as u32;
    if let Some(slot) = out.get_mut(len_at..len_at + 4) {
        slot.copy_from_slice(&len.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::ipv4_bytes;

    #[test]
    fn elements_and_addresses() {
        let bytes = [0, 0, 0, 1, 0, 0, 0, 4, 9, 9, 9, 9, 0xff];
        let (e, rest) = split_element(&bytes).unwrap();
        assert_eq!(e.format, 1);
        assert_eq!(e.body, &[9, 9, 9, 9]);
        assert_eq!(rest, &[0xff]);
        // A length running past the end is refused.
        assert_eq!(split_element(&[0, 0, 0, 1, 0, 0, 0, 5, 9, 9, 9, 9]), None);
        assert_eq!(split_element(&[0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(split_element(&[0, 0, 0, 1, 0, 0, 0]), None);

        let (a, rest) = split_address(&[0, 0, 0, 1, 10, 0, 0, 1, 7]).unwrap();
        assert_eq!(a, ipv4_bytes([10, 0, 0, 1]));
        for v4 in [[0, 0, 0, 0], [10, 0, 0, 1], [255, 254, 253, 252]] {
            assert_eq!(mapped_v4(v4), ipv4_bytes(v4));
        }
        assert_eq!(rest, &[7]);
        assert_eq!(split_address(&[0, 0, 0, 0]).unwrap().0, [0; 16]);
        assert_eq!(
            split_address(&[0, 0, 0, 3, 1, 2, 3, 4]),
            Err(AddressError::BadType)
        );
        assert_eq!(
            split_address(&[0, 0, 0, 2, 1, 2, 3, 4]),
            Err(AddressError::Short)
        );

        let mut out = Vec::new();
        put_element(&mut out, 7, |o| put_opaque(o, b"abcde"));
        assert_eq!(
            out,
            [
                0, 0, 0, 7, 0, 0, 0, 12, 0, 0, 0, 5, b'a', b'b', b'c', b'd', b'e', 0, 0, 0
            ]
        );
    }
}
