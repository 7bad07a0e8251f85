//! A map and a set kept in a `Vec`, in insertion order. A page holds a handful of connections
//! and timers: a linear search through a few entries is as fast as a B-tree's, and far less
//! code in the bundle (the B-tree took about 25 KB of the WebAssembly).

/// A map from `K` to `V` for a few entries.
#[derive(Clone, Debug)]
pub struct VecMap<K, V> {
    entries: Vec<(K, V)>,
}

impl<K, V> Default for VecMap<K, V> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
        }
    }
}

impl<K: PartialEq, V> VecMap<K, V> {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of `key`.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The value of `key`, to change.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.entries
            .iter_mut()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// Sets `key` to `value`; returns the value it replaced, which keeps its place.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.get_mut(&key) {
            Some(old) => Some(std::mem::replace(old, value)),
            None => {
                self.entries.push((key, value));
                None
            }
        }
    }

    /// Takes `key` out; the others keep their order.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let at = self.entries.iter().position(|(k, _)| k == key)?;
        Some(self.entries.remove(at).1)
    }

    /// Whether `key` is there.
    pub fn contains_key(&self, key: &K) -> bool {
        self.get(key).is_some()
    }

    /// Whether there is nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The keys, in insertion order.
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.entries.iter().map(|(k, _)| k)
    }

    /// The values, in insertion order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.iter().map(|(_, v)| v)
    }
}

/// A set of `K` for a few entries.
#[derive(Clone, Debug)]
pub struct VecSet<K>(VecMap<K, ()>);

impl<K> Default for VecSet<K> {
    fn default() -> Self {
        Self(VecMap::default())
    }
}

impl<K: PartialEq> VecSet<K> {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `key`; false if it was there already.
    pub fn insert(&mut self, key: K) -> bool {
        self.0.insert(key, ()).is_none()
    }

    /// Takes `key` out; false if it was not there.
    pub fn remove(&mut self, key: &K) -> bool {
        self.0.remove(key).is_some()
    }

    /// Whether `key` is there.
    pub fn contains(&self, key: &K) -> bool {
        self.0.contains_key(key)
    }

    /// The members, in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = &K> {
        self.0.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vec_map_keeps_one_value_per_key_in_insertion_order() {
        let mut map = VecMap::new();
        assert!(map.is_empty());
        assert_eq!(map.insert(3, "c"), None);
        assert_eq!(map.insert(1, "a"), None);
        assert_eq!(map.insert(2, "b"), None);
        assert_eq!(map.insert(1, "A"), Some("a"));
        assert_eq!(map.keys().copied().collect::<Vec<_>>(), [3, 1, 2]);
        assert_eq!(map.get(&1), Some(&"A"));
        *map.get_mut(&2).expect("there") = "B";
        assert_eq!(map.remove(&3), Some("c"));
        assert_eq!(map.remove(&3), None);
        assert!(!map.contains_key(&3));
        assert_eq!(map.values().copied().collect::<Vec<_>>(), ["A", "B"]);

        let mut set = VecSet::new();
        assert!(set.insert(5));
        assert!(!set.insert(5));
        assert!(set.contains(&5));
        assert!(set.remove(&5));
        assert!(!set.remove(&5));
        assert_eq!(set.iter().count(), 0);
    }
}
