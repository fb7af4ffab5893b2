//! Sampling rates: learned from exports, configured per exporter or prefix.
//!
//! Owns the answer to "1 in how many packets does this record stand for?". Learned rates come from
//! NetFlow v5 headers and from NetFlow v9 / IPFIX options data (IEs 34/50 with sampler id 48 or
//! selector id 302; 304/305/306; 309/310), stored per (exporter, domain, sampler id) in a bounded
//! table. samplingAlgorithm (35) and samplerMode (49) are not read: deterministic or random, the
//! selection is 1 in 34 (or 50). Configured rates
//! ([`ConfiguredRate`], from `DecoderConfig`) match an exporter by longest prefix; they fill the gap
//! (OVS never exports a rate; OpenShift's default is 1:400) or, with `override_exported`, win over
//! whatever the exporter says. Records carry the raw counters and the rate; nothing is renormalized.

use super::template::{FastMap, hash_addr};
use std::hash::{Hash, Hasher};
use std::net::IpAddr;

/// A configured rate for every exporter inside `prefix/prefix_len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfiguredRate {
    pub prefix: IpAddr,
    pub prefix_len: u8,
    /// 1 in `rate` packets.
    pub rate: u32,
    /// Use this rate even when the exporter sends its own.
    pub override_exported: bool,
}

impl ConfiguredRate {
    fn matches(&self, addr: IpAddr) -> bool {
        let (a, p, bits) = match (addr, self.prefix) {
            (IpAddr::V4(a), IpAddr::V4(p)) => {
                (u128::from(a.to_bits()), u128::from(p.to_bits()), 32)
            }
            (IpAddr::V6(a), IpAddr::V6(p)) => (a.to_bits(), p.to_bits(), 128),
            (IpAddr::V6(a), IpAddr::V4(p)) => match a.to_ipv4_mapped() {
                Some(a) => (u128::from(a.to_bits()), u128::from(p.to_bits()), 32),
                None => return false,
            },
            (IpAddr::V4(_), IpAddr::V6(_)) => return false,
        };
        let len = u32::from(self.prefix_len).min(bits);
        if len == 0 {
            return true;
        }
        let shift = bits - len;
        (a >> shift) == (p >> shift)
    }
}

/// Scope of a learned rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SamplerKey {
    pub exporter: IpAddr,
    /// Observation domain / source id / v5 engine (type<<8 | id).
    pub domain: u32,
    /// Sampler / selector id (0: the exporter-wide rate). 64 bits: IPFIX selectorId (302) is.
    pub sampler: u64,
}

impl Hash for SamplerKey {
    #[inline(always)]
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_addr(
            self.exporter,
            u64::from(self.domain) ^ self.sampler.rotate_left(32),
            state,
        );
    }
}

/// Most learned rates kept; beyond, new samplers are not learned (counted by the decoder).
pub const MAX_LEARNED: usize = 1 << 16;

/// Learned and configured sampling rates of one worker.
#[derive(Debug, Default)]
pub struct SamplingTable {
    learned: FastMap<SamplerKey, u32>,
    configured: Vec<ConfiguredRate>,
}

/// The rates that apply to one datagram's records, resolved once per datagram.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DatagramRates {
    /// A configured override: every record gets it.
    pub forced: Option<u32>,
    /// For records without a rate of their own and without a sampler id: learned exporter-wide
    /// rate, else the configured one, else 0 (unknown).
    pub default: u32,
    /// The configured rate, used when a record's sampler id has no learned rate.
    pub configured: u32,
}

impl SamplingTable {
    pub fn new(configured: Vec<ConfiguredRate>) -> Self {
        SamplingTable {
            learned: FastMap::default(),
            configured,
        }
    }

    /// Replace the configured rates (a reload); learned rates are kept.
    pub fn set_configured(&mut self, configured: Vec<ConfiguredRate>) {
        self.configured = configured;
    }

    /// Remember an exported rate; false when the table is full and `key` is new.
    pub fn learn(&mut self, key: SamplerKey, rate: u32) -> bool {
        if self.learned.len() >= MAX_LEARNED && !self.learned.contains_key(&key) {
            return false;
        }
        self.learned.insert(key, rate);
        true
    }

    pub fn learned(&self, key: SamplerKey) -> Option<u32> {
        self.learned.get(&key).copied()
    }

    /// Number of learned rates.
    pub fn learned_len(&self) -> usize {
        self.learned.len()
    }

    /// The configured rate with the longest prefix containing `exporter`.
    pub fn configured(&self, exporter: IpAddr) -> Option<&ConfiguredRate> {
        self.configured
            .iter()
            .filter(|c| c.matches(exporter))
            .max_by_key(|c| c.prefix_len)
    }

    /// Resolve the per-datagram rates for (`exporter`, `domain`). Nothing configured and nothing
    /// learned (Open vSwitch exports no rate): all unknown, without a prefix walk or lookup.
    #[inline]
    pub fn rates_for(&self, exporter: IpAddr, domain: u32) -> DatagramRates {
        if self.configured.is_empty() && self.learned.is_empty() {
            return DatagramRates::default();
        }
        self.rates_looked_up(exporter, domain)
    }

