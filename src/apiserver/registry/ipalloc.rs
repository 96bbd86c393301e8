//! Pools the Service registry hands out from: ClusterIPs from `--service-cluster-ip-range` and
//! node ports from `--service-node-port-range`. Mirrors upstream's `pkg/registry/core/service/
//! ipallocator` and `portallocator`, kept in memory and rebuilt from the stored Services at start.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::sync::Mutex;

/// An IPv4 CIDR such as `10.0.0.0/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cidr {
    base: u32,
    prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (ip, prefix) = s.split_once('/').ok_or_else(|| format!("{s:?} is not a CIDR"))?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| format!("{s:?} is not an IPv4 CIDR"))?;
        let prefix: u8 = prefix.parse().map_err(|_| format!("{s:?} has a bad prefix length"))?;
        if !(8..=30).contains(&prefix) {
            return Err(format!("{s:?}: the prefix length must be between 8 and 30"));
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(Self {
            base: u32::from(ip) & mask,
            prefix,
        })
    }
}

impl Cidr {
    /// The usable addresses: all but the network and broadcast addresses.
    fn usable(&self) -> RangeInclusive<u32> {
        let size = 1u32 << (32 - self.prefix);
        (self.base + 1)..=(self.base + size - 2)
    }

    /// Whether `ip` is a usable address of this range.
    pub(crate) fn contains(&self, ip: Ipv4Addr) -> bool {
        self.usable().contains(&u32::from(ip))
    }
}

/// Why an allocation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AllocError {
    /// The requested value is outside the pool.
    #[error("provided {0} is not in the valid range")]
    OutOfRange(String),
    /// The requested value is taken.
    #[error("provided {0} is already allocated")]
    Taken(String),
    /// Nothing is left.
    #[error("range is full")]
    Full,
}

/// A thread-safe pool of numbers (IPs as u32, or ports).
#[derive(Debug)]
pub(crate) struct Pool {
    range: RangeInclusive<u32>,
    used: Mutex<BTreeSet<u32>>,
    what: &'static str,
}

impl Pool {
    /// A pool of the ClusterIPs of `cidr`.
    pub(crate) fn ips(cidr: Cidr) -> Self {
        Self::new(cidr.usable(), "IP")
    }

    /// A pool of node ports.
    pub(crate) fn ports(range: RangeInclusive<u16>) -> Self {
        Self::new(u32::from(*range.start())..=u32::from(*range.end()), "port")
    }

    fn new(range: RangeInclusive<u32>, what: &'static str) -> Self {
        Self {
            range,
            used: Mutex::new(BTreeSet::new()),
            what,
        }
    }

    fn used(&self) -> std::sync::MutexGuard<'_, BTreeSet<u32>> {
        self.used.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the value `n`.
    pub(crate) fn allocate(&self, n: u32) -> Result<(), AllocError> {
        if !self.range.contains(&n) {
            return Err(AllocError::OutOfRange(self.what.into()));
        }
        if !self.used().insert(n) {
            return Err(AllocError::Taken(self.what.into()));
        }
        Ok(())
    }

    /// Takes any free value, scanning from a random start so restarts do not reuse recently
    /// released values first.
    pub(crate) fn allocate_next(&self) -> Result<u32, AllocError> {
        let mut used = self.used();
        let size = self.range.end() - self.range.start() + 1;
        let offset = uuid::Uuid::new_v4().as_u128() as u32 % size;
        for i in 0..size {
            let n = self.range.start() + (offset + i) % size;
            if used.insert(n) {
                return Ok(n);
            }
        }
        Err(AllocError::Full)
    }

    /// Gives `n` back; releasing a free value does nothing.
    pub(crate) fn release(&self, n: u32) {
        self.used().remove(&n);
    }

    /// Marks `n` used while rebuilding from stored objects; out-of-range values are ignored.
    pub(crate) fn restore(&self, n: u32) {
        if self.range.contains(&n) {
            self.used().insert(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_pool_skips_network_and_broadcast_and_runs_out() {
        let cidr: Cidr = "10.0.0.0/30".parse().unwrap();
        let pool = Pool::ips(cidr);
        let mut got = vec![pool.allocate_next().unwrap(), pool.allocate_next().unwrap()];
        got.sort();
        assert_eq!(
            got,
            vec![
                u32::from(Ipv4Addr::new(10, 0, 0, 1)),
                u32::from(Ipv4Addr::new(10, 0, 0, 2))
            ]
        );
        assert_eq!(pool.allocate_next(), Err(AllocError::Full));
        pool.release(got[0]);
        assert_eq!(pool.allocate(got[0]), Ok(()));
        assert_eq!(pool.allocate(got[0]), Err(AllocError::Taken("IP".into())));
    }

    #[test]
    fn port_pool_rejects_out_of_range() {
        let pool = Pool::ports(30000..=30001);
        assert_eq!(pool.allocate(80), Err(AllocError::OutOfRange("port".into())));
        assert!(pool.allocate(30000).is_ok());
        assert_eq!(pool.allocate_next(), Ok(30001));
    }

    #[test]
    fn bad_cidrs_are_refused() {
        assert!("10.0.0.0".parse::<Cidr>().is_err());
        assert!("10.0.0.0/31".parse::<Cidr>().is_err());
        assert!("fd00::/64".parse::<Cidr>().is_err());
        assert!(
            "10.0.0.7/24"
                .parse::<Cidr>()
                .unwrap()
                .contains(Ipv4Addr::new(10, 0, 0, 1))
        );
    }
}
