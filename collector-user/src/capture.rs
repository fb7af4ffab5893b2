//! Capture files → UDP datagrams: the packet source behind `collector replay` and the corpus tests.
//!
//! This module owns two layers, both sans-decoder (they know nothing of NetFlow or sFlow):
//! - [`CaptureReader`]: pcap (microsecond and nanosecond magic, either byte order) and pcapng
//!   (sections of either byte order, several interfaces with their own link type, `if_tsresol` and
//!   `if_tsoffset`; enhanced, simple and obsolete packet blocks) read as a stream of [`Frame`]s through
//!   one reusable buffer. A block or record larger than [`MAX_BLOCK_LEN`] is refused, so a corrupt
//!   length never turns into a huge allocation.
//! - [`Dissector`]: a frame's link layer (Ethernet with any number of 802.1Q/802.1ad tags up to
//!   [`MAX_VLAN_TAGS`], Linux cooked SLL and SLL2, raw IP, BSD loopback/null) → IPv4 (any IHL) or IPv6
//!   (hop-by-hop, routing, destination options and AH headers walked) → UDP. IPv4 and IPv6 fragments
//!   are reassembled in a bounded table ([`MAX_PENDING_DATAGRAMS`] datagrams, [`MAX_FRAGMENTS`] pieces
//!   each, [`REASSEMBLY_TIMEOUT_NS`] of capture time): a replayed capture of big IPFIX datagrams decodes
//!   like the socket path, where the kernel reassembles. Everything that does not end as a UDP datagram
//!   is counted under a [`SkipReason`], never fatal. UDP checksums are not verified: datagrams captured
//!   on the sending host (loopback, veth) carry partial checksums.
//!
//! Why not the `pcap-file` crate: its pcapng reader hands out blocks but leaves link types per
//! interface, `if_tsresol` scaling and obsolete packet blocks to the caller, and its readers allocate
//! per packet; what is left is ~200 lines of format parsing that, written here, reports corrupt files
//! as named errors through one bounded buffer. There is no third-party format code to audit.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Link-layer header types (tcpdump.org LINKTYPE_* values) that [`Dissector`] unwraps.
pub mod linktype {
    /// BSD loopback: 4-byte address family in the capturing host's byte order.
    pub const NULL: u32 = 0;
    pub const ETHERNET: u32 = 1;
    /// DLT_RAW as written by most systems (LINKTYPE_RAW is 101).
    pub const DLT_RAW_12: u32 = 12;
    /// DLT_RAW as written by OpenBSD.
    pub const DLT_RAW_14: u32 = 14;
    /// Raw IPv4 or IPv6, told apart by the version nibble.
    pub const RAW: u32 = 101;
    /// OpenBSD loopback: 4-byte address family in network byte order.
    pub const LOOP: u32 = 108;
    /// Linux cooked capture v1 (16-byte header, `tcpdump -i any` before libpcap 1.10).
    pub const LINUX_SLL: u32 = 113;
    pub const IPV4: u32 = 228;
    pub const IPV6: u32 = 229;
    /// Linux cooked capture v2 (20-byte header).
    pub const LINUX_SLL2: u32 = 276;
}

/// Largest pcap record or pcapng block accepted (tcpdump's default snaplen is 256 KiB).
pub const MAX_BLOCK_LEN: usize = 1 << 20;
/// Largest number of interfaces one pcapng section may describe.
pub const MAX_INTERFACES: usize = 1024;
/// VLAN tags (802.1Q, 802.1ad, old QinQ 0x9100) unwrapped in front of the IP header.
pub const MAX_VLAN_TAGS: usize = 4;
/// IPv6 extension headers walked before giving up on finding the transport header.
pub const MAX_IPV6_EXTENSION_HEADERS: usize = 8;
/// Fragmented datagrams held at once; a new one beyond this evicts the oldest (counted).
pub const MAX_PENDING_DATAGRAMS: usize = 64;
/// Pieces accepted for one fragmented datagram.
pub const MAX_FRAGMENTS: usize = 128;
/// A fragmented datagram not completed within this much capture time is dropped (counted).
pub const REASSEMBLY_TIMEOUT_NS: u64 = 30_000_000_000;

const PCAP_MAGIC_MICROS: u32 = 0xa1b2_c3d4;
const PCAP_MAGIC_NANOS: u32 = 0xa1b2_3c4d;
const PCAPNG_SHB: u32 = 0x0a0d_0d0a;
const PCAPNG_BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;
const PCAPNG_IDB: u32 = 1;
const PCAPNG_PB: u32 = 2;
const PCAPNG_SPB: u32 = 3;
const PCAPNG_EPB: u32 = 6;
const OPT_END: u16 = 0;
const OPT_IF_TSRESOL: u16 = 9;
const OPT_IF_TSOFFSET: u16 = 14;

/// Why a capture file could not be read further.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The OS error is part of the message (not a separate `source`, which `{:#}` would print a
    /// second time).
    #[error("reading the capture: {0}")]
    Io(io::Error),
    #[error("not a pcap or pcapng file (first word {0:#010x})")]
    UnknownFormat(u32),
    #[error("the capture ends inside a {0}")]
    Truncated(&'static str),
    #[error("a {what} of {len} bytes exceeds the {MAX_BLOCK_LEN}-byte limit")]
    TooLarge { what: &'static str, len: u64 },
    #[error("malformed pcapng block: {0}")]
    BadBlock(&'static str),
    #[error("a packet refers to pcapng interface {0}, which the section did not describe")]
    UnknownInterface(u32),
}

impl From<io::Error> for CaptureError {
    fn from(e: io::Error) -> Self {
        CaptureError::Io(e)
    }
}

/// One captured frame, borrowed from the reader's buffer until the next call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// LINKTYPE_* of the interface the frame was captured on (see [`linktype`]).
    pub linktype: u32,
    /// Capture timestamp, ns since the Unix epoch (0 for pcapng simple packet blocks, which have none).
    pub ts_ns: u64,
    /// Length of the frame on the wire; more than `data.len()` when the snaplen cut it.
    pub orig_len: u32,
    pub data: &'a [u8],
}

/// How a pcapng interface's timestamps are scaled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TsResolution {
    /// Units of 10^-n seconds.
    Decimal(u8),
    /// Units of 2^-n seconds.
    Binary(u8),
}

impl TsResolution {
    fn to_ns(self, units: u64) -> u64 {
        let ns = match self {
            TsResolution::Decimal(n) if n <= 9 => u128::from(units) * 10u128.pow(u32::from(9 - n)),
            TsResolution::Decimal(n) => {
                u128::from(units) / 10u128.checked_pow(u32::from(n - 9)).unwrap_or(u128::MAX)
            }
            TsResolution::Binary(n) => (u128::from(units) * 1_000_000_000) >> u32::from(n).min(127),
        };
        u64::try_from(ns).unwrap_or(u64::MAX)
    }
}

#[derive(Clone, Copy, Debug)]
struct Interface {
    linktype: u32,
    resolution: TsResolution,
    /// `if_tsoffset`: seconds added to every timestamp.
    offset_s: i64,
}

#[derive(Clone, Copy, Debug)]
enum Format {
    Pcap {
        big_endian: bool,
        nanos: bool,
        linktype: u32,
    },
    PcapNg {
        big_endian: bool,
    },
}

/// Streams [`Frame`]s out of a pcap or pcapng file.
pub struct CaptureReader<R> {
    src: R,
    format: Format,
    /// pcapng interfaces of the current section.
    interfaces: Vec<Interface>,
    /// The current record or block body; reused for every frame.
    buf: Vec<u8>,
}

