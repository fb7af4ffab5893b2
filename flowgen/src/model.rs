//! The traffic model: which flows an emulated node reports, as a pure function of
//! (seed, exporter index, record index).
//!
//! This module owns the profiles' *content*: record `k` of exporter `e` is always the same
//! [`FlowRecord`] for a given seed and time base, so the manifest (seed, time base, counts, events)
//! regenerates exactly what was sent without storing it. It knows nothing of datagrams, sequence
//! numbers or sockets (`exporter.rs` owns those). Only fields the profile's protocol carries are
//! set; everything else stays zero, as a decoder would leave it.

use collector::record::{FlowRecord, FlowType, ipv4_bytes};

/// The export profiles: the Open vSwitch ones (`OVS-EXPORTS.md`) and generic ones.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// NetFlow v5 as OVS sends it: IPv4, ≤ 30 records, unsampled, OpenFlow port numbers.
    OvsNetflow,
    /// OVS IPFIX: the 120-template family, observation domain 0, delta-µs times, PEN 6876 tunnels.
    OvsIpfix,
    /// OVS sFlow: 1:400, 128-byte headers, tunnel and VNI records, counter samples.
    OvsSflow,
    /// Generic NetFlow v5 (ifIndex interfaces, engine id = exporter).
    NetflowV5,
    /// Generic NetFlow v9: IPv4 and IPv6 templates, uptime-relative times.
    NetflowV9,
    /// Generic IPFIX: IPv4 and IPv6 templates, millisecond timestamps.
    Ipfix,
    /// Generic sFlow v5: raw header flow samples, counter samples.
    Sflow,
}

impl Profile {
    pub const ALL: [Profile; 7] = [
        Profile::OvsNetflow,
        Profile::OvsIpfix,
        Profile::OvsSflow,
        Profile::NetflowV5,
        Profile::NetflowV9,
        Profile::Ipfix,
        Profile::Sflow,
    ];

    /// The name used on the command line and in manifests.
    pub const fn name(self) -> &'static str {
        match self {
            Profile::OvsNetflow => "ovs-netflow",
            Profile::OvsIpfix => "ovs-ipfix",
            Profile::OvsSflow => "ovs-sflow",
            Profile::NetflowV5 => "netflow-v5",
            Profile::NetflowV9 => "netflow-v9",
            Profile::Ipfix => "ipfix",
            Profile::Sflow => "sflow",
        }
    }

    pub const fn flow_type(self) -> FlowType {
        match self {
            Profile::OvsNetflow | Profile::NetflowV5 => FlowType::NetflowV5,
            Profile::NetflowV9 => FlowType::NetflowV9,
            Profile::OvsIpfix | Profile::Ipfix => FlowType::Ipfix,
            Profile::OvsSflow | Profile::Sflow => FlowType::SflowV5,
        }
    }

    pub const fn is_ovs(self) -> bool {
        matches!(
            self,
            Profile::OvsNetflow | Profile::OvsIpfix | Profile::OvsSflow
        )
    }

    /// Flow records per data datagram unless `--records-per-datagram` says otherwise: what the
    /// exporter sends. OVS IPFIX puts one record in each message (`ipfix_send_data_msg` in
    /// ofproto-dpif-ipfix.c); the others fill a datagram to near OVS's 1400 bytes (v5: the
    /// protocol's 30).
    pub const fn default_records_per_datagram(self) -> u32 {
        match self {
            Profile::OvsNetflow | Profile::NetflowV5 => 30,
            Profile::NetflowV9 | Profile::Ipfix => 20,
            Profile::OvsIpfix => 1,
            Profile::OvsSflow | Profile::Sflow => 5,
        }
    }

    /// Largest records-per-datagram the profile's encoding allows.
    pub const fn max_records_per_datagram(self) -> u32 {
        match self {
            Profile::OvsNetflow | Profile::NetflowV5 => 30,
            Profile::NetflowV9 | Profile::Ipfix => 60,
            Profile::OvsIpfix => 40,
            Profile::OvsSflow | Profile::Sflow => 40,
        }
    }

    /// The collector port this protocol is usually sent to.
    pub const fn default_port(self) -> u16 {
        match self.flow_type() {
            FlowType::Ipfix => 4739,
            FlowType::SflowV5 => 6343,
            _ => 2055,
        }
    }

    /// Default sampling rate (sFlow only; the others are unsampled as OVS sends them).
    pub const fn default_sampling_rate(self) -> u32 {
        match self {
            Profile::OvsSflow => 400,
            Profile::Sflow => 1000,
            _ => 0,
        }
    }

    /// v9 / IPFIX: the profile sends templates.
    pub const fn templated(self) -> bool {
        matches!(
            self,
            Profile::OvsIpfix | Profile::NetflowV9 | Profile::Ipfix
        )
    }
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// splitmix64: a small, fast, well-mixed generator; the model's only source of randomness.
#[derive(Clone, Copy, Debug)]
pub struct Rng(u64);

