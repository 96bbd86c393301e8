//! The ranges Services allocate from: ClusterIPs from `--service-cluster-ip-range` and node ports
//! from `--service-node-port-range`. Mirrors upstream's `pkg/registry/core/service/allocator`
//! (a bitmap of the range), its `storage` (the bitmap kept in the store as a RangeAllocation) and
//! the repair controllers of `ipallocator/controller` and `portallocator/controller`.
//!
//! Each range lives under one key (`/registry/ranges/serviceips`, `.../servicenodeports`).
//! Allocating or releasing reads it, changes the bitmap and writes it back on the revision it
//! read, so apiservers sharing one store never hand out the same value. A Service is stored after
//! its values are allocated and released after it is deleted; an apiserver that crashes in
//! between leaks them. The repair, at start and every few minutes, marks what stored Services
//! hold and frees what none has held for several passes (a create may be between the two steps).

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};

use base64::Engine;
use bytes::Bytes;
use serde::Deserialize;

use crate::apiserver::storage::{self, KeyValue, Store};

/// How many times a change is tried against other apiservers' writes before it gives up.
const MAX_TRIES: usize = 100;
/// In how many repair passes in a row a value must be allocated to no Service before it is
/// freed; upstream's `numRepairsBeforeLeakCleanup`.
const LEAK_PASSES: u32 = 3;

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

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.prefix)
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

/// Why an allocation failed. `index` is the position of the failed value among those asked for.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AllocError {
    /// The requested value is outside the range.
    #[error("provided {what} is not in the valid range")]
    OutOfRange { what: &'static str, index: usize },
    /// The requested value is taken.
    #[error("provided {what} is already allocated")]
    Taken { what: &'static str, index: usize },
    /// Nothing is left.
    #[error("range is full")]
    Full { index: usize },
    /// The stored RangeAllocation cannot be used; the repair rewrites it.
    #[error("the allocation of service {what}s in {key} is unusable: {reason}")]
    Unusable {
        what: &'static str,
        key: &'static str,
        reason: String,
    },
    /// The store failed, or other apiservers' writes kept getting in between.
    #[error("storing the allocation failed")]
    Storage(#[source] storage::Error),
}

impl AllocError {
    /// Which of the values asked for was refused, for a refusal of a value.
    pub(crate) fn index(&self) -> Option<usize> {
        match self {
            Self::OutOfRange { index, .. } | Self::Taken { index, .. } | Self::Full { index } => Some(*index),
            Self::Unusable { .. } | Self::Storage(_) => None,
        }
    }
}

/// Which offsets of a range are taken: upstream's `AllocationBitmap`. It is stored as upstream
/// stores it, the big-endian bytes of the integer whose bit `i` marks offset `i`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Bitmap {
    words: Vec<u64>,
    size: u32,
}

impl Bitmap {
    fn new(size: u32) -> Self {
        Self {
            words: vec![0; size.div_ceil(64) as usize],
            size,
        }
    }

    /// The bitmap of `bytes`; bits beyond the range are dropped.
    fn decode(size: u32, bytes: &[u8]) -> Self {
        let mut bits = Self::new(size);
        for (i, byte) in bytes.iter().rev().enumerate() {
            for bit in (0..8).filter(|bit| byte >> bit & 1 == 1) {
                if let Ok(offset) = u32::try_from(i * 8 + bit) {
                    bits.set(offset);
                }
            }
        }
        bits
    }

    fn encode(&self) -> Vec<u8> {
        let mut bytes: Vec<u8> = self.words.iter().flat_map(|w| w.to_le_bytes()).collect();
        while bytes.last() == Some(&0) {
            bytes.pop();
        }
        bytes.reverse();
        bytes
    }

    fn has(&self, offset: u32) -> bool {
        offset < self.size && self.words[offset as usize / 64] & (1 << (offset % 64)) != 0
    }

    /// Marks `offset` taken; `false` if it already was (or lies beyond the range).
    fn set(&mut self, offset: u32) -> bool {
        if offset >= self.size || self.has(offset) {
            return false;
        }
        self.words[offset as usize / 64] |= 1 << (offset % 64);
        true
    }

    fn clear(&mut self, offset: u32) {
        if offset < self.size {
            self.words[offset as usize / 64] &= !(1 << (offset % 64));
        }
    }

    /// Takes the first free offset at or after `from`, wrapping around.
    fn set_any(&mut self, from: u32) -> Option<u32> {
        let offset = (from..self.size).chain(0..from).find(|o| !self.has(*o))?;
        self.set(offset);
        Some(offset)
    }

    fn offsets(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.size).filter(|o| self.has(*o))
    }
}

