//! The partition logs one shard owns, by topic then partition index: a
//! lookup by `&str` and `i32` allocates nothing (a map keyed by an owned
//! `(String, i32)` needed a `String` built for every lookup).

use std::collections::HashMap;
use std::rc::Rc;

use crate::storage::PartitionLog;

#[derive(Default)]
pub struct PartitionLogs {
    /// Slot `p` holds partition `p` when this shard owns it and it is open.
    by_topic: HashMap<String, Vec<Option<Rc<PartitionLog>>>>,
    open: usize,
}

impl PartitionLogs {
    pub fn get(&self, topic: &str, partition: i32) -> Option<&Rc<PartitionLog>> {
        let index = usize::try_from(partition).ok()?;
        self.by_topic.get(topic)?.get(index)?.as_ref()
    }

    pub fn contains(&self, topic: &str, partition: i32) -> bool {
        self.get(topic, partition).is_some()
    }

    /// Adds the log of a partition that had none open.
    pub fn insert(&mut self, topic: &str, partition: i32, log: Rc<PartitionLog>) {
        let index = usize::try_from(partition).unwrap_or_else(|_| panic!("partition {partition} of {topic}"));
        assert_eq!((log.topic.as_str(), log.partition), (topic, partition), "a log filed under another partition");
        // Opening a partition is rare: the name may be copied here.
        let slots = self.by_topic.entry(topic.to_string()).or_default();
        if slots.len() <= index {
            slots.resize(index + 1, None);
        }
        let previous = slots[index].replace(log);
        assert!(previous.is_none(), "partition {topic}/{partition} opened twice");
        self.open += 1;
    }

    /// Takes out every log of `topic`.
    pub fn remove_topic(&mut self, topic: &str) -> Vec<Rc<PartitionLog>> {
        let removed: Vec<Rc<PartitionLog>> =
            self.by_topic.remove(topic).map(|slots| slots.into_iter().flatten().collect()).unwrap_or_default();
        self.open -= removed.len();
        removed
    }

    pub fn of_topic(&self, topic: &str) -> Vec<Rc<PartitionLog>> {
        self.by_topic.get(topic).map(|slots| slots.iter().flatten().cloned().collect()).unwrap_or_default()
    }

    pub fn all(&self) -> Vec<Rc<PartitionLog>> {
        let all: Vec<Rc<PartitionLog>> =
            self.by_topic.values().flat_map(|slots| slots.iter().flatten().cloned()).collect();
        debug_assert_eq!(all.len(), self.open);
        all
    }
}
