//! Datagrams as a classic pcap file (link type Ethernet): each UDP payload wrapped in Ethernet,
//! IPv4 or IPv6 and UDP headers with correct lengths and IPv4 header checksum (UDP checksum 0 on
//! IPv4; computed on IPv6, where it is mandatory). Used to check the profiles with tshark.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};

/// Writes a pcap stream.
pub struct PcapWriter<W: Write> {
    out: W,
}

fn sum16(bytes: &[u8], mut acc: u32) -> u32 {
    for pair in bytes.chunks(2) {
        let hi = u32::from(pair.first().copied().unwrap_or(0)) << 8;
        acc += hi | u32::from(pair.get(1).copied().unwrap_or(0));
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

impl<W: Write> PcapWriter<W> {
    pub fn new(mut out: W) -> std::io::Result<Self> {
        out.write_all(&0xa1b2_c3d4u32.to_le_bytes())?;
        out.write_all(&2u16.to_le_bytes())?;
        out.write_all(&4u16.to_le_bytes())?;
        out.write_all(&0i32.to_le_bytes())?;
        out.write_all(&0u32.to_le_bytes())?;
        out.write_all(&65535u32.to_le_bytes())?;
        out.write_all(&1u32.to_le_bytes())?; // LINKTYPE_ETHERNET
        Ok(PcapWriter { out })
    }

    /// Append one UDP datagram from `src` to `dst` (same IP version) captured at `ts_ns`.
    pub fn datagram(
        &mut self,
        ts_ns: u64,
        src: SocketAddr,
        dst: SocketAddr,
        payload: &[u8],
    ) -> std::io::Result<()> {
        let mut f = Vec::with_capacity(payload.len() + 62);
        f.extend_from_slice(&[0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1]);
        let udp_len = (8 + payload.len()) as u16;
        let mut udp = Vec::with_capacity(usize::from(udp_len));
        udp.extend_from_slice(&src.port().to_be_bytes());
        udp.extend_from_slice(&dst.port().to_be_bytes());
        udp.extend_from_slice(&udp_len.to_be_bytes());
        udp.extend_from_slice(&[0, 0]);
        udp.extend_from_slice(payload);
        match (src.ip(), dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                f.extend_from_slice(&0x0800u16.to_be_bytes());
                let mut ip = [0u8; 20];
                ip[0] = 0x45;
                ip[2..4].copy_from_slice(&(20 + udp_len).to_be_bytes());
                ip[6] = 0x40; // don't fragment
                ip[8] = 64;
                ip[9] = 17;
                ip[12..16].copy_from_slice(&s.octets());
                ip[16..20].copy_from_slice(&d.octets());
                let c = fold(sum16(&ip, 0));
                ip[10..12].copy_from_slice(&c.to_be_bytes());
                f.extend_from_slice(&ip);
            }
            (s, d) => {
                let v6 = |a: IpAddr| match a {
                    IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
                    IpAddr::V6(v6) => v6.octets(),
                };
                let (s, d) = (v6(s), v6(d));
                f.extend_from_slice(&0x86ddu16.to_be_bytes());
                let mut ip = [0u8; 40];
                ip[0] = 0x60;
                ip[4..6].copy_from_slice(&udp_len.to_be_bytes());
                ip[6] = 17;
                ip[7] = 64;
                ip[8..24].copy_from_slice(&s);
                ip[24..40].copy_from_slice(&d);
                let mut acc = sum16(&s, 0);
                acc = sum16(&d, acc);
                acc += u32::from(udp_len) + 17;
                let c = match fold(sum16(&udp, acc)) {
                    0 => 0xffff,
                    c => c,
                };
                udp[6..8].copy_from_slice(&c.to_be_bytes());
                f.extend_from_slice(&ip);
            }
        }
        f.extend_from_slice(&udp);
        self.out
            .write_all(&((ts_ns / 1_000_000_000) as u32).to_le_bytes())?;
        self.out
            .write_all(&((ts_ns % 1_000_000_000 / 1000) as u32).to_le_bytes())?;
        self.out.write_all(&(f.len() as u32).to_le_bytes())?;
        self.out.write_all(&(f.len() as u32).to_le_bytes())?;
        self.out.write_all(&f)
    }

    pub fn finish(mut self) -> std::io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}