/// A RangeAllocation as stored (`kind`, `apiVersion` and `metadata` are only written).
#[derive(Deserialize)]
struct RangeAllocation {
    range: String,
    #[serde(default)]
    data: Option<String>,
}

/// One range kept in the store; see the module documentation.
pub(crate) struct Range {
    store: Arc<dyn Store>,
    key: &'static str,
    /// The range as its RangeAllocation names it: `10.0.0.0/24`, `30000-32767`.
    spec: String,
    first: u32,
    size: u32,
    /// What the values are, for messages: "IP" or "port".
    what: &'static str,
    /// One change at a time from this apiserver: its own writes would only conflict.
    changing: tokio::sync::Mutex<()>,
    /// Per leaked value, how many repair passes in a row found it held by no Service.
    leaks: Mutex<HashMap<u32, u32>>,
}

impl Range {
    /// The ClusterIPs of `cidr`, kept in `store`.
    pub(crate) fn ips(cidr: Cidr, store: Arc<dyn Store>) -> Self {
        Self::new(
            store,
            "/registry/ranges/serviceips",
            cidr.to_string(),
            cidr.usable(),
            "IP",
        )
    }

    /// The node ports of `ports`, kept in `store`.
    pub(crate) fn ports(ports: RangeInclusive<u16>, store: Arc<dyn Store>) -> Self {
        let spec = format!("{}-{}", ports.start(), ports.end());
        let values = u32::from(*ports.start())..=u32::from(*ports.end());
        Self::new(store, "/registry/ranges/servicenodeports", spec, values, "port")
    }

    fn new(
        store: Arc<dyn Store>,
        key: &'static str,
        spec: String,
        values: RangeInclusive<u32>,
        what: &'static str,
    ) -> Self {
        Self {
            store,
            key,
            spec,
            first: *values.start(),
            size: values.end() - values.start() + 1,
            what,
            changing: tokio::sync::Mutex::new(()),
            leaks: Mutex::default(),
        }
    }

    fn offset(&self, value: u32) -> Option<u32> {
        value.checked_sub(self.first).filter(|o| *o < self.size)
    }

    fn unusable(&self, reason: impl Into<String>) -> AllocError {
        AllocError::Unusable {
            what: self.what,
            key: self.key,
            reason: reason.into(),
        }
    }

    /// The bitmap stored in `kv`, if it is of this range.
    fn decode(&self, kv: &KeyValue) -> Result<Bitmap, AllocError> {
        let stored: RangeAllocation =
            serde_json::from_slice(&kv.value).map_err(|e| self.unusable(format!("it does not decode: {e}")))?;
        if stored.range != self.spec {
            return Err(self.unusable(format!("it covers {}, not {}", stored.range, self.spec)));
        }
        let data = base64::engine::general_purpose::STANDARD
            .decode(stored.data.unwrap_or_default())
            .map_err(|e| self.unusable(format!("its data is not base64: {e}")))?;
        Ok(Bitmap::decode(self.size, &data))
    }

    fn encode(&self, bits: &Bitmap) -> Bytes {
        let doc = serde_json::json!({
            "kind": "RangeAllocation",
            "apiVersion": "v1",
            "metadata": {},
            "range": self.spec,
            "data": base64::engine::general_purpose::STANDARD.encode(bits.encode()),
        });
        Bytes::from(doc.to_string())
    }

    /// Takes the values asked for, all or none, in one write: `Some(value)` for that value,
    /// `None` for any free one (picked from a random place, so restarts do not reuse recently
    /// released values first). Returns them in the order asked.
    pub(crate) async fn allocate(&self, wanted: &[Option<u32>]) -> Result<Vec<u32>, AllocError> {
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        self.change(|bits| {
            let mut taken = vec![0; wanted.len()];
            // Named values first, so that none is refused for one a free pick took.
            for (index, value) in wanted.iter().enumerate() {
                if let Some(value) = value {
                    let offset = self
                        .offset(*value)
                        .ok_or(AllocError::OutOfRange { what: self.what, index })?;
                    if !bits.set(offset) {
                        return Err(AllocError::Taken { what: self.what, index });
                    }
                    taken[index] = *value;
                }
            }
            for (index, _) in wanted.iter().enumerate().filter(|(_, value)| value.is_none()) {
                let from = (uuid::Uuid::new_v4().as_u128() % u128::from(self.size)) as u32;
                taken[index] = self.first + bits.set_any(from).ok_or(AllocError::Full { index })?;
            }
            Ok(taken)
        })
        .await
    }

