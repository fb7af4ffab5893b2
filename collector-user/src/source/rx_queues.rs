//! Which CPU serves each RX queue of an interface: the queue → worker → core mapping of the XDP
//! path (one worker per queue, pinned where the queue's interrupt is handled).
//!
//! Owns reading the queue count (ethtool channels of the interface in this thread's network
//! namespace; `/sys/class/net/IFACE/queues/rx-*` when the driver has none), finding each queue's IRQ in
//! `/proc/interrupts` by the names drivers give them (`eth0-TxRx-3`, `eth0-rx-3`, `ice-eth0-TxRx-3`,
//! `eth0-3`), and the CPU that IRQ is routed to (`/proc/irq/N/effective_affinity_list`, else
//! `smp_affinity_list`). Queues whose IRQ cannot be found (veth, virtio, mlx5's `mlx5_comp` names)
//! are placed round-robin over the usable CPUs. The parsers take text, so they are tested without
//! hardware.

use std::path::Path;

use anyhow::Context as _;

/// Where one RX queue's worker runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueCpu {
    /// RX queue index.
    pub queue: u32,
    /// CPU to pin the queue's worker to.
    pub cpu: u32,
    /// True when `cpu` is the CPU the queue's IRQ is routed to; false when placed round-robin.
    pub from_irq: bool,
}

/// Number of RX queues of `iface`: the ethtool channel counts (`combined + rx`, what
/// `ethtool -l` shows as current), else the `rx-N` entries under `/sys/class/net/IFACE/queues`
/// (sysfs shows the namespace it was mounted in, so the ioctl comes first).
pub fn rx_queue_count(iface: &str) -> anyhow::Result<u32> {
    if let Some(count) = ethtool_rx_channels(iface) {
        return Ok(count);
    }
    let dir = Path::new("/sys/class/net").join(iface).join("queues");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        if entry?.file_name().to_string_lossy().starts_with("rx-") {
            count += 1;
        }
    }
    Ok(count)
}

/// `struct ethtool_channels` (include/uapi/linux/ethtool.h).
#[repr(C)]
#[derive(Default)]
struct EthtoolChannels {
    cmd: u32,
    max_rx: u32,
    max_tx: u32,
    max_other: u32,
    max_combined: u32,
    rx_count: u32,
    tx_count: u32,
    other_count: u32,
    combined_count: u32,
}

const ETHTOOL_GCHANNELS: u32 = 0x3c;
const SIOCETHTOOL: libc::c_ulong = 0x8946;

/// Current RX-capable channels (`combined + rx`) through SIOCETHTOOL, or None when the driver
/// does not report channels.
fn ethtool_rx_channels(iface: &str) -> Option<u32> {
    let name = iface.as_bytes();
    if name.len() >= libc::IFNAMSIZ {
        return None;
    }
    let mut channels = EthtoolChannels {
        cmd: ETHTOOL_GCHANNELS,
        ..EthtoolChannels::default()
    };
    // SAFETY: zeroed ifreq is valid; the name fits with its NUL; ifru_data points to `channels`,
    // which outlives the ioctl; the socket is closed before returning.
    unsafe {
        let mut request: libc::ifreq = std::mem::zeroed();
        for (slot, byte) in request.ifr_name.iter_mut().zip(name) {
            *slot = *byte as libc::c_char;
        }
        request.ifr_ifru.ifru_data = (&raw mut channels).cast();
        let socket = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if socket < 0 {
            return None;
        }
        let ret = libc::ioctl(socket, SIOCETHTOOL, &mut request);
        libc::close(socket);
        if ret != 0 {
            return None;
        }
    }
    let count = channels.combined_count + channels.rx_count;
    (count > 0).then_some(count)
}

/// The IRQ of RX queue `queue` of `iface` in a `/proc/interrupts` text.
pub fn queue_irq(interrupts: &str, iface: &str, queue: u32) -> Option<u32> {
    interrupts.lines().find_map(|line| {
        let (irq, rest) = line.trim_start().split_once(':')?;
        let irq: u32 = irq.parse().ok()?;
        let name = rest.split_whitespace().last()?;
        names_queue(name, iface, queue).then_some(irq)
    })
}

/// Whether an interrupt name is the one of RX queue `queue` of `iface`.
fn names_queue(name: &str, iface: &str, queue: u32) -> bool {
    // Drivers prefix the name with the interface, sometimes behind their own name ("ice-eth0-…").
    let Some(at) = name.find(iface) else {
        return false;
    };
    let Some(rest) = name[at + iface.len()..].strip_prefix('-') else {
        return false;
    };
    let number = match rest.rsplit_once('-') {
        // "TxRx-3", "rx-3", "rxtx-3", "fp-3"; never a TX-only vector.
        Some((kind, number)) => {
            let kind = kind.to_ascii_lowercase();
            if kind.starts_with("tx") && !kind.contains("rx") {
                return false;
            }
            number
        }
        // "eth0-3"
        None => rest,
    };
    number.parse::<u32>().ok() == Some(queue)
}

