//! The frame classification the XDP program `steer` applies to every received frame.
//!
//! Owns the header walk (Ethernet, up to two VLAN tags, IPv4 with any IHL, IPv6 fixed header, UDP)
//! and the [`Verdict`] that picks the counter. It is generic over [`FrameBytes`] so the kernel
//! side reads packet memory (bounds-checked against `data_end` for the verifier) while userspace
//! tests feed byte slices. Everything is `#[inline(always)]` and loop-free: the eBPF verifier must
//! see every offset bounded. It never allocates and never panics.

use crate::Counter;

/// Length of an Ethernet II header (destination, source, ethertype).
pub const ETH_HEADER_LEN: usize = 14;
/// Offset of the ethertype in an Ethernet II header.
pub const ETHERTYPE_OFFSET: usize = 12;
/// Length of one 802.1Q / 802.1ad tag (TPID already counted in the ethertype slot, plus TCI).
pub const VLAN_TAG_LEN: usize = 4;
/// Ethertype of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// Ethertype of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// TPID of an 802.1Q (customer) VLAN tag.
pub const ETHERTYPE_VLAN: u16 = 0x8100;
/// TPID of an 802.1ad (service, "QinQ") VLAN tag.
pub const ETHERTYPE_QINQ: u16 = 0x88a8;
/// Length of the IPv4 header without options.
pub const IPV4_MIN_HEADER_LEN: usize = 20;
/// Length of the fixed IPv6 header.
pub const IPV6_HEADER_LEN: usize = 40;
/// Length of the UDP header.
pub const UDP_HEADER_LEN: usize = 8;
/// IP protocol / IPv6 next-header number of UDP.
pub const IPPROTO_UDP: u8 = 17;
/// IPv6 next-header number of the fragment extension header.
pub const IPV6_NEXT_HEADER_FRAGMENT: u8 = 44;
/// IPv4 flags+offset bits that mark a fragment: More Fragments and the 13-bit offset.
pub const IPV4_FRAGMENT_MASK: u16 = 0x3fff;

/// Byte ranges of the IPv4 header fields the classifier reads (RFC 791).
mod ipv4 {
    pub const VERSION_IHL: usize = 0;
    pub const SRC_ADDR: usize = 12;
    pub const FLAGS_FRAGMENT_OFFSET: core::ops::Range<usize> = 6..8;
    pub const PROTOCOL: usize = 9;
}

/// Byte ranges of the IPv6 header fields the classifier reads (RFC 8200).
mod ipv6 {
    pub const VERSION: usize = 0;
    pub const NEXT_HEADER: usize = 6;
    pub const SRC_ADDR: usize = 8;
}

/// Byte ranges of the UDP header fields (RFC 768).
mod udp {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const LENGTH: usize = 4;
}

/// The IP source address of a matched frame, in network byte order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceAddr {
    /// IPv4 source.
    V4([u8; 4]),
    /// IPv6 source.
    V6([u8; 16]),
}

/// What the classifier decided about one frame; each maps to one [`Counter`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Unfragmented UDP to a configured destination port.
    Matched {
        /// The destination port, host order.
        port: u16,
        /// The IP source address (what the allow-list checks).
        source: SourceAddr,
        /// Offset of the UDP header from the start of the frame.
        udp_offset: usize,
    },
    /// Anything that is not unfragmented UDP to a configured port.
    NotMatched,
    /// An IPv4 fragment or an IPv6 packet whose next header is a fragment header.
    Fragment,
    /// Too short for the headers it announces, or an impossible IP version / IHL.
    Malformed,
}

impl Verdict {
    /// The counter this verdict increments (besides [`Counter::Seen`]).
    #[inline(always)]
    pub const fn counter(self) -> Counter {
        match self {
            Verdict::Matched { .. } => Counter::Matched,
            Verdict::NotMatched => Counter::PassedNotMatched,
            Verdict::Fragment => Counter::Fragments,
            Verdict::Malformed => Counter::Malformed,
        }
    }
}