impl CaptureReader<io::BufReader<std::fs::File>> {
    /// Open a capture file.
    pub fn open(path: &std::path::Path) -> Result<Self, CaptureError> {
        let file = std::fs::File::open(path)?;
        Self::new(io::BufReader::with_capacity(1 << 16, file))
    }
}

impl<R: Read> CaptureReader<R> {
    /// Read the file header (pcap) or first section header (pcapng).
    pub fn new(mut src: R) -> Result<Self, CaptureError> {
        let mut head = [0u8; 4];
        if read_full(&mut src, &mut head)? != 4 {
            return Err(CaptureError::Truncated("file header"));
        }
        let magic_be = u32::from_be_bytes(head);
        let magic_le = u32::from_le_bytes(head);
        let mut reader = CaptureReader {
            src,
            format: Format::PcapNg { big_endian: false },
            interfaces: Vec::new(),
            buf: Vec::new(),
        };
        if magic_be == PCAPNG_SHB {
            reader.read_section_header()?;
            return Ok(reader);
        }
        let (big_endian, nanos) = match (magic_be, magic_le) {
            (PCAP_MAGIC_MICROS, _) => (true, false),
            (PCAP_MAGIC_NANOS, _) => (true, true),
            (_, PCAP_MAGIC_MICROS) => (false, false),
            (_, PCAP_MAGIC_NANOS) => (false, true),
            _ => return Err(CaptureError::UnknownFormat(magic_be)),
        };
        let mut rest = [0u8; 20];
        if read_full(&mut reader.src, &mut rest)? != rest.len() {
            return Err(CaptureError::Truncated("pcap file header"));
        }
        // version (2+2), thiszone, sigfigs, snaplen, then the link type; its top 6 bits may hold an FCS length.
        let linktype = read_u32(&rest[16..20], big_endian) & 0x03ff_ffff;
        reader.format = Format::Pcap {
            big_endian,
            nanos,
            linktype,
        };
        Ok(reader)
    }

    /// The next frame, or `None` at a clean end of file.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, CaptureError> {
        match self.format {
            Format::Pcap {
                big_endian,
                nanos,
                linktype,
            } => self.next_pcap_record(big_endian, nanos, linktype),
            Format::PcapNg { .. } => self.next_pcapng_packet(),
        }
    }

    fn next_pcap_record(
        &mut self,
        big_endian: bool,
        nanos: bool,
        linktype: u32,
    ) -> Result<Option<Frame<'_>>, CaptureError> {
        let mut head = [0u8; 16];
        match read_full(&mut self.src, &mut head)? {
            0 => return Ok(None),
            16 => {}
            _ => return Err(CaptureError::Truncated("pcap record header")),
        }
        let secs = u64::from(read_u32(&head[0..4], big_endian));
        let frac = u64::from(read_u32(&head[4..8], big_endian));
        let caplen = read_u32(&head[8..12], big_endian);
        let orig_len = read_u32(&head[12..16], big_endian);
        let len = checked_len(u64::from(caplen), "pcap record")?;
        self.fill_buf(len, "pcap record")?;
        let ts_ns = secs * 1_000_000_000 + if nanos { frac } else { frac * 1000 };
        Ok(Some(Frame {
            linktype,
            ts_ns,
            orig_len,
            data: &self.buf,
        }))
    }

    fn big_endian(&self) -> bool {
        match self.format {
            Format::Pcap { big_endian, .. } | Format::PcapNg { big_endian } => big_endian,
        }
    }

    /// Read a section header block whose first word (the block type) has been consumed.
    fn read_section_header(&mut self) -> Result<(), CaptureError> {
        let mut head = [0u8; 8];
        if read_full(&mut self.src, &mut head)? != head.len() {
            return Err(CaptureError::Truncated("pcapng section header"));
        }
        let big_endian = match (
            u32::from_be_bytes(head_word(&head, 4)),
            u32::from_le_bytes(head_word(&head, 4)),
        ) {
            (PCAPNG_BYTE_ORDER_MAGIC, _) => true,
            (_, PCAPNG_BYTE_ORDER_MAGIC) => false,
            _ => {
                return Err(CaptureError::BadBlock(
                    "section header without byte-order magic",
                ));
            }
        };
        self.format = Format::PcapNg { big_endian };
        self.interfaces.clear();
        let total = read_u32(&head[0..4], big_endian);
        // Already read: type, length, byte-order magic. The rest ends with the repeated length.
        let body = block_body_len(total, 12)?;
        self.fill_buf(body, "pcapng section header")?;
        check_trailer(&self.buf, total, big_endian)
    }

    fn next_pcapng_packet(&mut self) -> Result<Option<Frame<'_>>, CaptureError> {
        loop {
            let mut head = [0u8; 8];
            match read_full(&mut self.src, &mut head)? {
                0 => return Ok(None),
                8 => {}
                _ => return Err(CaptureError::Truncated("pcapng block header")),
            }
            let block_type_be = u32::from_be_bytes(head_word(&head, 0));
            if block_type_be == PCAPNG_SHB {
                // A new section: its byte order may differ. Re-read from the length word.
                let mut rest = [0u8; 4];
                if read_full(&mut self.src, &mut rest)? != rest.len() {
                    return Err(CaptureError::Truncated("pcapng section header"));
                }
                let big_endian = match (u32::from_be_bytes(rest), u32::from_le_bytes(rest)) {
                    (PCAPNG_BYTE_ORDER_MAGIC, _) => true,
                    (_, PCAPNG_BYTE_ORDER_MAGIC) => false,
                    _ => {
                        return Err(CaptureError::BadBlock(
                            "section header without byte-order magic",
                        ));
                    }
                };
                self.format = Format::PcapNg { big_endian };
                self.interfaces.clear();
                let total = read_u32(&head[4..8], big_endian);
                let body = block_body_len(total, 12)?;
                self.fill_buf(body, "pcapng section header")?;
                check_trailer(&self.buf, total, big_endian)?;
                continue;
            }
            let big_endian = self.big_endian();
            let block_type = read_u32(&head[0..4], big_endian);
            let total = read_u32(&head[4..8], big_endian);
            let body = block_body_len(total, 8)?;
            self.fill_buf(body, "pcapng block")?;
            check_trailer(&self.buf, total, big_endian)?;
            let body_len = body - 4;
            match block_type {
                PCAPNG_IDB => self.add_interface(body_len, big_endian)?,
                PCAPNG_EPB | PCAPNG_PB => {
                    let b = self.buf.get(..body_len).unwrap_or_default();
                    let (iface, ts_hi, ts_lo, caplen, orig_len) = if block_type == PCAPNG_EPB {
                        if b.len() < 20 {
                            return Err(CaptureError::BadBlock("enhanced packet block too short"));
                        }
                        (
                            read_u32(&b[0..4], big_endian),
                            read_u32(&b[4..8], big_endian),
                            read_u32(&b[8..12], big_endian),
                            read_u32(&b[12..16], big_endian),
                            read_u32(&b[16..20], big_endian),
                        )
                    } else {
                        if b.len() < 20 {
                            return Err(CaptureError::BadBlock("packet block too short"));
                        }
                        (
                            u32::from(read_u16(&b[0..2], big_endian)),
                            read_u32(&b[4..8], big_endian),
                            read_u32(&b[8..12], big_endian),
                            read_u32(&b[12..16], big_endian),
                            read_u32(&b[16..20], big_endian),
                        )
                    };
                    let Some(interface) = self.interfaces.get(iface as usize).copied() else {
                        return Err(CaptureError::UnknownInterface(iface));
                    };
                    let end = 20usize.saturating_add(caplen as usize);
                    if end > b.len() {
                        return Err(CaptureError::BadBlock("packet data runs past its block"));
                    }
                    let units = (u64::from(ts_hi) << 32) | u64::from(ts_lo);
                    let ts_ns = interface
                        .resolution
                        .to_ns(units)
                        .saturating_add_signed(interface.offset_s.saturating_mul(1_000_000_000));
                    return Ok(Some(Frame {
                        linktype: interface.linktype,
                        ts_ns,
                        orig_len,
                        data: &self.buf[20..end],
                    }));
                }
                PCAPNG_SPB => {
                    let b = self.buf.get(..body_len).unwrap_or_default();
                    let Some(interface) = self.interfaces.first().copied() else {
                        return Err(CaptureError::UnknownInterface(0));
                    };
                    let Some(len_bytes) = b.get(0..4) else {
                        return Err(CaptureError::BadBlock("simple packet block too short"));
                    };
                    let orig_len = read_u32(len_bytes, big_endian);
                    // Captured length: the original length cut to what the block holds.
                    let end = (orig_len as usize).saturating_add(4).min(b.len());
                    return Ok(Some(Frame {
                        linktype: interface.linktype,
                        ts_ns: 0,
                        orig_len,
                        data: &self.buf[4..end],
                    }));
                }
                _ => {} // name resolution, statistics, custom, ...: not needed to find datagrams.
            }
        }
    }

    fn add_interface(&mut self, body_len: usize, big_endian: bool) -> Result<(), CaptureError> {
        let b = self.buf.get(..body_len).unwrap_or_default();
        if b.len() < 8 {
            return Err(CaptureError::BadBlock(
                "interface description block too short",
            ));
        }
        if self.interfaces.len() >= MAX_INTERFACES {
            return Err(CaptureError::BadBlock("too many interfaces in one section"));
        }
        let mut interface = Interface {
            linktype: u32::from(read_u16(&b[0..2], big_endian)),
            resolution: TsResolution::Decimal(6),
            offset_s: 0,
        };
        let mut options = &b[8..];
        while let Some(head) = options.get(..4) {
            let code = read_u16(&head[0..2], big_endian);
            let len = usize::from(read_u16(&head[2..4], big_endian));
            let Some(value) = options.get(4..4 + len) else {
                return Err(CaptureError::BadBlock(
                    "interface option runs past its block",
                ));
            };
            match (code, value) {
                (OPT_END, _) => break,
                (OPT_IF_TSRESOL, &[v]) => {
                    interface.resolution = if v & 0x80 == 0 {
                        TsResolution::Decimal(v)
                    } else {
                        TsResolution::Binary(v & 0x7f)
                    };
                }
                (OPT_IF_TSOFFSET, v) if v.len() == 8 => {
                    let word = if big_endian {
                        i64::from_be_bytes(head_word8(v))
                    } else {
                        i64::from_le_bytes(head_word8(v))
                    };
                    interface.offset_s = word;
                }
                _ => {}
            }
            let padded = (4 + len).next_multiple_of(4);
            options = options.get(padded..).unwrap_or_default();
        }
        self.interfaces.push(interface);
        Ok(())
    }

    fn fill_buf(&mut self, len: usize, what: &'static str) -> Result<(), CaptureError> {
        self.buf.resize(len, 0);
        if read_full(&mut self.src, &mut self.buf)? != len {
            return Err(CaptureError::Truncated(what));
        }
        Ok(())
    }
}