/// The first CPU of a CPU list such as `"2"`, `"0-3"` or `"4,6-7"`.
pub fn first_cpu(list: &str) -> Option<u32> {
    let first = list.trim().split(',').next()?;
    first.split('-').next()?.trim().parse().ok()
}

/// Place `queues` RX queues of `iface` on CPUs: the CPU serving each queue's IRQ when it is
/// found and in `cpus`, else round-robin over `cpus` (which must not be empty).
pub fn queue_cpus(iface: &str, queues: u32, cpus: &[u32]) -> anyhow::Result<Vec<QueueCpu>> {
    anyhow::ensure!(!cpus.is_empty(), "no CPU to place RX queue workers on");
    let interrupts = std::fs::read_to_string("/proc/interrupts").unwrap_or_default();
    Ok(place(queues, cpus, |queue| {
        let irq = queue_irq(&interrupts, iface, queue)?;
        ["effective_affinity_list", "smp_affinity_list"]
            .iter()
            .find_map(|file| {
                let text = std::fs::read_to_string(format!("/proc/irq/{irq}/{file}")).ok()?;
                first_cpu(&text)
            })
    }))
}

fn place(queues: u32, cpus: &[u32], irq_cpu: impl Fn(u32) -> Option<u32>) -> Vec<QueueCpu> {
    let mut next = 0;
    (0..queues)
        .map(
            |queue| match irq_cpu(queue).filter(|cpu| cpus.contains(cpu)) {
                Some(cpu) => QueueCpu {
                    queue,
                    cpu,
                    from_irq: true,
                },
                None => {
                    let cpu = cpus[next % cpus.len()];
                    next += 1;
                    QueueCpu {
                        queue,
                        cpu,
                        from_irq: false,
                    }
                }
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERRUPTS: &str = "\
            CPU0       CPU1       CPU2       CPU3
  24:          0          0          0          0  IR-PCI-MSI 524288-edge      eth0
  25:       1234          0          0          0  IR-PCI-MSI 524289-edge      eth0-TxRx-0
  26:          0       5678          0          0  IR-PCI-MSI 524290-edge      eth0-TxRx-1
  27:          0          0         42          0  IR-PCI-MSI 524291-edge      eth0-tx-2
  28:          0          0         42          0  IR-PCI-MSI 524292-edge      eth0-rx-2
  40:          0          0          0          9  IR-PCI-MSI 1048577-edge      ice-eth10-TxRx-3
  41:          0          0          0          9  IR-PCI-MSI 1048578-edge      eth1-7
  50:          0          0          0          0  IR-PCI-MSI 2097152-edge      mlx5_comp0@pci:0000:3b:00.0
 NMI:          0          0          0          0   Non-maskable interrupts
";

    #[test]
    fn driver_interrupt_names_give_queue_irqs() {
        assert_eq!(queue_irq(INTERRUPTS, "eth0", 0), Some(25));
        assert_eq!(queue_irq(INTERRUPTS, "eth0", 1), Some(26));
        // The TX-only vector is skipped for the RX one.
        assert_eq!(queue_irq(INTERRUPTS, "eth0", 2), Some(28));
        assert_eq!(queue_irq(INTERRUPTS, "eth0", 3), None);
        assert_eq!(queue_irq(INTERRUPTS, "eth10", 3), Some(40));
        assert_eq!(queue_irq(INTERRUPTS, "eth1", 7), Some(41));
        // "eth1" must not match "eth10"'s vectors.
        assert_eq!(queue_irq(INTERRUPTS, "eth1", 3), None);
        assert_eq!(queue_irq(INTERRUPTS, "mlx0", 0), None);
        assert_eq!(queue_irq("", "eth0", 0), None);
    }

    #[test]
    fn cpu_lists_yield_their_first_cpu() {
        assert_eq!(first_cpu("2\n"), Some(2));
        assert_eq!(first_cpu("0-3"), Some(0));
        assert_eq!(first_cpu("4,6-7"), Some(4));
        assert_eq!(first_cpu(""), None);
        assert_eq!(first_cpu("x"), None);
    }

    #[test]
    fn irq_cpus_win_and_the_rest_go_round_robin() {
        let placed = place(4, &[0, 1, 2], |queue| match queue {
            1 => Some(2),
            3 => Some(9), // not a usable CPU
            _ => None,
        });
        let cpus: Vec<_> = placed
            .iter()
            .map(|p| (p.queue, p.cpu, p.from_irq))
            .collect();
        assert_eq!(
            cpus,
            [(0, 0, false), (1, 2, true), (2, 1, false), (3, 2, false)]
        );
    }
}