/// Bounds-checked access to the bytes of one frame.
pub trait FrameBytes {
    /// The `N` bytes at `offset`, or `None` when the frame ends before `offset + N`.
    fn read<const N: usize>(&self, offset: usize) -> Option<[u8; N]>;
}

impl FrameBytes for [u8] {
    #[inline(always)]
    fn read<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        let end = offset.checked_add(N)?;
        self.get(offset..end)?.try_into().ok()
    }
}

/// Classify one frame. `is_listen_port` answers whether a UDP destination port (host order) is
/// configured.
#[inline(always)]
pub fn classify<F: FrameBytes + ?Sized>(
    frame: &F,
    is_listen_port: impl Fn(u16) -> bool,
) -> Verdict {
    let Some(ethertype) = frame.read::<2>(ETHERTYPE_OFFSET) else {
        return Verdict::Malformed;
    };
    let mut ethertype = u16::from_be_bytes(ethertype);
    let mut l3 = ETH_HEADER_LEN;
    // Up to two tags, unrolled: each tag's inner ethertype sits 2 bytes after its TCI.
    if is_vlan(ethertype) {
        let Some(inner) = frame.read::<2>(l3 + 2) else {
            return Verdict::Malformed;
        };
        ethertype = u16::from_be_bytes(inner);
        l3 += VLAN_TAG_LEN;
        if is_vlan(ethertype) {
            let Some(inner) = frame.read::<2>(l3 + 2) else {
                return Verdict::Malformed;
            };
            ethertype = u16::from_be_bytes(inner);
            l3 += VLAN_TAG_LEN;
            if is_vlan(ethertype) {
                // A third tag: not ours to parse; the kernel decides.
                return Verdict::NotMatched;
            }
        }
    }
    match ethertype {
        ETHERTYPE_IPV4 => classify_ipv4(frame, l3, is_listen_port),
        ETHERTYPE_IPV6 => classify_ipv6(frame, l3, is_listen_port),
        _ => Verdict::NotMatched,
    }
}

#[inline(always)]
const fn is_vlan(ethertype: u16) -> bool {
    ethertype == ETHERTYPE_VLAN || ethertype == ETHERTYPE_QINQ
}

#[inline(always)]
fn classify_ipv4<F: FrameBytes + ?Sized>(
    frame: &F,
    l3: usize,
    is_listen_port: impl Fn(u16) -> bool,
) -> Verdict {
    let Some(header) = frame.read::<IPV4_MIN_HEADER_LEN>(l3) else {
        return Verdict::Malformed;
    };
    let version_ihl = header[ipv4::VERSION_IHL];
    // The mask keeps the offset provably bounded (≤ 60) for the verifier.
    let header_len = usize::from(version_ihl & 0x0f) * 4;
    if version_ihl >> 4 != 4 || header_len < IPV4_MIN_HEADER_LEN {
        return Verdict::Malformed;
    }
    let flags_offset = u16::from_be_bytes([
        header[ipv4::FLAGS_FRAGMENT_OFFSET.start],
        header[ipv4::FLAGS_FRAGMENT_OFFSET.start + 1],
    ]);
    if flags_offset & IPV4_FRAGMENT_MASK != 0 {
        return Verdict::Fragment;
    }
    if header[ipv4::PROTOCOL] != IPPROTO_UDP {
        return Verdict::NotMatched;
    }
    let source = SourceAddr::V4([
        header[ipv4::SRC_ADDR],
        header[ipv4::SRC_ADDR + 1],
        header[ipv4::SRC_ADDR + 2],
        header[ipv4::SRC_ADDR + 3],
    ]);
    classify_udp(frame, l3 + header_len, source, is_listen_port)
}

