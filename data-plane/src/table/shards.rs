//! A map by name split into shards, each behind an `Arc`: an update of a table copies the few
//! shards it changes and shares the others with the table before it, so that changing one
//! route of ten thousand does not copy ten thousand entries.

use std::{
    hash::{BuildHasher as _, BuildHasherDefault},
    sync::Arc,
};

use super::hash::{FxHashMap, FxHasher};

const SHARDS: usize = 64;

type Shard<V> = Arc<FxHashMap<Arc<str>, V>>;

#[derive(Debug)]
pub(crate) struct Shards<V> {
    shards: Box<[Shard<V>]>,
    len: usize,
}

impl<V> Clone for Shards<V> {
    fn clone(&self) -> Self {
        Self {
            shards: self.shards.clone(),
            len: self.len,
        }
    }
}

impl<V> Default for Shards<V> {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Arc::default()).collect(),
            len: 0,
        }
    }
}

impl<V: Clone> Shards<V> {
    fn shard(name: &str) -> usize {
        BuildHasherDefault::<FxHasher>::default().hash_one(name) as usize % SHARDS
    }

    pub(crate) fn get(&self, name: &str) -> Option<&V> {
        self.shards[Self::shard(name)].get(name)
    }

    pub(crate) fn insert(&mut self, name: Arc<str>, value: V) {
        let shard = Arc::make_mut(&mut self.shards[Self::shard(&name)]);
        if shard.insert(name, value).is_none() {
            self.len += 1;
        }
    }

    pub(crate) fn remove(&mut self, name: &str) -> Option<V> {
        let at = Self::shard(name);
        // Looked up first: a shard is copied only when something is taken out of it.
        self.shards[at].get(name)?;
        let removed = Arc::make_mut(&mut self.shards[at]).remove(name);
        self.len -= usize::from(removed.is_some());
        removed
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }
}