    fn rates_looked_up(&self, exporter: IpAddr, domain: u32) -> DatagramRates {
        let configured = self.configured(exporter);
        let forced = configured.filter(|c| c.override_exported).map(|c| c.rate);
        let configured = configured.map_or(0, |c| c.rate);
        let learned = self.learned(SamplerKey {
            exporter,
            domain,
            sampler: 0,
        });
        DatagramRates {
            forced,
            default: learned.unwrap_or(configured),
            configured,
        }
    }

    /// The rate of one record: forced, else its own exported rate, else its sampler's learned rate,
    /// else the datagram default.
    #[inline]
    pub fn resolve(
        &self,
        rates: &DatagramRates,
        exporter: IpAddr,
        domain: u32,
        sampler: u64,
        exported: Option<u32>,
    ) -> u32 {
        if let Some(r) = rates.forced {
            return r;
        }
        if let Some(r) = exported {
            return r;
        }
        if sampler == 0 {
            return rates.default;
        }
        self.learned(SamplerKey {
            exporter,
            domain,
            sampler,
        })
        .unwrap_or(rates.configured)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(prefix: &str, len: u8, rate: u32, over: bool) -> ConfiguredRate {
        ConfiguredRate {
            prefix: prefix.parse().unwrap(),
            prefix_len: len,
            rate,
            override_exported: over,
        }
    }

    #[test]
    fn longest_prefix_wins_and_families_do_not_mix() {
        let t = SamplingTable::new(vec![
            cfg("10.0.0.0", 8, 400, false),
            cfg("10.1.0.0", 16, 1000, false),
            cfg("2001:db8::", 32, 64, false),
            cfg("0.0.0.0", 0, 7, false),
        ]);
        let rate = |a: &str| t.configured(a.parse().unwrap()).map(|c| c.rate);
        assert_eq!(rate("10.1.2.3"), Some(1000));
        assert_eq!(rate("10.2.2.3"), Some(400));
        assert_eq!(rate("192.0.2.1"), Some(7));
        assert_eq!(rate("::ffff:10.1.0.9"), Some(1000));
        assert_eq!(rate("2001:db8::5"), Some(64));
        assert_eq!(rate("2001:db9::5"), None);
    }

    #[test]
    fn precedence_forced_exported_learned_configured() {
        let exp: IpAddr = "10.0.0.1".parse().unwrap();
        let mut t = SamplingTable::new(vec![cfg("10.0.0.0", 8, 400, false)]);
        let r = t.rates_for(exp, 0);
        assert_eq!(r.default, 400, "configured fills the gap");
        assert_eq!(t.resolve(&r, exp, 0, 0, Some(50)), 50);
        assert!(t.learn(
            SamplerKey {
                exporter: exp,
                domain: 0,
                sampler: 0
            },
            100
        ));
        assert!(t.learn(
            SamplerKey {
                exporter: exp,
                domain: 0,
                sampler: 9
            },
            2000
        ));
        let r = t.rates_for(exp, 0);
        assert_eq!(t.resolve(&r, exp, 0, 0, None), 100);
        assert_eq!(t.resolve(&r, exp, 0, 9, None), 2000);
        assert_eq!(t.resolve(&r, exp, 0, 8, None), 400);
        assert_eq!(
            t.resolve(&r, exp, 1, 0, None),
            100,
            "rates_for decided the default"
        );
        let t = SamplingTable::new(vec![cfg("10.0.0.0", 8, 400, true)]);
        let r = t.rates_for(exp, 0);
        assert_eq!(t.resolve(&r, exp, 0, 9, Some(50)), 400, "override");
        let none = SamplingTable::default();
        assert_eq!(none.resolve(&none.rates_for(exp, 0), exp, 0, 0, None), 0);
    }

    #[test]
    fn an_empty_table_answers_unknown_until_something_is_learned_or_configured() {
        let exp: IpAddr = "10.0.0.1".parse().unwrap();
        let mut t = SamplingTable::default();
        assert_eq!(t.rates_for(exp, 3), DatagramRates::default());
        let key = SamplerKey {
            exporter: exp,
            domain: 3,
            sampler: 0,
        };
        assert!(t.learn(key, 64));
        assert_eq!(
            t.rates_for(exp, 3).default,
            64,
            "learned, nothing configured"
        );
        assert_eq!(t.rates_for(exp, 4).default, 0);
        let mut t = SamplingTable::default();
        t.set_configured(vec![cfg("10.0.0.0", 8, 400, true)]);
        let r = t.rates_for(exp, 3);
        assert_eq!((r.forced, r.default, r.configured), (Some(400), 400, 400));
        t.set_configured(Vec::new());
        assert_eq!(
            t.rates_for(exp, 3),
            DatagramRates::default(),
            "reloaded empty"
        );
    }
}