#[inline(always)]
fn classify_ipv6<F: FrameBytes + ?Sized>(
    frame: &F,
    l3: usize,
    is_listen_port: impl Fn(u16) -> bool,
) -> Verdict {
    let Some(header) = frame.read::<IPV6_HEADER_LEN>(l3) else {
        return Verdict::Malformed;
    };
    if header[ipv6::VERSION] >> 4 != 6 {
        return Verdict::Malformed;
    }
    match header[ipv6::NEXT_HEADER] {
        IPV6_NEXT_HEADER_FRAGMENT => Verdict::Fragment,
        IPPROTO_UDP => {
            let mut source = [0u8; 16];
            source.copy_from_slice(&header[ipv6::SRC_ADDR..ipv6::SRC_ADDR + 16]);
            classify_udp(
                frame,
                l3 + IPV6_HEADER_LEN,
                SourceAddr::V6(source),
                is_listen_port,
            )
        }
        // Other extension headers and protocols: the kernel's business.
        _ => Verdict::NotMatched,
    }
}

#[inline(always)]
fn classify_udp<F: FrameBytes + ?Sized>(
    frame: &F,
    l4: usize,
    source: SourceAddr,
    is_listen_port: impl Fn(u16) -> bool,
) -> Verdict {
    let Some(header) = frame.read::<UDP_HEADER_LEN>(l4) else {
        return Verdict::Malformed;
    };
    let port = u16::from_be_bytes([header[udp::DST_PORT], header[udp::DST_PORT + 1]]);
    if is_listen_port(port) {
        Verdict::Matched {
            port,
            source,
            udp_offset: l4,
        }
    } else {
        Verdict::NotMatched
    }
}

/// A UDP datagram to a listen port found in a frame by [`udp_datagram`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdpDatagram {
    /// IP source address.
    pub source: SourceAddr,
    /// UDP source port.
    pub src_port: u16,
    /// UDP destination port.
    pub dst_port: u16,
    /// Byte range of the UDP payload within the frame.
    pub payload: core::ops::Range<usize>,
}

/// Why a frame handed to userspace holds no usable UDP datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The classifier did not match it (cannot happen for frames the program steered, unless
    /// the port set changed in between).
    NotMatched,
    /// The UDP length field is below 8 or runs past the end of the frame.
    BadUdpLength,
}

/// Locate the UDP payload of a frame the XDP program steered to userspace (AF_XDP or perf
/// ring): the same header walk as the program, then the UDP length (which excludes Ethernet
/// padding). Never panics.
pub fn udp_datagram(
    frame: &[u8],
    is_listen_port: impl Fn(u16) -> bool,
) -> Result<UdpDatagram, FrameError> {
    let Verdict::Matched {
        port,
        source,
        udp_offset,
    } = classify(frame, is_listen_port)
    else {
        return Err(FrameError::NotMatched);
    };
    let header = frame
        .read::<UDP_HEADER_LEN>(udp_offset)
        .ok_or(FrameError::BadUdpLength)?;
    let src_port = u16::from_be_bytes([header[udp::SRC_PORT], header[udp::SRC_PORT + 1]]);
    let length = usize::from(u16::from_be_bytes([
        header[udp::LENGTH],
        header[udp::LENGTH + 1],
    ]));
    let start = udp_offset + UDP_HEADER_LEN;
    let end = udp_offset + length;
    if length < UDP_HEADER_LEN || end > frame.len() {
        return Err(FrameError::BadUdpLength);
    }
    Ok(UdpDatagram {
        source,
        src_port,
        dst_port: port,
        payload: start..end,
    })
}

/// The network layer of a frame written by [`emit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Network {
    /// IPv4 with `options_words` 32-bit words of options (IHL = 5 + options_words) and the given
    /// flags+fragment-offset field.
    Ipv4 {
        /// Number of 32-bit option words (0..=10), filled with NOP options.
        options_words: u8,
        /// The flags and fragment offset field (e.g. `0x2000` for More Fragments).
        flags_fragment_offset: u16,
        /// The protocol field.
        protocol: u8,
    },
    /// IPv6 fixed header with the given next header.
    Ipv6 {
        /// The next-header field.
        next_header: u8,
    },
}

/// A frame to write with [`emit`]: Ethernet, VLAN tags, IP, then a UDP header and zero payload.
///
/// The UDP header is written whatever the protocol field says, so a non-UDP protocol produces a
/// frame whose transport bytes are simply not interpreted as UDP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameSpec<'a> {
    /// TPIDs of the VLAN tags, outermost first (VLAN id = position + 1).
    pub vlan_tpids: &'a [u16],
    /// Network layer.
    pub network: Network,
    /// UDP source port.
    pub src_port: u16,
    /// UDP destination port.
    pub dst_port: u16,
    /// UDP payload bytes (zeros).
    pub payload_len: usize,
}