/// Bytes left in a pcapng block of `total` bytes after `consumed` were read (trailer included).
fn block_body_len(total: u32, consumed: usize) -> Result<usize, CaptureError> {
    let total_len = checked_len(u64::from(total), "pcapng block")?;
    if !total_len.is_multiple_of(4) || total_len < consumed + 4 {
        return Err(CaptureError::BadBlock(
            "block length not a multiple of 4 or too short",
        ));
    }
    Ok(total_len - consumed)
}

fn check_trailer(body: &[u8], total: u32, big_endian: bool) -> Result<(), CaptureError> {
    match body.len().checked_sub(4).and_then(|at| body.get(at..)) {
        Some(trailer) if read_u32(trailer, big_endian) == total => Ok(()),
        _ => Err(CaptureError::BadBlock("trailing block length differs")),
    }
}

fn checked_len(len: u64, what: &'static str) -> Result<usize, CaptureError> {
    if len > MAX_BLOCK_LEN as u64 {
        return Err(CaptureError::TooLarge { what, len });
    }
    Ok(len as usize)
}

/// Read until `buf` is full or the source ends; returns the bytes read.
fn read_full(src: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match src.read(&mut buf[done..]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

fn head_word(b: &[u8; 8], at: usize) -> [u8; 4] {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    w
}

fn head_word8(b: &[u8]) -> [u8; 8] {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[..8]);
    w
}

/// `b` must hold at least 4 bytes (callers slice exactly).
fn read_u32(b: &[u8], big_endian: bool) -> u32 {
    let w = [b[0], b[1], b[2], b[3]];
    if big_endian {
        u32::from_be_bytes(w)
    } else {
        u32::from_le_bytes(w)
    }
}

/// `b` must hold at least 2 bytes (callers slice exactly).
fn read_u16(b: &[u8], big_endian: bool) -> u16 {
    let w = [b[0], b[1]];
    if big_endian {
        u16::from_be_bytes(w)
    } else {
        u16::from_le_bytes(w)
    }
}

/// Writes a classic pcap file (nanosecond timestamps): tests and tools that capture datagrams themselves.
pub struct PcapWriter<W: Write> {
    dst: W,
}

impl<W: Write> PcapWriter<W> {
    /// Write the file header for frames of `linktype` (see [`linktype`]).
    pub fn new(mut dst: W, linktype: u32) -> io::Result<Self> {
        let mut head = [0u8; 24];
        head[0..4].copy_from_slice(&PCAP_MAGIC_NANOS.to_le_bytes());
        head[4..6].copy_from_slice(&2u16.to_le_bytes());
        head[6..8].copy_from_slice(&4u16.to_le_bytes());
        head[16..20].copy_from_slice(&(MAX_BLOCK_LEN as u32).to_le_bytes());
        head[20..24].copy_from_slice(&linktype.to_le_bytes());
        dst.write_all(&head)?;
        Ok(PcapWriter { dst })
    }

    /// Append one frame captured at `ts_ns` (ns since the Unix epoch).
    pub fn write_frame(&mut self, ts_ns: u64, data: &[u8]) -> io::Result<()> {
        let len = u32::try_from(data.len())
            .ok()
            .filter(|&l| l as usize <= MAX_BLOCK_LEN)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
        let secs = u32::try_from(ts_ns / 1_000_000_000)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "timestamp past 2106"))?;
        let mut head = [0u8; 16];
        head[0..4].copy_from_slice(&secs.to_le_bytes());
        head[4..8].copy_from_slice(&((ts_ns % 1_000_000_000) as u32).to_le_bytes());
        head[8..12].copy_from_slice(&len.to_le_bytes());
        head[12..16].copy_from_slice(&len.to_le_bytes());
        self.dst.write_all(&head)?;
        self.dst.write_all(data)
    }

    /// Flush and hand back the destination.
    pub fn finish(mut self) -> io::Result<W> {
        self.dst.flush()?;
        Ok(self.dst)
    }
}

// ---------------------------------------------------------------------------------------------
// Frames → UDP datagrams
// ---------------------------------------------------------------------------------------------

macro_rules! skip_reasons {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// Why a frame produced no UDP datagram.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum SkipReason {
            $($(#[$doc])* $variant,)*
        }

        impl SkipReason {
            /// Every reason, in index order.
            pub const ALL: &'static [SkipReason] = &[$(SkipReason::$variant,)*];
            pub const COUNT: usize = Self::ALL.len();

            /// Stable snake_case name (summaries, metrics).
            pub const fn name(self) -> &'static str {
                match self {
                    $(SkipReason::$variant => $name,)*
                }
            }

            pub const fn index(self) -> usize {
                self as usize
            }
        }
    };
}

