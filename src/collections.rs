//! Collections that grow without a pause.
//!
//! A `HashMap` or a `VecDeque` grows by doubling: the insert that crosses
//! the threshold moves every element at once. With a few hundred thousand
//! reservations in one book that one insert took tens of milliseconds, and
//! every request queued behind the actor waited for it (the load-test
//! harness saw it as a stalled second in the open loop; BENCHMARKS.md,
//! "Growing without a pause"). These split the elements into segments that
//! grow one at a time, so no single insert moves more than one segment.

use ahash::AHashMap;
use std::borrow::Borrow;
use std::collections::VecDeque;
use std::hash::Hash;

/// Segments of a `SegmentedMap`: at 1,000,000 elements a resize moves
/// about 4,000 of them.
const SEGMENTS: usize = 256;

/// A hash map in `SEGMENTS` independent maps, chosen by the key's hash.
pub struct SegmentedMap<K, V> {
    pick: ahash::RandomState,
    segments: Vec<AHashMap<K, V>>,
    len: usize,
}

impl<K: Hash + Eq, V> Default for SegmentedMap<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Hash + Eq, V> SegmentedMap<K, V> {
    pub fn new() -> Self {
        SegmentedMap {
            pick: ahash::RandomState::new(),
            segments: (0..SEGMENTS).map(|_| AHashMap::new()).collect(),
            len: 0,
        }
    }

    fn segment<Q: Hash + ?Sized>(&self, k: &Q) -> usize {
        // The top bits: the inner maps use the low ones of their own hash.
        (self.pick.hash_one(k) >> 56) as usize % SEGMENTS
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn insert(&mut self, k: K, v: V) -> Option<V> {
        let s = self.segment(&k);
        let old = self.segments[s].insert(k, v);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    pub fn get<Q>(&self, k: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.segments[self.segment(k)].get(k)
    }

    pub fn get_mut<Q>(&mut self, k: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let s = self.segment(k);
        self.segments[s].get_mut(k)
    }

    pub fn remove<Q>(&mut self, k: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let s = self.segment(k);
        let old = self.segments[s].remove(k);
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.segments.iter().flat_map(|m| m.values())
    }
}

impl<K: Hash + Eq, V> FromIterator<(K, V)> for SegmentedMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut m = SegmentedMap::new();
        for (k, v) in iter {
            m.insert(k, v);
        }
        m
    }
}

/// Elements of one chunk of a `ChunkedQueue`.
const CHUNK: usize = 4096;

/// A FIFO queue in chunks of `CHUNK` elements allocated once each: pushing
/// never moves what is already queued.
pub struct ChunkedQueue<T> {
    chunks: VecDeque<VecDeque<T>>,
    len: usize,
}

impl<T> Default for ChunkedQueue<T> {
    fn default() -> Self {
        ChunkedQueue {
            chunks: VecDeque::new(),
            len: 0,
        }
    }
}

impl<T> ChunkedQueue<T> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn push_back(&mut self, t: T) {
        match self.chunks.back_mut() {
            Some(c) if c.len() < CHUNK => c.push_back(t),
            _ => {
                let mut c = VecDeque::with_capacity(CHUNK);
                c.push_back(t);
                self.chunks.push_back(c);
            }
        }
        self.len += 1;
    }

    pub fn front(&self) -> Option<&T> {
        self.chunks.front().and_then(|c| c.front())
    }

    pub fn pop_front(&mut self) -> Option<T> {
        let c = self.chunks.front_mut()?;
        let t = c.pop_front();
        if c.is_empty() {
            self.chunks.pop_front();
        }
        if t.is_some() {
            self.len -= 1;
        }
        t
    }
}

impl<T> FromIterator<T> for ChunkedQueue<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let mut q = ChunkedQueue::default();
        for t in iter {
            q.push_back(t);
        }
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u16, u32),
        Remove(u16),
        Get(u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (any::<u16>(), any::<u32>()).prop_map(|(k, v)| Op::Insert(k % 2000, v)),
            any::<u16>().prop_map(|k| Op::Remove(k % 2000)),
            any::<u16>().prop_map(|k| Op::Get(k % 2000)),
        ]
    }

    proptest! {
        #[test]
        fn the_segmented_map_answers_as_a_hash_map_does(ops in prop::collection::vec(op(), 0..3000)) {
            let mut m: SegmentedMap<u16, u32> = SegmentedMap::new();
            let mut model: std::collections::HashMap<u16, u32> = Default::default();
            for o in ops {
                match o {
                    Op::Insert(k, v) => prop_assert_eq!(m.insert(k, v), model.insert(k, v)),
                    Op::Remove(k) => prop_assert_eq!(m.remove(&k), model.remove(&k)),
                    Op::Get(k) => {
                        prop_assert_eq!(m.get(&k), model.get(&k));
                        if let Some(v) = m.get_mut(&k) {
                            *v = v.wrapping_add(1);
                            *model.get_mut(&k).expect("same keys") = *v;
                        }
                    }
                }
                prop_assert_eq!(m.len(), model.len());
            }
            let mut a: Vec<u32> = m.values().copied().collect();
            let mut b: Vec<u32> = model.values().copied().collect();
            a.sort_unstable();
            b.sort_unstable();
            prop_assert_eq!(a, b);
        }

        #[test]
        fn the_chunked_queue_is_fifo(ops in prop::collection::vec(any::<Option<u32>>(), 0..20_000)) {
            let mut q = ChunkedQueue::default();
            let mut model = VecDeque::new();
            for o in ops {
                match o {
                    Some(v) => { q.push_back(v); model.push_back(v); }
                    None => prop_assert_eq!(q.pop_front(), model.pop_front()),
                }
                prop_assert_eq!(q.front(), model.front());
                prop_assert_eq!(q.len(), model.len());
            }
        }
    }

    #[test]
    fn keys_spread_over_the_segments() {
        let m: SegmentedMap<String, ()> = (0..100_000).map(|i| (format!("r{i:08x}"), ())).collect();
        let biggest = m.segments.iter().map(|s| s.len()).max().unwrap_or(0);
        // 100,000 / 256 = 390 on average.
        assert!(biggest < 600, "one segment holds {biggest}");
        assert_eq!(m.len(), 100_000);
    }
}