impl FrameSpec<'_> {
    /// Bytes [`emit`] writes for this spec.
    pub fn len(&self) -> usize {
        let ip = match self.network {
            Network::Ipv4 { options_words, .. } => {
                IPV4_MIN_HEADER_LEN + usize::from(options_words) * 4
            }
            Network::Ipv6 { .. } => IPV6_HEADER_LEN,
        };
        ETH_HEADER_LEN
            + self.vlan_tpids.len() * VLAN_TAG_LEN
            + ip
            + UDP_HEADER_LEN
            + self.payload_len
    }

    /// Always false: a frame has at least an Ethernet header.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Write the frame `spec` describes to the start of `buf` (source MAC 02:00:00:00:00:02,
/// destination 02:00:00:00:00:01, documentation addresses 192.0.2.2 → 192.0.2.1 or
/// 2001:db8::2 → 2001:db8::1). Returns the frame length, or `None` when `buf` is too short or
/// the spec cannot be encoded (more than 10 option words, lengths over 65535).
pub fn emit(spec: &FrameSpec<'_>, buf: &mut [u8]) -> Option<usize> {
    let len = spec.len();
    let frame = buf.get_mut(..len)?;
    frame.fill(0);
    frame[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    frame[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x02]);
    let mut at = ETHERTYPE_OFFSET;
    for (index, tpid) in spec.vlan_tpids.iter().enumerate() {
        frame[at..at + 2].copy_from_slice(&tpid.to_be_bytes());
        let vid = u16::try_from(index + 1).ok()?;
        frame[at + 2..at + 4].copy_from_slice(&vid.to_be_bytes());
        at += VLAN_TAG_LEN;
    }
    let udp_len = u16::try_from(UDP_HEADER_LEN + spec.payload_len).ok()?;
    let l3 = at + 2;
    let l4 = match spec.network {
        Network::Ipv4 {
            options_words,
            flags_fragment_offset,
            protocol,
        } => {
            if options_words > 10 {
                return None;
            }
            frame[at..at + 2].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
            let header_len = IPV4_MIN_HEADER_LEN + usize::from(options_words) * 4;
            let total = u16::try_from(header_len + usize::from(udp_len)).ok()?;
            let ip = &mut frame[l3..l3 + header_len];
            ip[0] = 0x40 | (5 + options_words);
            ip[2..4].copy_from_slice(&total.to_be_bytes());
            ip[6..8].copy_from_slice(&flags_fragment_offset.to_be_bytes());
            ip[8] = 64;
            ip[9] = protocol;
            ip[12..16].copy_from_slice(&[192, 0, 2, 2]);
            ip[16..20].copy_from_slice(&[192, 0, 2, 1]);
            // NOP options (type 1).
            ip[IPV4_MIN_HEADER_LEN..].fill(1);
            let checksum = internet_checksum(ip);
            ip[10..12].copy_from_slice(&checksum.to_be_bytes());
            l3 + header_len
        }
        Network::Ipv6 { next_header } => {
            frame[at..at + 2].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
            let ip = &mut frame[l3..l3 + IPV6_HEADER_LEN];
            ip[0] = 0x60;
            ip[4..6].copy_from_slice(&udp_len.to_be_bytes());
            ip[6] = next_header;
            ip[7] = 64;
            let mut src = [0u8; 16];
            src[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
            let mut dst = src;
            src[15] = 2;
            dst[15] = 1;
            ip[8..24].copy_from_slice(&src);
            ip[24..40].copy_from_slice(&dst);
            l3 + IPV6_HEADER_LEN
        }
    };
    let udp = &mut frame[l4..l4 + UDP_HEADER_LEN];
    udp[0..2].copy_from_slice(&spec.src_port.to_be_bytes());
    udp[2..4].copy_from_slice(&spec.dst_port.to_be_bytes());
    udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
    Some(len)
}

/// RFC 1071 one's-complement checksum of `bytes` (even length).
fn internet_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for pair in bytes.chunks(2) {
        let word = u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTEN: u16 = 2055;

    fn listen(port: u16) -> bool {
        port == LISTEN
    }

    fn ipv4_udp() -> Network {
        Network::Ipv4 {
            options_words: 0,
            flags_fragment_offset: 0,
            protocol: IPPROTO_UDP,
        }
    }

    fn spec(network: Network, vlan_tpids: &[u16], dst_port: u16) -> FrameSpec<'_> {
        FrameSpec {
            vlan_tpids,
            network,
            src_port: 40000,
            dst_port,
            payload_len: 4,
        }
    }

    fn frame(spec: &FrameSpec<'_>) -> ([u8; 256], usize) {
        let mut buf = [0u8; 256];
        let len = emit(spec, &mut buf).expect("spec fits");
        (buf, len)
    }

    fn verdict(spec: &FrameSpec<'_>) -> Verdict {
        let (buf, len) = frame(spec);
        summary(classify(&buf[..len], listen))
    }

    /// A match on the listen port, source and offset blanked (checked separately).
    const MATCHED: Verdict = Verdict::Matched {
        port: LISTEN,
        source: SourceAddr::V4([0; 4]),
        udp_offset: 0,
    };

    fn summary(verdict: Verdict) -> Verdict {
        match verdict {
            Verdict::Matched { port, .. } => Verdict::Matched {
                port,
                source: SourceAddr::V4([0; 4]),
                udp_offset: 0,
            },
            other => other,
        }
    }

    #[test]
    fn ipv4_udp_to_listen_port_matches() {
        // Ethernet | IPv4 (IHL 5, UDP) 192.0.2.2 → 192.0.2.1 | UDP 40000 → 2055, len 12 | 4 zero bytes
        let bytes: [u8; 46] = [
            0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02, 0x08, 0x00, //
            0x45, 0x00, 0x00, 0x20, 0, 0, 0x00, 0x00, 64, 17, 0xf6, 0xc9, 192, 0, 2, 2, 192, 0, 2,
            1, //
            0x9c, 0x40, 0x08, 0x07, 0x00, 0x0c, 0x00, 0x00, //
            0, 0, 0, 0,
        ];
        assert_eq!(summary(classify(&bytes[..], listen)), MATCHED);
        let (emitted, len) = frame(&spec(ipv4_udp(), &[], LISTEN));
        assert_eq!(&emitted[..len], &bytes[..]);
    }

    #[test]
    fn other_port_and_other_protocols_are_not_matched() {
        assert_eq!(verdict(&spec(ipv4_udp(), &[], 9999)), Verdict::NotMatched);
        let tcp = Network::Ipv4 {
            options_words: 0,
            flags_fragment_offset: 0,
            protocol: 6,
        };
        assert_eq!(verdict(&spec(tcp, &[], LISTEN)), Verdict::NotMatched);
        let arp: [u8; 42] = {
            let mut arp = [0u8; 42];
            arp[12] = 0x08;
            arp[13] = 0x06;
            arp
        };
        assert_eq!(summary(classify(&arp[..], listen)), Verdict::NotMatched);
    }

    #[test]
    fn ipv4_options_shift_the_udp_header() {
        for options_words in 1..=10 {
            let network = Network::Ipv4 {
                options_words,
                flags_fragment_offset: 0,
                protocol: IPPROTO_UDP,
            };
            assert_eq!(
                verdict(&spec(network, &[], LISTEN)),
                MATCHED,
                "IHL {}",
                5 + options_words
            );
            assert_eq!(verdict(&spec(network, &[], 9999)), Verdict::NotMatched);
        }
    }

    #[test]
    fn vlan_tags_one_and_two_are_parsed_three_pass() {
        for tags in [
            &[ETHERTYPE_VLAN][..],
            &[ETHERTYPE_QINQ][..],
            &[ETHERTYPE_QINQ, ETHERTYPE_VLAN][..],
            &[ETHERTYPE_VLAN, ETHERTYPE_VLAN][..],
        ] {
            assert_eq!(
                verdict(&spec(ipv4_udp(), tags, LISTEN)),
                MATCHED,
                "{tags:x?}"
            );
            assert_eq!(
                verdict(&spec(Network::Ipv6 { next_header: 17 }, tags, LISTEN)),
                MATCHED
            );
        }
        let three = [ETHERTYPE_QINQ, ETHERTYPE_VLAN, ETHERTYPE_VLAN];
        assert_eq!(
            verdict(&spec(ipv4_udp(), &three, LISTEN)),
            Verdict::NotMatched
        );
    }

    #[test]
    fn ipv4_fragments_are_counted_whatever_the_protocol() {
        for (flags_fragment_offset, protocol) in
            [(0x2000, IPPROTO_UDP), (0x0001, IPPROTO_UDP), (0x00b9, 6)]
        {
            let network = Network::Ipv4 {
                options_words: 0,
                flags_fragment_offset,
                protocol,
            };
            assert_eq!(verdict(&spec(network, &[], LISTEN)), Verdict::Fragment);
        }
        // Don't Fragment alone is not a fragment.
        let df = Network::Ipv4 {
            options_words: 0,
            flags_fragment_offset: 0x4000,
            protocol: IPPROTO_UDP,
        };
        assert_eq!(verdict(&spec(df, &[], LISTEN)), MATCHED);
    }

    #[test]
    fn ipv6_udp_fragment_and_extension_headers() {
        let v6 = |next_header| Network::Ipv6 { next_header };
        assert_eq!(verdict(&spec(v6(IPPROTO_UDP), &[], LISTEN)), MATCHED);
        assert_eq!(
            verdict(&spec(v6(IPPROTO_UDP), &[], 53)),
            Verdict::NotMatched
        );
        assert_eq!(
            verdict(&spec(v6(IPV6_NEXT_HEADER_FRAGMENT), &[], LISTEN)),
            Verdict::Fragment
        );
        // Hop-by-hop, routing, destination options: passed, not parsed.
        for next_header in [0, 43, 60] {
            assert_eq!(
                verdict(&spec(v6(next_header), &[], LISTEN)),
                Verdict::NotMatched
            );
        }
    }

    #[test]
    fn impossible_versions_and_ihl_are_malformed() {
        let (mut buf, len) = frame(&spec(ipv4_udp(), &[], LISTEN));
        buf[ETH_HEADER_LEN] = 0x44; // IHL 4
        assert_eq!(summary(classify(&buf[..len], listen)), Verdict::Malformed);
        buf[ETH_HEADER_LEN] = 0x65; // version 6 under the IPv4 ethertype
        assert_eq!(summary(classify(&buf[..len], listen)), Verdict::Malformed);
        let (mut buf, len) = frame(&spec(Network::Ipv6 { next_header: 17 }, &[], LISTEN));
        buf[ETH_HEADER_LEN] = 0x40;
        assert_eq!(summary(classify(&buf[..len], listen)), Verdict::Malformed);
    }

    #[test]
    fn every_truncation_of_a_matching_frame_is_malformed() {
        let tags = [ETHERTYPE_QINQ, ETHERTYPE_VLAN];
        for network in [
            ipv4_udp(),
            Network::Ipv4 {
                options_words: 3,
                flags_fragment_offset: 0,
                protocol: IPPROTO_UDP,
            },
            Network::Ipv6 { next_header: 17 },
        ] {
            let mut spec = spec(network, &tags, LISTEN);
            spec.payload_len = 0;
            let (buf, len) = frame(&spec);
            assert_eq!(summary(classify(&buf[..len], listen)), MATCHED);
            for cut in 0..len {
                assert_eq!(
                    summary(classify(&buf[..cut], listen)),
                    Verdict::Malformed,
                    "{network:?} cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic sweep: every prefix of pseudo-random frames whose ethertype
        // slots are forced to interesting values.
        let mut state: u32 = 0x1234_5678;
        let mut buf = [0u8; 128];
        for round in 0..2000 {
            for byte in buf.iter_mut() {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                *byte = state as u8;
            }
            let types = [
                ETHERTYPE_IPV4,
                ETHERTYPE_IPV6,
                ETHERTYPE_VLAN,
                ETHERTYPE_QINQ,
            ];
            buf[12..14].copy_from_slice(&types[round % 4].to_be_bytes());
            buf[16..18].copy_from_slice(&types[(round / 4) % 4].to_be_bytes());
            let len = round % 128;
            let verdict = summary(classify(&buf[..len], |_| true));
            if len < ETH_HEADER_LEN {
                assert_eq!(verdict, Verdict::Malformed);
            }
        }
    }

    #[test]
    fn emit_rejects_what_it_cannot_encode() {
        let mut small = [0u8; 20];
        assert_eq!(emit(&spec(ipv4_udp(), &[], LISTEN), &mut small), None);
        let too_many = Network::Ipv4 {
            options_words: 11,
            flags_fragment_offset: 0,
            protocol: IPPROTO_UDP,
        };
        let mut buf = [0u8; 256];
        assert_eq!(emit(&spec(too_many, &[], LISTEN), &mut buf), None);
    }

    #[test]
    fn matches_carry_source_and_udp_offset() {
        let (buf, len) = frame(&spec(ipv4_udp(), &[ETHERTYPE_VLAN], LISTEN));
        assert_eq!(
            classify(&buf[..len], listen),
            Verdict::Matched {
                port: LISTEN,
                source: SourceAddr::V4([192, 0, 2, 2]),
                udp_offset: ETH_HEADER_LEN + VLAN_TAG_LEN + IPV4_MIN_HEADER_LEN,
            }
        );
        let (buf, len) = frame(&spec(Network::Ipv6 { next_header: 17 }, &[], LISTEN));
        let mut v6 = [0u8; 16];
        v6[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        v6[15] = 2;
        assert_eq!(
            classify(&buf[..len], listen),
            Verdict::Matched {
                port: LISTEN,
                source: SourceAddr::V6(v6),
                udp_offset: ETH_HEADER_LEN + IPV6_HEADER_LEN,
            }
        );
    }

    #[test]
    fn udp_datagram_finds_the_payload_without_padding() {
        let network = Network::Ipv4 {
            options_words: 2,
            flags_fragment_offset: 0,
            protocol: IPPROTO_UDP,
        };
        let (mut buf, len) = frame(&spec(network, &[ETHERTYPE_QINQ, ETHERTYPE_VLAN], LISTEN));
        let payload_start = len - 4;
        buf[payload_start..len].copy_from_slice(b"flow");
        // Ethernet padding after the datagram is not payload.
        let padded = len + 6;
        let datagram = udp_datagram(&buf[..padded], listen).unwrap();
        assert_eq!(datagram.src_port, 40000);
        assert_eq!(datagram.dst_port, LISTEN);
        assert_eq!(datagram.source, SourceAddr::V4([192, 0, 2, 2]));
        assert_eq!(&buf[datagram.payload], b"flow");
        assert_eq!(
            udp_datagram(&buf[..len], |_| false),
            Err(FrameError::NotMatched)
        );
        // A UDP length past the frame end, and one below the header length.
        let length_at = payload_start - UDP_HEADER_LEN + 4;
        buf[length_at..length_at + 2].copy_from_slice(&100u16.to_be_bytes());
        assert_eq!(
            udp_datagram(&buf[..len], listen),
            Err(FrameError::BadUdpLength)
        );
        buf[length_at..length_at + 2].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(
            udp_datagram(&buf[..len], listen),
            Err(FrameError::BadUdpLength)
        );
        for cut in 0..len {
            assert!(udp_datagram(&buf[..cut], listen).is_err());
        }
    }

    #[test]
    fn verdicts_map_to_distinct_counters() {
        assert_eq!(MATCHED.counter(), Counter::Matched);
        assert_eq!(Verdict::NotMatched.counter(), Counter::PassedNotMatched);
        assert_eq!(Verdict::Fragment.counter(), Counter::Fragments);
        assert_eq!(Verdict::Malformed.counter(), Counter::Malformed);
    }
}
