//! Perf-ring source: the frames the `steer` program copies, in perf mode (`--xdp-mode perf`),
//! into the per-CPU perf event array `FRAMES`, read from the buffer of one CPU.
//!
//! Owns one CPU's perf buffer (aya), waiting on it with poll(2), the parse of each sample
//! (`PERF_HEADER_LEN` bytes of frame length and RX queue, then the frame) and the UDP header walk
//! (the shared classifier), and the loss accounting: samples the kernel could not write (perf
//! `LOST` records) and samples this source discards. Samples are lent to the caller in place; one
//! that wraps around the ring end is first copied into a buffer allocated once. It knows nothing
//! about flow protocols.

use std::{
    io,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    os::fd::AsRawFd as _,
    time::Duration,
};

use anyhow::Context as _;
use aya::maps::{
    MapData, PerfEventArray,
    perf::{PerfEvent, PerfEventArrayBuffer},
};
use collector_common::{
    PERF_HEADER_LEN,
    steer::{FrameError, SourceAddr, udp_datagram},
};

use super::{now_ns, wait_readable};
use crate::decode::DatagramMeta;
use crate::pipeline::{Source, SourceLosses};

/// Largest sample this source reassembles when it wraps around the ring end: the header and the
/// largest frame a 16-bit IP length allows (plus Ethernet and VLAN headers).
const MAX_SAMPLE: usize = PERF_HEADER_LEN + 65_536 + 64;

/// Counters of one CPU's perf buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PerfStats {
    /// Samples read.
    pub samples: u64,
    /// UDP payloads handed to `deliver`.
    pub delivered: u64,
    /// Samples the kernel dropped because the buffer was full (perf LOST records). The program
    /// also counts them as `perf_failed` and passed those frames to the kernel socket.
    pub lost_samples: u64,
    /// Samples shorter than their header says, or larger than `MAX_SAMPLE`: dropped here.
    pub bad_sample: u64,
    /// Frames that are not UDP to a listen port: dropped here.
    pub not_matched: u64,
    /// Frames whose UDP length is impossible: dropped here.
    pub bad_udp_length: u64,
}

impl PerfStats {
    /// Samples this source discarded (the kernel's lost samples went to the slow path).
    pub fn discarded(&self) -> u64 {
        self.bad_sample + self.not_matched + self.bad_udp_length
    }
}

/// The perf buffer of one CPU.
pub struct PerfSource {
    buffer: PerfEventArrayBuffer<MapData>,
    cpu: u32,
    ports: Box<[u64; 1024]>,
    wrapped: Vec<u8>,
    stats: PerfStats,
}

impl PerfSource {
    /// Open the buffer of `cpu` in `frames` (from [`crate::xdp::SteerProgram::take_frames`]) with
    /// `pages` pages (a power of two) of ring.
    pub fn open(
        frames: &mut PerfEventArray<MapData>,
        cpu: u32,
        pages: usize,
        ports: &[u16],
    ) -> anyhow::Result<Self> {
        let buffer = frames
            .open(cpu, Some(pages))
            .with_context(|| format!("opening the perf buffer of CPU {cpu}"))?;
        let mut bits = Box::new([0u64; 1024]);
        for port in ports {
            bits[usize::from(*port / 64)] |= 1 << (port % 64);
        }
        Ok(PerfSource {
            buffer,
            cpu,
            ports: bits,
            wrapped: Vec::with_capacity(MAX_SAMPLE),
            stats: PerfStats::default(),
        })
    }

    /// The CPU whose buffer this is (the worker reading it should be pinned there).
    pub fn cpu(&self) -> u32 {
        self.cpu
    }

    /// The buffer's descriptor, readable when samples wait (for polling several sources).
    pub fn fd(&self) -> std::os::fd::RawFd {
        self.buffer.as_raw_fd()
    }

    /// Whether samples wait in the buffer: two loads from the ring's header page, no syscall
    /// (for a worker spinning on its buffers instead of sleeping in poll(2)).
    #[inline]
    pub fn has_pending(&self) -> bool {
        self.buffer.readable()
    }

    /// Counters so far.
    pub fn stats(&self) -> PerfStats {
        self.stats
    }

    /// Wait at most `timeout` for samples, then hand the UDP payload of every sample waiting to
    /// `deliver`. Returns how many payloads were delivered; 0 when nothing arrived (or a signal
    /// interrupted the wait).
    pub fn recv_batch(
        &mut self,
        timeout: Duration,
        deliver: &mut dyn FnMut(&DatagramMeta, &[u8]),
    ) -> io::Result<usize> {
        if !self.buffer.readable() && !wait_readable(self.buffer.as_raw_fd(), timeout)? {
            return Ok(0);
        }
        let received_ns = now_ns();
        let PerfSource {
            buffer,
            ports,
            wrapped,
            stats,
            ..
        } = self;
        let delivered = buffer.fold(0usize, |delivered, event| {
            let sample = match event {
                PerfEvent::Lost { count } => {
                    stats.lost_samples += count;
                    return delivered;
                }
                PerfEvent::Sample { head, tail: [] } => head,
                PerfEvent::Sample { head, tail } => {
                    if head.len() + tail.len() > MAX_SAMPLE {
                        stats.samples += 1;
                        stats.bad_sample += 1;
                        return delivered;
                    }
                    wrapped.clear();
                    wrapped.extend_from_slice(head);
                    wrapped.extend_from_slice(tail);
                    wrapped.as_slice()
                }
            };
            stats.samples += 1;
            let is_listen_port =
                |port: u16| ports[usize::from(port / 64)] & (1 << (port % 64)) != 0;
            match parse_sample(sample, is_listen_port) {
                Ok((exporter, payload)) => {
                    deliver(
                        &DatagramMeta {
                            exporter,
                            received_ns,
                        },
                        payload,
                    );
                    delivered + 1
                }
                Err(SampleError::Short) => {
                    stats.bad_sample += 1;
                    delivered
                }
                Err(SampleError::Frame(FrameError::NotMatched)) => {
                    stats.not_matched += 1;
                    delivered
                }
                Err(SampleError::Frame(FrameError::BadUdpLength)) => {
                    stats.bad_udp_length += 1;
                    delivered
                }
            }
        });
        self.stats.delivered += delivered as u64;
        Ok(delivered)
    }
}