skip_reasons! {
    /// The frame's link type is none of [`linktype`].
    UnsupportedLinkType => "unsupported_link_type",
    /// The link layer carries something other than IPv4/IPv6 (ARP, LLDP, too many VLAN tags, ...).
    NotIp => "not_ip",
    /// An IP packet whose transport is not UDP (TCP, ICMP, ...).
    NotUdp => "not_udp",
    /// The frame ends inside a header, or the snaplen cut the UDP payload.
    TruncatedFrame => "truncated_frame",
    /// IPv4 IHL below 5, total length below the header, or more IPv6 extension headers than we walk.
    BadIpHeader => "bad_ip_header",
    /// The UDP length is below 8 or beyond the IP payload.
    BadUdpLength => "bad_udp_length",
    /// Fragments that contradict each other (two different ends, a piece past 64 KiB, too many pieces).
    BadFragment => "bad_fragment",
    /// A fragmented datagram evicted because [`MAX_PENDING_DATAGRAMS`] were already held.
    ReassemblyOverflow => "reassembly_overflow",
    /// A fragmented datagram not completed within [`REASSEMBLY_TIMEOUT_NS`] of capture time.
    ReassemblyTimeout => "reassembly_timeout",
    /// A fragmented datagram still incomplete when the capture ended.
    ReassemblyIncomplete => "reassembly_incomplete",
}

/// A UDP datagram found in a frame (or reassembled from several).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpDatagram<'a> {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// Capture timestamp of the frame (of the last fragment when reassembled).
    pub ts_ns: u64,
    pub payload: &'a [u8],
}

/// What one frame turned into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dissected<'a> {
    Datagram(UdpDatagram<'a>),
    /// A fragment, held until its datagram is complete.
    FragmentHeld,
    /// No datagram; the reason has been counted.
    Skipped(SkipReason),
}

/// What a [`Dissector`] has seen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DissectStats {
    pub frames: u64,
    /// UDP datagrams handed out, reassembled ones included.
    pub datagrams: u64,
    /// Of `datagrams`, those reassembled from fragments.
    pub reassembled: u64,
    /// Fragments held (each later completes a datagram or is dropped with it).
    pub fragments: u64,
    /// Frames (or, for reassembly reasons, fragmented datagrams) that produced no datagram.
    pub skipped: [u64; SkipReason::COUNT],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FragmentKey {
    src: IpAddr,
    dst: IpAddr,
    /// IPv4 identification (16 bits) or IPv6 fragment identification (32 bits).
    id: u32,
    /// IPv4 protocol, or the IPv6 next header after the fragment header.
    proto: u8,
}

#[derive(Debug)]
struct PendingDatagram {
    key: FragmentKey,
    first_ts_ns: u64,
    /// Unfragmentable bytes up to here are not kept: `data` starts at the transport header.
    data: Vec<u8>,
    /// Received byte ranges of `data`.
    pieces: Vec<(u32, u32)>,
    /// Known once the last fragment (more-fragments clear) has arrived.
    total_len: Option<u32>,
}

/// Largest reassembled payload (the IPv4 and IPv6 total length fields are 16 bits).
const MAX_REASSEMBLED_LEN: u32 = 65_535;

/// Turns frames into UDP datagrams, reassembling IP fragments in a bounded table.
#[derive(Debug, Default)]
pub struct Dissector {
    pub stats: DissectStats,
    pending: Vec<PendingDatagram>,
    /// The last reassembled transport payload (handed out by reference).
    assembled: Vec<u8>,
}

/// Network-layer facts the transport step needs.
struct IpPacket<'a> {
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    /// Transport header and payload (of this fragment, when fragmented).
    payload: &'a [u8],
    /// (identification, byte offset, more fragments) when this packet is a fragment.
    fragment: Option<(u32, u32, bool)>,
}

/// What one frame turned into, before counting; a reassembled payload is a range of `assembled`.
enum Step<'f> {
    Datagram(UdpDatagram<'f>),
    Reassembled {
        src: SocketAddr,
        dst: SocketAddr,
        payload: std::ops::Range<usize>,
    },
    Held,
    Skipped(SkipReason),
}

impl Dissector {
    pub fn new() -> Self {
        Self::default()
    }

    /// Find the UDP datagram in `frame`, counting what is skipped.
    pub fn dissect<'a>(&'a mut self, frame: &Frame<'a>) -> Dissected<'a> {
        self.stats.frames += 1;
        match self.dissect_uncounted(frame) {
            Step::Datagram(d) => {
                self.stats.datagrams += 1;
                Dissected::Datagram(d)
            }
            Step::Reassembled { src, dst, payload } => {
                self.stats.datagrams += 1;
                self.stats.reassembled += 1;
                Dissected::Datagram(UdpDatagram {
                    src,
                    dst,
                    ts_ns: frame.ts_ns,
                    payload: self.assembled.get(payload).unwrap_or_default(),
                })
            }
            Step::Held => {
                self.stats.fragments += 1;
                Dissected::FragmentHeld
            }
            Step::Skipped(reason) => {
                self.stats.skipped[reason.index()] += 1;
                Dissected::Skipped(reason)
            }
        }
    }

    /// End of capture: count fragmented datagrams still incomplete and forget them.
    pub fn finish(&mut self) {
        let n = self.pending.len() as u64;
        self.stats.skipped[SkipReason::ReassemblyIncomplete.index()] += n;
        self.pending.clear();
    }