impl Rng {
    /// The generator of record `k` of exporter `exporter` under `seed`.
    pub fn for_record(seed: u64, exporter: u32, k: u64) -> Rng {
        let mut r = Rng(seed ^ 0x5851_f42d_4c95_7f2d);
        r.0 ^= r
            .next_u64()
            .wrapping_add(u64::from(exporter).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        r.0 ^= r
            .next_u64()
            .wrapping_add(k.wrapping_mul(0xbf58_476d_1ce4_e5b9));
        r
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`; 0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64().checked_rem(n).unwrap_or(0)
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Ethertypes the model uses.
pub const ETYPE_IPV4: u16 = 0x0800;
pub const ETYPE_IPV6: u16 = 0x86dd;
pub const ETYPE_ARP: u16 = 0x0806;
/// Geneve's UDP port (OVN-Kubernetes tunnels between nodes).
pub const GENEVE_PORT: u16 = 6081;
/// Most recent flow end relative to the time base, and the spread of end and duration (ms).
const END_MIN_AGO_MS: u64 = 1_000;
const END_SPREAD_MS: u64 = 30_000;
const DURATION_SPREAD_MS: u64 = 60_000;
/// OpenFlow port numbers OVS reports for LOCAL and NONE.
const OFP_LOCAL: u32 = 65534;

/// The IPv4 address of cluster node `n` on its node network (tunnel endpoints, agents).
pub fn node_ipv4(n: u32) -> [u8; 4] {
    [100, 64 | ((n >> 16) & 0x3f) as u8, (n >> 8) as u8, n as u8]
}

/// Record `k` of exporter `exporter`: the flow fields its protocol carries. Times are whole
/// milliseconds before `time_base_ns` (the run's start), so every encoding gives them back exactly.
pub fn flow(profile: Profile, seed: u64, exporter: u32, k: u64, time_base_ns: u64) -> FlowRecord {
    let mut r = Rng::for_record(seed, exporter, k);
    let mut rec: FlowRecord = bytemuck::Zeroable::zeroed();
    let base_ms = time_base_ns / 1_000_000;
    let end_ms = base_ms.saturating_sub(END_MIN_AGO_MS + r.below(END_SPREAD_MS));
    let start_ms = end_ms.saturating_sub(r.below(DURATION_SPREAD_MS));
    let sflow = profile.flow_type() == FlowType::SflowV5;
    if !sflow {
        rec.time_flow_start_ns = start_ms * 1_000_000;
        rec.time_flow_end_ns = end_ms * 1_000_000;
    }

    // Network layer. v5 is IPv4 only; OVS IPFIX also reports non-IP (ARP) flows.
    let v6_allowed = !matches!(profile, Profile::OvsNetflow | Profile::NetflowV5);
    let roll = r.below(100);
    rec.etype = if profile == Profile::OvsIpfix && roll < 6 {
        ETYPE_ARP
    } else if v6_allowed && roll < 28 {
        ETYPE_IPV6
    } else {
        ETYPE_IPV4
    };
    let node = exporter;
    let a = r.next_u64();
    match rec.etype {
        ETYPE_IPV4 => {
            rec.src_addr =
                ipv4_bytes([10, 128 | (node >> 8 & 0x7f) as u8, node as u8, a as u8 | 1]);
            rec.dst_addr = ipv4_bytes([
                10,
                128 + (a >> 8 & 1) as u8,
                (a >> 16) as u8,
                (a >> 24) as u8 | 1,
            ]);
        }
        ETYPE_IPV6 => {
            let mut s = [0u8; 16];
            let mut d = [0u8; 16];
            s[..2].copy_from_slice(&[0xfd, 0x01]);
            d[..2].copy_from_slice(&[0xfd, 0x01]);
            s[8..12].copy_from_slice(&node.to_be_bytes());
            s[12..].copy_from_slice(&(a as u32 | 1).to_be_bytes());
            d[8..16].copy_from_slice(&(a >> 8 | 1).to_be_bytes());
            rec.src_addr = s;
            rec.dst_addr = d;
            if profile != Profile::NetflowV9 && profile != Profile::Ipfix || r.chance(50) {
                rec.ipv6_flow_label = (r.next_u64() & 0xf_ffff) as u32;
            }
        }
        _ => {}
    }
    let ip = rec.etype != ETYPE_ARP;

    // Transport.
    if ip {
        let l4 = r.below(100);
        let v6 = rec.etype == ETYPE_IPV6;
        rec.proto = match l4 {
            0..60 => 6,
            60..90 => 17,
            90..94 if profile == Profile::OvsIpfix => 132,
            _ if v6 => 58,
            _ => 1,
        };
        let icmp = matches!(rec.proto, 1 | 58);
        if icmp {
            // Echo request / reply only: error messages would need the offending packet inside
            // the sampled sFlow header to be well-formed.
            let echo = r.below(2) as u8;
            let (t, c) = if v6 {
                (128 + echo, 0)
            } else {
                (8 * (1 - echo), 0u8)
            };
            match profile.flow_type() {
                // v5 reports ICMP type and code in the destination port.
                FlowType::NetflowV5 => rec.dst_port = u16::from(t) << 8 | u16::from(c),
                _ => {
                    rec.icmp_type = t;
                    rec.icmp_code = c;
                }
            }
        } else {
            rec.src_port = 30_000 + r.below(30_000) as u16;
            rec.dst_port = [443u16, 80, 53, 6443, 8080, 9090, 5432][r.below(7) as usize];
        }
        rec.ip_tos = ((r.below(64) as u8) << 2) & if r.chance(80) { 0 } else { 0xff };
        // OVS IPFIX sends no tcpControlBits.
        if rec.proto == 6 && profile != Profile::OvsIpfix {
            rec.tcp_flags = 0x10 | (r.below(0x20) as u16 & 0x1b);
        }
    }

    // Counters.
    if sflow {
        rec.packets = 1;
        rec.bytes = 128 + r.below(1387);
    } else {
        rec.packets = 1 + r.below(1000);
        rec.bytes = rec.packets * (64 + r.below(1437));
    }

    // Interfaces, layer 2, tunnels: per profile.
    match profile {
        Profile::OvsNetflow => {
            rec.in_if = 1 + r.below(16) as u32;
            rec.out_if = if r.chance(5) {
                OFP_LOCAL
            } else {
                1 + r.below(16) as u32
            };
        }
        Profile::NetflowV5 | Profile::NetflowV9 | Profile::Ipfix => {
            rec.in_if = 1 + r.below(64) as u32;
            rec.out_if = 1 + r.below(64) as u32;
            if profile == Profile::Ipfix {
                rec.flow_direction = r.below(2) as u8;
            }
        }
        Profile::OvsIpfix => {
            rec.flow_direction = r.below(2) as u8;
            rec.in_if = 1 + r.below(16) as u32;
            if rec.flow_direction == 1 {
                rec.out_if = 1 + r.below(16) as u32;
            }
            l2(&mut r, &mut rec, node);
            if ip {
                rec.ip_ttl = [64u8, 63, 255, 128][r.below(4) as usize];
            }
            if r.chance(40) {
                tunnel(&mut r, &mut rec, node);
            }
            rec.flow_end_reason = 1 + r.below(3) as u8;
        }
        Profile::OvsSflow | Profile::Sflow => {
            rec.in_if = 3 + r.below(8) as u32;
            rec.out_if = 3 + r.below(8) as u32;
            l2(&mut r, &mut rec, node);
            rec.ip_ttl = [64u8, 63, 255, 128][r.below(4) as usize];
            if profile == Profile::OvsSflow && r.chance(40) {
                tunnel(&mut r, &mut rec, node);
            }
        }
    }
    rec
}

/// MAC addresses (OVN-Kubernetes style `0a:58:…`) and an occasional VLAN.
fn l2(r: &mut Rng, rec: &mut FlowRecord, node: u32) {
    let m = r.next_u64();
    rec.src_mac = [0x0a, 0x58, 10, 128, node as u8, m as u8];
    rec.dst_mac = [0x0a, 0x58, 10, 129, (m >> 8) as u8, (m >> 16) as u8];
    if r.chance(10) {
        rec.vlan_id = 1 + r.below(4094) as u16;
    }
}

/// A Geneve tunnel to or from another node (VNI in the tunnel key).
fn tunnel(r: &mut Rng, rec: &mut FlowRecord, node: u32) {
    let peer = r.below(4096) as u32;
    let (src, dst) = if rec.flow_direction == 1 || r.chance(50) {
        (node, peer)
    } else {
        (peer, node)
    };
    rec.tunnel_type = 7;
    rec.tunnel_key = 1 + r.below(4096);
    rec.tunnel_src_addr = ipv4_bytes(node_ipv4(src));
    rec.tunnel_dst_addr = ipv4_bytes(node_ipv4(dst));
    rec.tunnel_proto = 17;
    rec.tunnel_src_port = 49_152 + r.below(16_384) as u16;
    rec.tunnel_dst_port = GENEVE_PORT;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_a_function_of_seed_exporter_and_index() {
        for p in Profile::ALL {
            let a = flow(p, 7, 3, 11, 1_700_000_000_000_000_000);
            assert_eq!(a, flow(p, 7, 3, 11, 1_700_000_000_000_000_000));
            assert_ne!(a, flow(p, 8, 3, 11, 1_700_000_000_000_000_000));
            assert_ne!(a, flow(p, 7, 4, 11, 1_700_000_000_000_000_000));
            assert_ne!(a, flow(p, 7, 3, 12, 1_700_000_000_000_000_000));
        }
    }

    #[test]
    fn v5_profiles_stay_ipv4_and_times_precede_the_base() {
        let base = 1_700_000_000_123_000_000;
        for k in 0..2000 {
            let r = flow(Profile::OvsNetflow, 1, 0, k, base);
            assert_eq!(r.etype, ETYPE_IPV4);
            assert!(r.time_flow_end_ns <= base - 1_000_000_000);
            assert!(r.time_flow_start_ns <= r.time_flow_end_ns);
            assert_eq!(r.time_flow_start_ns % 1_000_000, 0);
        }
    }
}