impl Source for PerfSource {
    fn recv_batch(
        &mut self,
        timeout: Duration,
        deliver: &mut dyn FnMut(&DatagramMeta, &[u8]),
    ) -> io::Result<usize> {
        PerfSource::recv_batch(self, timeout, deliver)
    }

    /// The samples this source discarded. Samples the kernel could not write to this buffer are
    /// not lost: the program passed their frames to the kernel's UDP sockets (the slow path).
    fn losses(&self) -> SourceLosses {
        SourceLosses {
            kernel_drops: self.stats.discarded(),
            ..SourceLosses::default()
        }
    }
}

/// Why a sample holds no datagram.
#[derive(Debug, PartialEq, Eq)]
enum SampleError {
    /// Shorter than its header, or than the frame length the header gives.
    Short,
    /// The frame inside is not a usable UDP datagram to a listen port.
    Frame(FrameError),
}

/// Split one sample (header, frame, kernel padding) into the exporter and the UDP payload.
fn parse_sample(
    sample: &[u8],
    is_listen_port: impl Fn(u16) -> bool,
) -> Result<(SocketAddr, &[u8]), SampleError> {
    let header: [u8; 4] = sample
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or(SampleError::Short)?;
    let frame_len = usize::try_from(u32::from_ne_bytes(header)).map_err(|_| SampleError::Short)?;
    let frame = PERF_HEADER_LEN
        .checked_add(frame_len)
        .and_then(|end| sample.get(PERF_HEADER_LEN..end))
        .ok_or(SampleError::Short)?;
    let datagram = udp_datagram(frame, is_listen_port).map_err(SampleError::Frame)?;
    let exporter = match datagram.source {
        SourceAddr::V4(addr) => SocketAddr::from((Ipv4Addr::from(addr), datagram.src_port)),
        SourceAddr::V6(addr) => SocketAddr::from((Ipv6Addr::from(addr), datagram.src_port)),
    };
    let payload = frame.get(datagram.payload).ok_or(SampleError::Short)?;
    Ok((exporter, payload))
}

#[cfg(test)]
mod tests {
    use super::*;
    use collector_common::steer::{FrameSpec, IPPROTO_UDP, Network, emit};

    fn sample(payload: &[u8], padding: usize) -> Vec<u8> {
        let spec = FrameSpec {
            vlan_tpids: &[],
            network: Network::Ipv4 {
                options_words: 0,
                flags_fragment_offset: 0,
                protocol: IPPROTO_UDP,
            },
            src_port: 40000,
            dst_port: 2055,
            payload_len: payload.len(),
        };
        let mut frame = vec![0u8; spec.len()];
        emit(&spec, &mut frame).unwrap();
        let start = frame.len() - payload.len();
        frame[start..].copy_from_slice(payload);
        let mut sample = Vec::new();
        sample.extend_from_slice(&(frame.len() as u32).to_ne_bytes());
        sample.extend_from_slice(&3u32.to_ne_bytes());
        sample.extend_from_slice(&frame);
        sample.resize(sample.len() + padding, 0);
        sample
    }

    #[test]
    fn samples_yield_exporter_and_payload_without_padding() {
        let bytes = sample(b"ipfix!", 6);
        let (exporter, payload) = parse_sample(&bytes, |p| p == 2055).unwrap();
        assert_eq!(exporter, "192.0.2.2:40000".parse().unwrap());
        assert_eq!(payload, b"ipfix!");
        assert_eq!(
            parse_sample(&bytes, |_| false),
            Err(SampleError::Frame(FrameError::NotMatched))
        );
    }

    #[test]
    fn truncated_samples_are_short_never_a_panic() {
        let bytes = sample(b"netflow", 0);
        for cut in 0..bytes.len() {
            assert_eq!(
                parse_sample(&bytes[..cut], |p| p == 2055),
                Err(SampleError::Short),
                "cut at {cut}"
            );
        }
        let mut lying = bytes.clone();
        lying[..4].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert_eq!(parse_sample(&lying, |_| true), Err(SampleError::Short));
    }

    #[test]
    fn discarded_sums_own_drops_only() {
        let stats = PerfStats {
            lost_samples: 100,
            bad_sample: 1,
            not_matched: 2,
            bad_udp_length: 4,
            ..PerfStats::default()
        };
        assert_eq!(stats.discarded(), 7);
    }
}