    fn dissect_uncounted<'f>(&mut self, frame: &Frame<'f>) -> Step<'f> {
        let ip = match network_layer(frame) {
            Ok(ip) => ip,
            Err(reason) => return Step::Skipped(reason),
        };
        if ip.proto != 17 {
            return Step::Skipped(SkipReason::NotUdp);
        }
        if (frame.orig_len as usize) > frame.data.len() {
            // The snaplen cut the frame; a cut UDP payload would decode as garbage.
            return Step::Skipped(SkipReason::TruncatedFrame);
        }
        let Some((id, offset, more)) = ip.fragment else {
            return match udp_bounds(ip.payload) {
                Ok((sport, dport, range)) => Step::Datagram(UdpDatagram {
                    src: SocketAddr::new(ip.src, sport),
                    dst: SocketAddr::new(ip.dst, dport),
                    ts_ns: frame.ts_ns,
                    payload: ip.payload.get(range).unwrap_or_default(),
                }),
                Err(reason) => Step::Skipped(reason),
            };
        };
        let key = FragmentKey {
            src: ip.src,
            dst: ip.dst,
            id,
            proto: ip.proto,
        };
        match self.add_fragment(key, frame.ts_ns, offset, more, ip.payload) {
            Ok(false) => Step::Held,
            Ok(true) => match udp_bounds(&self.assembled) {
                Ok((sport, dport, payload)) => Step::Reassembled {
                    src: SocketAddr::new(key.src, sport),
                    dst: SocketAddr::new(key.dst, dport),
                    payload,
                },
                Err(reason) => Step::Skipped(reason),
            },
            Err(reason) => Step::Skipped(reason),
        }
    }

    /// Store one fragment; `Ok(true)` when its datagram is complete (then in `self.assembled`).
    fn add_fragment(
        &mut self,
        key: FragmentKey,
        ts_ns: u64,
        offset: u32,
        more: bool,
        bytes: &[u8],
    ) -> Result<bool, SkipReason> {
        // Age out what the capture clock has left behind.
        let before = self.pending.len();
        self.pending
            .retain(|p| ts_ns.saturating_sub(p.first_ts_ns) <= REASSEMBLY_TIMEOUT_NS);
        self.stats.skipped[SkipReason::ReassemblyTimeout.index()] +=
            (before - self.pending.len()) as u64;

        let end = offset.saturating_add(bytes.len() as u32);
        let bad = end > MAX_REASSEMBLED_LEN || (more && !bytes.len().is_multiple_of(8));
        let at = match self.pending.iter().position(|p| p.key == key) {
            Some(at) => at,
            None if bad => return Err(SkipReason::BadFragment),
            None => {
                if self.pending.len() >= MAX_PENDING_DATAGRAMS {
                    self.pending.remove(0);
                    self.stats.skipped[SkipReason::ReassemblyOverflow.index()] += 1;
                }
                self.pending.push(PendingDatagram {
                    key,
                    first_ts_ns: ts_ns,
                    data: Vec::new(),
                    pieces: Vec::new(),
                    total_len: None,
                });
                self.pending.len() - 1
            }
        };
        let p = &mut self.pending[at];
        let contradicts = match (p.total_len, more) {
            (Some(total), false) => total != end,
            (Some(total), true) => end > total,
            (None, _) => false,
        };
        if bad || contradicts || p.pieces.len() >= MAX_FRAGMENTS {
            // The whole datagram is unusable: drop it, counted once here.
            self.pending.remove(at);
            return Err(SkipReason::BadFragment);
        }
        if !more {
            if p.pieces.iter().any(|&(_, e)| e > end) {
                self.pending.remove(at);
                return Err(SkipReason::BadFragment);
            }
            p.total_len = Some(end);
        }
        if p.data.len() < end as usize {
            p.data.resize(end as usize, 0);
        }
        p.data[offset as usize..end as usize].copy_from_slice(bytes);
        p.pieces.push((offset, end));
        let Some(total) = p.total_len else {
            return Ok(false);
        };
        p.pieces.sort_unstable();
        let mut covered = 0u32;
        for &(start, stop) in &p.pieces {
            if start > covered {
                return Ok(false);
            }
            covered = covered.max(stop);
        }
        if covered < total {
            return Ok(false);
        }
        let done = self.pending.remove(at);
        self.assembled = done.data;
        self.assembled.truncate(total as usize);
        Ok(true)
    }
}

/// Unwrap the link layer and parse the IP header.
fn network_layer<'a>(frame: &Frame<'a>) -> Result<IpPacket<'a>, SkipReason> {
    let data = frame.data;
    let (ethertype, l3) = match frame.linktype {
        linktype::ETHERNET => {
            let ethertype = be16(data, 12).ok_or(SkipReason::TruncatedFrame)?;
            (ethertype, data.get(14..).unwrap_or_default())
        }
        linktype::LINUX_SLL => {
            let ethertype = be16(data, 14).ok_or(SkipReason::TruncatedFrame)?;
            (ethertype, data.get(16..).unwrap_or_default())
        }
        linktype::LINUX_SLL2 => {
            let ethertype = be16(data, 0).ok_or(SkipReason::TruncatedFrame)?;
            let l3 = data.get(20..).ok_or(SkipReason::TruncatedFrame)?;
            (ethertype, l3)
        }
        linktype::NULL | linktype::LOOP => {
            // The family's byte order depends on the capturing host; the IP version nibble does not.
            let l3 = data.get(4..).ok_or(SkipReason::TruncatedFrame)?;
            return ip_by_version(l3);
        }
        linktype::RAW | linktype::DLT_RAW_12 | linktype::DLT_RAW_14 => return ip_by_version(data),
        linktype::IPV4 => return ipv4(data),
        linktype::IPV6 => return ipv6(data),
        _ => return Err(SkipReason::UnsupportedLinkType),
    };
    let (ethertype, l3) = strip_vlan_tags(ethertype, l3)?;
    match ethertype {
        0x0800 => ipv4(l3),
        0x86dd => ipv6(l3),
        _ => Err(SkipReason::NotIp),
    }
}

/// Skip 802.1Q (0x8100), 802.1ad (0x88a8) and pre-standard QinQ (0x9100) tags.
fn strip_vlan_tags(mut ethertype: u16, mut rest: &[u8]) -> Result<(u16, &[u8]), SkipReason> {
    for _ in 0..=MAX_VLAN_TAGS {
        if !matches!(ethertype, 0x8100 | 0x88a8 | 0x9100) {
            return Ok((ethertype, rest));
        }
        ethertype = be16(rest, 2).ok_or(SkipReason::TruncatedFrame)?;
        rest = rest.get(4..).unwrap_or_default();
    }
    Err(SkipReason::NotIp)
}

fn ip_by_version(l3: &[u8]) -> Result<IpPacket<'_>, SkipReason> {
    match l3.first().map(|b| b >> 4) {
        Some(4) => ipv4(l3),
        Some(6) => ipv6(l3),
        Some(_) => Err(SkipReason::NotIp),
        None => Err(SkipReason::TruncatedFrame),
    }
}

fn ipv4(l3: &[u8]) -> Result<IpPacket<'_>, SkipReason> {
    let Some(h) = l3.get(..20) else {
        return Err(SkipReason::TruncatedFrame);
    };
    if h[0] >> 4 != 4 {
        return Err(SkipReason::BadIpHeader);
    }
    let ihl = usize::from(h[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
    if ihl < 20 || (total != 0 && total < ihl) {
        return Err(SkipReason::BadIpHeader);
    }
    // Total length 0: a segmentation-offloaded packet captured on its sender; take what is there.
    let packet = if total == 0 {
        l3
    } else {
        // Shorter than the total length: cut by the snaplen. Longer: Ethernet padding.
        l3.get(..total).ok_or(SkipReason::TruncatedFrame)?
    };
    let payload = packet.get(ihl..).ok_or(SkipReason::TruncatedFrame)?;
    let flags_offset = u16::from_be_bytes([h[6], h[7]]);
    let more = flags_offset & 0x2000 != 0;
    let offset = u32::from(flags_offset & 0x1fff) * 8;
    let fragment =
        (more || offset != 0).then(|| (u32::from(u16::from_be_bytes([h[4], h[5]])), offset, more));
    Ok(IpPacket {
        src: IpAddr::V4(Ipv4Addr::new(h[12], h[13], h[14], h[15])),
        dst: IpAddr::V4(Ipv4Addr::new(h[16], h[17], h[18], h[19])),
        proto: h[9],
        payload,
        fragment,
    })
}

fn ipv6(l3: &[u8]) -> Result<IpPacket<'_>, SkipReason> {
    let Some(h) = l3.get(..40) else {
        return Err(SkipReason::TruncatedFrame);
    };
    if h[0] >> 4 != 6 {
        return Err(SkipReason::BadIpHeader);
    }
    let payload_len = usize::from(u16::from_be_bytes([h[4], h[5]]));
    let after = l3.get(40..).unwrap_or_default();
    // Payload length 0 (a jumbogram or an offloaded packet): take what is there.
    let mut rest = if payload_len == 0 {
        after
    } else {
        after.get(..payload_len).ok_or(SkipReason::TruncatedFrame)?
    };
    let mut next = h[6];
    let mut fragment = None;
    let mut headers = 0;
    loop {
        let len = match next {
            0 | 43 | 60 => {
                let b = rest.get(..2).ok_or(SkipReason::TruncatedFrame)?;
                (usize::from(b[1]) + 1) * 8
            }
            51 => {
                let b = rest.get(..2).ok_or(SkipReason::TruncatedFrame)?;
                (usize::from(b[1]) + 2) * 4
            }
            44 => {
                let b = rest.get(..8).ok_or(SkipReason::TruncatedFrame)?;
                let word = u16::from_be_bytes([b[2], b[3]]);
                let id = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
                let offset = u32::from(word & 0xfff8);
                let more = word & 1 != 0;
                if offset != 0 || more {
                    // The fragmentable part follows; if it starts with another extension header
                    // instead of UDP, the datagram counts as not_udp.
                    fragment = Some((id, offset, more));
                    next = b[0];
                    rest = &rest[8..];
                    break;
                }
                8 // an atomic fragment: a plain extension header
            }
            _ => break,
        };
        headers += 1;
        if headers > MAX_IPV6_EXTENSION_HEADERS {
            return Err(SkipReason::BadIpHeader);
        }
        next = rest[0];
        rest = rest.get(len..).ok_or(SkipReason::TruncatedFrame)?;
    }
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src.copy_from_slice(&h[8..24]);
    dst.copy_from_slice(&h[24..40]);
    Ok(IpPacket {
        src: IpAddr::V6(Ipv6Addr::from(src)),
        dst: IpAddr::V6(Ipv6Addr::from(dst)),
        proto: next,
        payload: rest,
        fragment,
    })
}