    /// Gives `values` back; values that are free or outside the range are ignored.
    pub(crate) async fn release(&self, values: &[u32]) -> Result<(), AllocError> {
        if values.is_empty() {
            return Ok(());
        }
        self.change(|bits| {
            for offset in values.iter().filter_map(|v| self.offset(*v)) {
                bits.clear(offset);
            }
            Ok(())
        })
        .await
    }

    /// Reads the bitmap, lets `change` change it, and writes it back on the revision read,
    /// starting over from a fresh read when another apiserver wrote in between. A change that
    /// changes nothing writes nothing.
    async fn change<T>(&self, mut change: impl FnMut(&mut Bitmap) -> Result<T, AllocError>) -> Result<T, AllocError> {
        let _one_at_a_time = self.changing.lock().await;
        let mut tries = 0;
        loop {
            tries += 1;
            let current = self
                .store
                .get(self.key)
                .await
                .map_err(AllocError::Storage)?
                .ok_or_else(|| self.unusable("it is missing"))?;
            let mut bits = self.decode(&current)?;
            let before = bits.clone();
            let out = change(&mut bits)?;
            if bits == before {
                return Ok(out);
            }
            match self
                .store
                .update(self.key, self.encode(&bits), current.mod_revision)
                .await
            {
                Ok(_) => return Ok(out),
                Err(storage::Error::Conflict { .. }) if tries < MAX_TRIES => {}
                Err(e) => return Err(AllocError::Storage(e)),
            }
        }
    }

