//! [`ShutdownGate`]: the workers of one run stop decoding together, before any of them closes
//! a socket.
//!
//! Why: the UDP sockets of the workers form one `SO_REUSEPORT` group, and the kernel picks a
//! socket by hashing the exporter's address over the sockets the group has *now*. When one worker
//! closed its sockets while another still decoded, the exporters of the first moved to the second,
//! which has none of their templates: false `template_missing` errors and "new exporter" on the
//! wrong worker. So shutdown has two meeting points, and the kernel's choice changes only after
//! the second:
//! 1. **drained**: a worker has drained its sources (or ran out of drain time). Until every worker
//!    is there it keeps decoding what its own sockets receive: those are still its exporters.
//! 2. **quiet**: a worker has decoded its last datagram. Once all are quiet each one seals its
//!    sources ([`crate::pipeline::Source::seal`]) and counts, undecoded, what they still hold.
//!
//! A member that leaves early (a failed or panicking worker, a thread that never started) passes
//! both points when it is dropped, so nobody waits for it. Waiting costs no lock: two counters
//! and, at the second point, a sleep of [`QUIET_POLL`] between looks.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// How often a quiet worker looks whether the others are quiet too.
pub const QUIET_POLL: Duration = Duration::from_millis(1);

/// The meeting points of a run's workers.
#[derive(Debug)]
pub struct ShutdownGate {
    members: usize,
    drained: AtomicUsize,
    quiet: AtomicUsize,
}

impl ShutdownGate {
    /// A gate for `members` workers, and one membership for each.
    pub fn members(members: usize) -> Vec<GateMember> {
        let gate = Arc::new(ShutdownGate {
            members,
            drained: AtomicUsize::new(0),
            quiet: AtomicUsize::new(0),
        });
        (0..members)
            .map(|_| GateMember {
                gate: Arc::clone(&gate),
                drained: false,
                quiet: false,
            })
            .collect()
    }
}

/// One worker's place at the [`ShutdownGate`].
#[derive(Debug)]
pub struct GateMember {
    gate: Arc<ShutdownGate>,
    drained: bool,
    quiet: bool,
}

impl GateMember {
    /// This worker has drained its sources.
    pub fn arrive_drained(&mut self) {
        if !std::mem::replace(&mut self.drained, true) {
            self.gate.drained.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Whether every worker has drained (or left).
    pub fn all_drained(&self) -> bool {
        self.gate.drained.load(Ordering::Acquire) >= self.gate.members
    }

    /// This worker decodes nothing more; wait until every worker is so (or has left).
    pub fn arrive_quiet_and_wait(&mut self) {
        self.arrive_drained();
        self.arrive_quiet();
        while self.gate.quiet.load(Ordering::Acquire) < self.gate.members {
            std::thread::sleep(QUIET_POLL);
        }
    }

    fn arrive_quiet(&mut self) {
        if !std::mem::replace(&mut self.quiet, true) {
            self.gate.quiet.fetch_add(1, Ordering::AcqRel);
        }
    }
}

impl Drop for GateMember {
    /// A worker that leaves without passing the gate passes it now, so the others go on.
    fn drop(&mut self) {
        self.arrive_drained();
        self.arrive_quiet();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn nobody_passes_the_second_point_before_everyone_reached_it() {
        let mut members = ShutdownGate::members(3);
        let mut last = members.pop().unwrap();
        let passed = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = members
            .into_iter()
            .map(|mut member| {
                let passed = Arc::clone(&passed);
                std::thread::spawn(move || {
                    member.arrive_drained();
                    member.arrive_quiet_and_wait();
                    passed.fetch_add(1, Ordering::SeqCst);
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(50));
        assert!(!last.all_drained());
        assert_eq!(passed.load(Ordering::SeqCst), 0);
        last.arrive_drained();
        assert!(last.all_drained());
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(passed.load(Ordering::SeqCst), 0);
        last.arrive_quiet_and_wait();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(passed.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_member_that_leaves_does_not_hold_the_others() {
        let mut members = ShutdownGate::members(2);
        drop(members.pop());
        let mut survivor = members.pop().unwrap();
        assert!(!survivor.all_drained());
        survivor.arrive_drained();
        assert!(survivor.all_drained());
        let started = Instant::now();
        survivor.arrive_quiet_and_wait();
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