/// Source port, destination port and the payload's byte range of the UDP datagram at the start of `l4`.
fn udp_bounds(l4: &[u8]) -> Result<(u16, u16, std::ops::Range<usize>), SkipReason> {
    let Some(h) = l4.get(..8) else {
        return Err(SkipReason::TruncatedFrame);
    };
    let len = usize::from(u16::from_be_bytes([h[4], h[5]]));
    // Length 0 is legal for IPv6 jumbograms: the datagram is the rest of the IP payload.
    let end = match len {
        0 => l4.len(),
        1..=7 => return Err(SkipReason::BadUdpLength),
        _ if len > l4.len() => return Err(SkipReason::BadUdpLength),
        _ => len,
    };
    Ok((
        u16::from_be_bytes([h[0], h[1]]),
        u16::from_be_bytes([h[2], h[3]]),
        8..end,
    ))
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    let w = b.get(at..at + 2)?;
    Some(u16::from_be_bytes([w[0], w[1]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A little-endian microsecond pcap file with the given link type and frames.
    fn pcap_le_micros(linktype: u32, frames: &[(u32, u32, &[u8])]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&PCAP_MAGIC_MICROS.to_le_bytes());
        f.extend_from_slice(&[2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0]);
        f.extend_from_slice(&linktype.to_le_bytes());
        for (secs, micros, data) in frames {
            f.extend_from_slice(&secs.to_le_bytes());
            f.extend_from_slice(&micros.to_le_bytes());
            f.extend_from_slice(&(data.len() as u32).to_le_bytes());
            f.extend_from_slice(&(data.len() as u32).to_le_bytes());
            f.extend_from_slice(data);
        }
        f
    }

    /// IPv4 (IHL 5, no options) + UDP 10.0.0.1:2055 → 10.0.0.2:9995 with `payload`.
    fn ipv4_udp(payload: &[u8]) -> Vec<u8> {
        let total = (20 + 8 + payload.len()) as u16;
        let udp_len = (8 + payload.len()) as u16;
        let mut p = vec![
            0x45, 0, 0, 0, 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 0x08, 0x07, 0x27,
            0x0b, 0, 0, 0, 0,
        ];
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p[24..26].copy_from_slice(&udp_len.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    fn ethernet(ethertype_and_tags: &[u8], l3: &[u8]) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
        f.extend_from_slice(ethertype_and_tags);
        f.extend_from_slice(l3);
        f
    }

    /// A frame's outcome, owned.
    #[derive(Debug, PartialEq, Eq)]
    enum Owned {
        Datagram(Vec<u8>, u64),
        Held,
        Skipped(SkipReason),
    }

    fn dissect_all(file: &[u8]) -> (Vec<Owned>, Dissector) {
        let mut reader = CaptureReader::new(file).unwrap();
        let mut d = Dissector::new();
        let mut outcomes = Vec::new();
        while let Some(frame) = reader.next_frame().unwrap() {
            outcomes.push(match d.dissect(&frame) {
                Dissected::Datagram(u) => Owned::Datagram(u.payload.to_vec(), u.ts_ns),
                Dissected::FragmentHeld => Owned::Held,
                Dissected::Skipped(r) => Owned::Skipped(r),
            });
        }
        d.finish();
        (outcomes, d)
    }

    fn first_datagram(file: &[u8]) -> (Vec<u8>, SocketAddr, u64) {
        let mut reader = CaptureReader::new(file).unwrap();
        let frame = reader.next_frame().unwrap().unwrap();
        let mut d = Dissector::new();
        match d.dissect(&frame) {
            Dissected::Datagram(u) => (u.payload.to_vec(), u.src, u.ts_ns),
            other => panic!("expected a datagram, got {other:?}"),
        }
    }

    #[test]
    fn pcap_ethernet_udp_with_padding() {
        let mut frame = ethernet(&[0x08, 0x00], &ipv4_udp(b"abc"));
        frame.extend_from_slice(&[0; 15]); // Ethernet padding up to 60 bytes
        let file = pcap_le_micros(linktype::ETHERNET, &[(1_700_000_000, 250_000, &frame)]);
        let (payload, src, ts) = first_datagram(&file);
        assert_eq!(payload, b"abc");
        assert_eq!(src, "10.0.0.1:2055".parse().unwrap());
        assert_eq!(ts, 1_700_000_000_250_000_000);
    }

    #[test]
    fn pcap_big_endian_nanos() {
        let l3 = ipv4_udp(b"xy");
        let mut f = Vec::new();
        f.extend_from_slice(&PCAP_MAGIC_NANOS.to_be_bytes());
        f.extend_from_slice(&[0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);
        f.extend_from_slice(&linktype::RAW.to_be_bytes());
        f.extend_from_slice(&5u32.to_be_bytes());
        f.extend_from_slice(&7u32.to_be_bytes());
        f.extend_from_slice(&(l3.len() as u32).to_be_bytes());
        f.extend_from_slice(&(l3.len() as u32).to_be_bytes());
        f.extend_from_slice(&l3);
        let (payload, _, ts) = first_datagram(&f);
        assert_eq!(payload, b"xy");
        assert_eq!(ts, 5_000_000_007);
    }

    #[test]
    fn qinq_tags_and_ipv4_options() {
        let mut l3 = ipv4_udp(b"opt");
        // IHL 6: insert one 4-byte option (NOPs) and fix the lengths.
        l3[0] = 0x46;
        l3.splice(20..20, [1, 1, 1, 0]);
        let total = l3.len() as u16;
        l3[2..4].copy_from_slice(&total.to_be_bytes());
        let frame = ethernet(
            &[0x88, 0xa8, 0x00, 0x64, 0x81, 0x00, 0x00, 0x0a, 0x08, 0x00],
            &l3,
        );
        let file = pcap_le_micros(linktype::ETHERNET, &[(1, 0, &frame)]);
        assert_eq!(first_datagram(&file).0, b"opt");
    }

    #[test]
    fn linux_cooked_v1_v2_and_loopback() {
        let l3 = ipv4_udp(b"sll");
        let mut sll = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, 0x08, 0x00];
        sll.extend_from_slice(&l3);
        let file = pcap_le_micros(linktype::LINUX_SLL, &[(1, 0, &sll)]);
        assert_eq!(first_datagram(&file).0, b"sll");

        let mut sll2 = vec![
            0x08, 0x00, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0,
        ];
        sll2.extend_from_slice(&l3);
        let file = pcap_le_micros(linktype::LINUX_SLL2, &[(1, 0, &sll2)]);
        assert_eq!(first_datagram(&file).0, b"sll");

        let mut null = 2u32.to_le_bytes().to_vec();
        null.extend_from_slice(&l3);
        let file = pcap_le_micros(linktype::NULL, &[(1, 0, &null)]);
        assert_eq!(first_datagram(&file).0, b"sll");
    }

    #[test]
    fn non_udp_and_non_ip_are_counted() {
        let mut tcp = ipv4_udp(b"");
        tcp[9] = 6;
        let arp = ethernet(&[0x08, 0x06], &[0; 28]);
        let file = pcap_le_micros(
            linktype::ETHERNET,
            &[
                (1, 0, &ethernet(&[0x08, 0x00], &tcp)),
                (1, 0, &arp),
                (1, 0, &[1, 2, 3]),
            ],
        );
        let (outcomes, d) = dissect_all(&file);
        assert_eq!(
            outcomes,
            [
                Owned::Skipped(SkipReason::NotUdp),
                Owned::Skipped(SkipReason::NotIp),
                Owned::Skipped(SkipReason::TruncatedFrame),
            ]
        );
        assert_eq!(d.stats.frames, 3);
        assert_eq!(d.stats.skipped[SkipReason::NotUdp.index()], 1);
    }

    #[test]
    fn snaplen_cut_datagram_is_skipped() {
        let l3 = ipv4_udp(&[7; 100]);
        let mut f = pcap_le_micros(linktype::RAW, &[(1, 0, &l3[..60])]);
        // Original length says 128 bytes: the record holds 60.
        let at = f.len() - 60 - 4;
        f[at..at + 4].copy_from_slice(&(l3.len() as u32).to_le_bytes());
        let mut reader = CaptureReader::new(&f[..]).unwrap();
        let frame = reader.next_frame().unwrap().unwrap();
        assert_eq!(
            Dissector::new().dissect(&frame),
            Dissected::Skipped(SkipReason::TruncatedFrame)
        );
    }

    #[test]
    fn ipv4_fragments_reassemble_out_of_order() {
        let payload: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
        let whole = ipv4_udp(&payload);
        let l4 = &whole[20..];
        let pieces: Vec<Vec<u8>> = [
            (0usize, 1480usize, true),
            (1480, 2960, true),
            (2960, l4.len(), false),
        ]
        .iter()
        .map(|&(start, end, more)| {
            let mut p = whole[..20].to_vec();
            let total = (20 + end - start) as u16;
            p[2..4].copy_from_slice(&total.to_be_bytes());
            let word = ((start / 8) as u16) | if more { 0x2000 } else { 0 };
            p[6..8].copy_from_slice(&word.to_be_bytes());
            p.extend_from_slice(&l4[start..end]);
            p
        })
        .collect();
        let file = pcap_le_micros(
            linktype::RAW,
            &[(1, 0, &pieces[2]), (1, 1, &pieces[0]), (1, 2, &pieces[1])],
        );
        let (outcomes, d) = dissect_all(&file);
        assert_eq!(
            outcomes,
            [
                Owned::Held,
                Owned::Held,
                Owned::Datagram(payload, 1_000_002_000)
            ]
        );
        assert_eq!(d.stats.reassembled, 1);
        assert_eq!(d.stats.fragments, 2);
    }

    #[test]
    fn contradicting_and_unfinished_fragments_are_counted() {
        let whole = ipv4_udp(&[1; 64]);
        let frag = |offset_units: u16, more: bool, len: usize| {
            let mut p = whole[..20].to_vec();
            p[2..4].copy_from_slice(&((20 + len) as u16).to_be_bytes());
            p[6..8].copy_from_slice(&(offset_units | if more { 0x2000 } else { 0 }).to_be_bytes());
            p.extend_from_slice(&whole[20..20 + len]);
            p
        };
        // Two "last" fragments with different ends, then one that never completes.
        let a = frag(1, false, 16);
        let b = frag(2, false, 16);
        let mut c = frag(0, true, 8);
        c[5] = 9; // another identification
        let file = pcap_le_micros(linktype::RAW, &[(1, 0, &a), (1, 0, &b), (1, 0, &c)]);
        let (outcomes, d) = dissect_all(&file);
        assert_eq!(
            outcomes,
            [
                Owned::Held,
                Owned::Skipped(SkipReason::BadFragment),
                Owned::Held,
            ]
        );
        assert_eq!(d.stats.skipped[SkipReason::ReassemblyIncomplete.index()], 1);
    }

    #[test]
    fn fragment_table_is_bounded_and_times_out() {
        let whole = ipv4_udp(&[1; 64]);
        let mut d = Dissector::new();
        for id in 0..(MAX_PENDING_DATAGRAMS as u16 + 3) {
            let mut p = whole[..20].to_vec();
            p[2..4].copy_from_slice(&28u16.to_be_bytes());
            p[4..6].copy_from_slice(&id.to_be_bytes());
            p[6..8].copy_from_slice(&0x2000u16.to_be_bytes());
            p.extend_from_slice(&whole[20..28]);
            let frame = Frame {
                linktype: linktype::RAW,
                ts_ns: 1,
                orig_len: 28,
                data: &p,
            };
            assert_eq!(d.dissect(&frame), Dissected::FragmentHeld);
        }
        assert_eq!(d.stats.skipped[SkipReason::ReassemblyOverflow.index()], 3);
        assert_eq!(d.pending.len(), MAX_PENDING_DATAGRAMS);
        // A fragment far later in capture time ages every held datagram out.
        let mut p = whole[..20].to_vec();
        p[2..4].copy_from_slice(&28u16.to_be_bytes());
        p[4..6].copy_from_slice(&999u16.to_be_bytes());
        p[6..8].copy_from_slice(&0x2000u16.to_be_bytes());
        p.extend_from_slice(&whole[20..28]);
        let frame = Frame {
            linktype: linktype::RAW,
            ts_ns: 1 + REASSEMBLY_TIMEOUT_NS + 1,
            orig_len: 28,
            data: &p,
        };
        d.dissect(&frame);
        assert_eq!(
            d.stats.skipped[SkipReason::ReassemblyTimeout.index()],
            MAX_PENDING_DATAGRAMS as u64
        );
        assert_eq!(d.pending.len(), 1);
    }

    #[test]
    fn ipv6_with_extension_header_and_fragments() {
        let payload: Vec<u8> = (0..200u8).collect();
        let mut udp_bytes = vec![0x08, 0x07, 0x27, 0x0b, 0, 0, 0, 0];
        udp_bytes[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        udp_bytes.extend_from_slice(&payload);
        let v6 = |next: u8, ext_and_l4: &[u8]| {
            let mut p = vec![0x60, 0, 0, 0, 0, 0, next, 64];
            p[4..6].copy_from_slice(&(ext_and_l4.len() as u16).to_be_bytes());
            p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
            p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
            p.extend_from_slice(ext_and_l4);
            p
        };
        // Unfragmented, behind a hop-by-hop header (8 bytes: next=17, len=0, 6 bytes of padding).
        let mut ext = vec![17, 0, 1, 4, 0, 0, 0, 0];
        ext.extend_from_slice(&udp_bytes);
        let file = pcap_le_micros(linktype::IPV6, &[(1, 0, &v6(0, &ext))]);
        let (got, src, _) = first_datagram(&file);
        assert_eq!(got, payload);
        assert_eq!(src, "[2001:db8::1]:2055".parse().unwrap());

        // Fragmented in two (offsets in bytes, multiples of 8).
        let frag = |offset: u16, more: bool, bytes: &[u8]| {
            let mut ext = vec![17, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef];
            ext[2..4].copy_from_slice(&(offset | u16::from(more)).to_be_bytes());
            ext.extend_from_slice(bytes);
            v6(44, &ext)
        };
        let first = frag(0, true, &udp_bytes[..104]);
        let second = frag(104, false, &udp_bytes[104..]);
        let file = pcap_le_micros(linktype::RAW, &[(1, 0, &first), (1, 0, &second)]);
        let (outcomes, _) = dissect_all(&file);
        assert_eq!(
            outcomes,
            [Owned::Held, Owned::Datagram(payload, 1_000_000_000)]
        );
    }

    /// One pcapng block with the given type and body (little-endian).
    fn block(block_type: u32, body: &[u8]) -> Vec<u8> {
        let mut padded = body.to_vec();
        padded.resize(body.len().next_multiple_of(4), 0);
        let total = (12 + padded.len()) as u32;
        let mut b = block_type.to_le_bytes().to_vec();
        b.extend_from_slice(&total.to_le_bytes());
        b.extend_from_slice(&padded);
        b.extend_from_slice(&total.to_le_bytes());
        b
    }

    #[test]
    fn pcapng_interfaces_resolution_and_block_kinds() {
        let l3 = ipv4_udp(b"ng");
        let eth = ethernet(&[0x08, 0x00], &l3);
        let mut shb = PCAPNG_BYTE_ORDER_MAGIC.to_le_bytes().to_vec();
        shb.extend_from_slice(&[1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        let mut file = block(PCAPNG_SHB, &shb);
        // Interface 0: Ethernet, default microseconds. Interface 1: raw IP, nanoseconds (tsresol 9).
        file.extend(block(PCAPNG_IDB, &[1, 0, 0, 0, 0, 0, 4, 0]));
        file.extend(block(
            PCAPNG_IDB,
            &[101, 0, 0, 0, 0, 0, 4, 0, 9, 0, 1, 0, 9, 0, 0, 0, 0, 0, 0, 0],
        ));
        file.extend(block(0x0000_0004, &[0; 8])); // name resolution block: skipped
        let epb = |iface: u32, ts: u64, data: &[u8]| {
            let mut b = iface.to_le_bytes().to_vec();
            b.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
            b.extend_from_slice(&(ts as u32).to_le_bytes());
            b.extend_from_slice(&(data.len() as u32).to_le_bytes());
            b.extend_from_slice(&(data.len() as u32).to_le_bytes());
            b.extend_from_slice(data);
            block(PCAPNG_EPB, &b)
        };
        file.extend(epb(0, 1_500_000, &eth));
        file.extend(epb(1, 2_000_000_123, &l3));
        let mut spb = (eth.len() as u32).to_le_bytes().to_vec();
        spb.extend_from_slice(&eth);
        file.extend(block(PCAPNG_SPB, &spb));

        let mut reader = CaptureReader::new(&file[..]).unwrap();
        let mut linktypes = Vec::new();
        while let Some(frame) = reader.next_frame().unwrap() {
            linktypes.push(frame.linktype);
        }
        assert_eq!(
            linktypes,
            [linktype::ETHERNET, linktype::RAW, linktype::ETHERNET]
        );
        let (outcomes, _) = dissect_all(&file);
        assert_eq!(
            outcomes,
            [
                Owned::Datagram(b"ng".to_vec(), 1_500_000_000),
                Owned::Datagram(b"ng".to_vec(), 2_000_000_123),
                Owned::Datagram(b"ng".to_vec(), 0),
            ]
        );
    }

    #[test]
    fn pcapng_big_endian_section() {
        let l3 = ipv4_udp(b"be");
        let be_block = |block_type: u32, body: &[u8]| {
            let mut padded = body.to_vec();
            padded.resize(body.len().next_multiple_of(4), 0);
            let total = (12 + padded.len()) as u32;
            let mut b = block_type.to_be_bytes().to_vec();
            b.extend_from_slice(&total.to_be_bytes());
            b.extend_from_slice(&padded);
            b.extend_from_slice(&total.to_be_bytes());
            b
        };
        let mut shb = PCAPNG_BYTE_ORDER_MAGIC.to_be_bytes().to_vec();
        shb.extend_from_slice(&[0, 1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        let mut file = be_block(PCAPNG_SHB, &shb);
        file.extend(be_block(PCAPNG_IDB, &[0, 101, 0, 0, 0, 0, 4, 0]));
        let mut epb = vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3];
        epb.extend_from_slice(&(l3.len() as u32).to_be_bytes());
        epb.extend_from_slice(&(l3.len() as u32).to_be_bytes());
        epb.extend_from_slice(&l3);
        file.extend(be_block(PCAPNG_EPB, &epb));
        let (payload, _, ts) = first_datagram(&file);
        assert_eq!(payload, b"be");
        assert_eq!(ts, 3_000);
    }

    #[test]
    fn corrupt_files_are_named_errors_not_panics() {
        assert!(matches!(
            CaptureReader::new(&b"GIF89a.."[..]),
            Err(CaptureError::UnknownFormat(_))
        ));
        assert!(matches!(
            CaptureReader::new(&[0xd4, 0xc3][..]),
            Err(CaptureError::Truncated(_))
        ));
        // A record claiming 2 GiB is refused before any allocation.
        let mut f = pcap_le_micros(linktype::RAW, &[]);
        f.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0, 0, 0, 0x80]);
        let mut reader = CaptureReader::new(&f[..]).unwrap();
        assert!(matches!(
            reader.next_frame(),
            Err(CaptureError::TooLarge { .. })
        ));
        // A record cut short by the end of the file.
        let mut f = pcap_le_micros(linktype::RAW, &[(1, 0, &[0x45; 40])]);
        f.truncate(f.len() - 10);
        let mut reader = CaptureReader::new(&f[..]).unwrap();
        assert!(matches!(
            reader.next_frame(),
            Err(CaptureError::Truncated(_))
        ));
        // An enhanced packet block for an interface never described.
        let mut shb = PCAPNG_BYTE_ORDER_MAGIC.to_le_bytes().to_vec();
        shb.extend_from_slice(&[1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        let mut file = block(PCAPNG_SHB, &shb);
        file.extend(block(PCAPNG_EPB, &[0; 20]));
        let mut reader = CaptureReader::new(&file[..]).unwrap();
        assert!(matches!(
            reader.next_frame(),
            Err(CaptureError::UnknownInterface(0))
        ));
        // Every prefix of a valid pcapng file either reads or fails by name.
        let mut file = block(PCAPNG_SHB, &shb);
        file.extend(block(
            PCAPNG_IDB,
            &[1, 0, 0, 0, 0, 0, 4, 0, 9, 0, 1, 0, 9, 0, 0, 0],
        ));
        file.extend(block(PCAPNG_SPB, &[3, 0, 0, 0, 1, 2, 3]));
        for cut in 0..file.len() {
            if let Ok(mut reader) = CaptureReader::new(&file[..cut]) {
                while let Ok(Some(frame)) = reader.next_frame() {
                    Dissector::new().dissect(&frame);
                }
            }
        }
    }

    #[test]
    fn pcap_writer_round_trips() {
        let l3 = ipv4_udp(b"written");
        let mut w = PcapWriter::new(Vec::new(), linktype::RAW).unwrap();
        w.write_frame(1_700_000_000_123_456_789, &l3).unwrap();
        let file = w.finish().unwrap();
        let (payload, _, ts) = first_datagram(&file);
        assert_eq!(payload, b"written");
        assert_eq!(ts, 1_700_000_000_123_456_789);
    }

    #[test]
    fn timestamp_resolutions() {
        assert_eq!(TsResolution::Decimal(6).to_ns(1), 1_000);
        assert_eq!(TsResolution::Decimal(12).to_ns(5_000), 5);
        assert_eq!(TsResolution::Binary(10).to_ns(1024), 1_000_000_000);
        assert_eq!(TsResolution::Decimal(255).to_ns(u64::MAX), 0);
    }
}