    /// One repair pass, upstream's `Repair.runOnce`: the stored bitmap becomes the values that
    /// `held` returns (those of the stored Services, listed after the bitmap is read) plus the
    /// values allocated to no Service in fewer than `LEAK_PASSES` passes in a row. Creates the
    /// RangeAllocation if it is missing, and rewrites one of another range.
    pub(crate) async fn repair<F, Fut>(&self, held: F) -> Result<(), storage::Error>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<BTreeSet<u32>, storage::Error>>,
    {
        let _one_at_a_time = self.changing.lock().await;
        let mut tries = 0;
        loop {
            tries += 1;
            let current = self.store.get(self.key).await?;
            let allocated = match current.as_ref().map(|kv| self.decode(kv)) {
                Some(Ok(bits)) => Some(bits),
                Some(Err(err)) => {
                    tracing::warn!(error = %err, "rebuilding the allocation from the stored Services");
                    None
                }
                None => None,
            };
            let held = held().await?;
            let mut rebuilt = Bitmap::new(self.size);
            for value in &held {
                match self.offset(*value) {
                    Some(offset) => {
                        rebuilt.set(offset);
                    }
                    None => {
                        tracing::warn!(what = self.what, value, range = %self.spec, "a Service holds a value outside the range; please recreate it");
                    }
                }
            }
            let seen = self.leaks.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let mut leaks = HashMap::new();
            let unheld: Vec<u32> = allocated
                .iter()
                .flat_map(Bitmap::offsets)
                .filter(|o| !rebuilt.has(*o))
                .collect();
            for offset in unheld {
                let value = self.first + offset;
                let passes = seen.get(&value).copied().unwrap_or(0) + 1;
                if passes < LEAK_PASSES {
                    rebuilt.set(offset);
                    leaks.insert(value, passes);
                } else {
                    tracing::warn!(what = self.what, value, "freeing a value no Service holds");
                }
            }
            let written = match (&current, &allocated) {
                (Some(_), Some(bits)) if *bits == rebuilt => Ok(()),
                (Some(kv), _) => self
                    .store
                    .update(self.key, self.encode(&rebuilt), kv.mod_revision)
                    .await
                    .map(drop),
                (None, _) => self.store.create(self.key, self.encode(&rebuilt)).await.map(drop),
            };
            match written {
                Ok(()) => {
                    *self.leaks.lock().unwrap_or_else(|p| p.into_inner()) = leaks;
                    return Ok(());
                }
                Err(storage::Error::Conflict { .. } | storage::Error::AlreadyExists { .. }) if tries < MAX_TRIES => {}
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::storage::EmbeddedStore;

    fn store() -> (tempfile::TempDir, Arc<dyn Store>) {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path(), 100).unwrap();
        (dir, Arc::new(store))
    }

    fn ip(s: &str) -> u32 {
        u32::from(s.parse::<Ipv4Addr>().unwrap())
    }

    async fn nothing_held() -> Result<BTreeSet<u32>, storage::Error> {
        Ok(BTreeSet::new())
    }

    #[test]
    fn bitmaps_are_stored_as_upstreams_big_endian_integer() {
        let mut bits = Bitmap::new(300);
        assert!(bits.set(0) && bits.set(9) && bits.set(299));
        assert!(!bits.set(9));
        let bytes = bits.encode();
        assert_eq!(bytes.len(), 38);
        assert_eq!(bytes[0], 0b1000, "bit 299 is bit 3 of the most significant byte");
        assert_eq!(&bytes[36..], [0b10, 0b1]);
        assert_eq!(Bitmap::decode(300, &bytes), bits);
        assert_eq!(Bitmap::new(300).encode(), Vec::<u8>::new());
    }

    #[tokio::test]
    async fn cidr_ranges_skip_network_and_broadcast_and_run_out() {
        let (_dir, store) = store();
        let ips = Range::ips("10.0.0.0/30".parse().unwrap(), store.clone());
        ips.repair(nothing_held).await.unwrap();
        let mut got = ips.allocate(&[None, None]).await.unwrap();
        got.sort();
        assert_eq!(got, [ip("10.0.0.1"), ip("10.0.0.2")]);
        assert!(matches!(
            ips.allocate(&[None]).await,
            Err(AllocError::Full { index: 0 })
        ));
        ips.release(&got[..1]).await.unwrap();
        assert_eq!(ips.allocate(&[Some(got[0])]).await.unwrap(), [got[0]]);
        assert!(matches!(
            ips.allocate(&[Some(got[0])]).await,
            Err(AllocError::Taken { what: "IP", index: 0 })
        ));
        let stored: serde_json::Value =
            serde_json::from_slice(&store.get("/registry/ranges/serviceips").await.unwrap().unwrap().value).unwrap();
        assert_eq!(
            (&stored["kind"], &stored["range"], &stored["data"]),
            (&"RangeAllocation".into(), &"10.0.0.0/30".into(), &"Aw==".into())
        );
    }

    #[tokio::test]
    async fn port_ranges_take_all_the_values_asked_for_or_none() {
        let (_dir, store) = store();
        let ports = Range::ports(30000..=30002, store);
        assert!(
            matches!(ports.allocate(&[None]).await, Err(AllocError::Unusable { .. })),
            "nothing is allocated before the repair has written the range"
        );
        ports.repair(nothing_held).await.unwrap();
        assert!(matches!(
            ports.allocate(&[Some(80)]).await,
            Err(AllocError::OutOfRange { what: "port", index: 0 })
        ));
        assert!(matches!(
            ports.allocate(&[None, Some(30000), Some(30000)]).await,
            Err(AllocError::Taken { index: 2, .. })
        ));
        let mut all = ports.allocate(&[None, None, Some(30001)]).await.unwrap();
        assert_eq!(all[2], 30001);
        all.sort();
        assert_eq!(all, [30000, 30001, 30002]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ranges_sharing_a_store_never_hand_out_a_value_twice() {
        let (_dir, store) = store();
        // Two apiservers' views of one range.
        let views = [0, 1].map(|_| Arc::new(Range::ports(30000..=30039, store.clone())));
        views[0].repair(nothing_held).await.unwrap();
        let tasks: Vec<_> = (0..40)
            .map(|i| {
                let range = views[i % 2].clone();
                tokio::spawn(async move { range.allocate(&[None]).await.unwrap()[0] })
            })
            .collect();
        let mut got = BTreeSet::new();
        for task in tasks {
            assert!(got.insert(task.await.unwrap()), "a value was handed out twice");
        }
        assert_eq!(got.len(), 40);
        assert!(matches!(views[1].allocate(&[None]).await, Err(AllocError::Full { .. })));
    }

    #[tokio::test]
    async fn repair_marks_what_services_hold_and_frees_leaks_after_three_passes() {
        let (_dir, store) = store();
        let ports = Range::ports(30000..=30009, store);
        ports.repair(nothing_held).await.unwrap();
        ports.allocate(&[Some(30000), Some(30001)]).await.unwrap();
        // 30000 leaked; 30001 and 30002 are held, though only 30001 was allocated.
        let held = || async { Ok(BTreeSet::from([30001, 30002])) };
        for pass in 1..=3 {
            ports.repair(held).await.unwrap();
            let leaked_still_taken = matches!(ports.allocate(&[Some(30000)]).await, Err(AllocError::Taken { .. }));
            assert_eq!(leaked_still_taken, pass < 3, "pass {pass}");
            if !leaked_still_taken {
                ports.release(&[30000]).await.unwrap();
            }
            for value in [30001, 30002] {
                assert!(matches!(
                    ports.allocate(&[Some(value)]).await,
                    Err(AllocError::Taken { .. })
                ));
            }
        }
    }
}
