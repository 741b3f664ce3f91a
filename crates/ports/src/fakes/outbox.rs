//! The in-memory delivery outbox and its dead letters.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::{Behaviour, lock};
use crate::{
    Appended, DeliveryOutbox, OutboxBound, OutboxEntry, OutboxError, OutboxLimits, OutboxUsage,
};

#[derive(Debug, Default)]
struct OutboxData {
    entries: Vec<OutboxEntry>,
    dead: Vec<(OutboxEntry, String)>,
    next: u64,
    behaviour: Behaviour,
}

/// An in-memory delivery outbox (not durable: for tests of the use case only).
#[derive(Debug, Clone, Default)]
pub struct InMemoryOutbox {
    data: Arc<Mutex<OutboxData>>,
}

impl InMemoryOutbox {
    /// An empty, healthy outbox.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every later call behave like this.
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        lock(&self.data).behaviour = behaviour;
    }

    /// The entries waiting.
    pub fn entries(&self) -> Vec<OutboxEntry> {
        lock(&self.data).entries.clone()
    }

    /// The dead-lettered entries, with their reasons.
    pub fn dead_letters(&self) -> Vec<(OutboxEntry, String)> {
        lock(&self.data).dead.clone()
    }
}

/// Bytes the fake counts for a set of entries: their payloads.
fn payload_bytes<'a>(entries: impl Iterator<Item = &'a OutboxEntry>) -> u64 {
    entries.map(|e| e.payload.len() as u64).sum()
}

#[async_trait]
impl DeliveryOutbox for InMemoryOutbox {
    async fn append(&self, payload: &[u8], limits: OutboxLimits) -> Result<Appended, OutboxError> {
        let behaviour = lock(&self.data).behaviour;
        behaviour.apply().await.map_err(OutboxError::Unavailable)?;
        let mut data = lock(&self.data);
        if data.entries.len() as u64 >= limits.max_entries {
            return Ok(Appended::Full(OutboxBound::Entries));
        }
        if payload_bytes(data.entries.iter()) + payload.len() as u64 > limits.max_bytes {
            return Ok(Appended::Full(OutboxBound::Bytes));
        }
        data.next += 1;
        let id = format!("{}-0", data.next);
        data.entries.push(OutboxEntry {
            id,
            payload: payload.to_vec(),
        });
        Ok(Appended::Stored)
    }

    async fn pending(&self, max: usize) -> Result<Vec<OutboxEntry>, OutboxError> {
        let behaviour = lock(&self.data).behaviour;
        behaviour.apply().await.map_err(OutboxError::Unavailable)?;
        Ok(lock(&self.data).entries.iter().take(max).cloned().collect())
    }

    async fn remove(&self, id: &str) -> Result<(), OutboxError> {
        let behaviour = lock(&self.data).behaviour;
        behaviour.apply().await.map_err(OutboxError::Unavailable)?;
        lock(&self.data).entries.retain(|e| e.id != id);
        Ok(())
    }

    async fn dead_letter(
        &self,
        entry: &OutboxEntry,
        reason: &str,
        limits: OutboxLimits,
    ) -> Result<u64, OutboxError> {
        let behaviour = lock(&self.data).behaviour;
        behaviour.apply().await.map_err(OutboxError::Unavailable)?;
        let mut data = lock(&self.data);
        data.entries.retain(|e| e.id != entry.id);
        data.dead.push((entry.clone(), reason.to_owned()));
        let mut dropped = 0;
        while data.dead.len() > 1
            && (data.dead.len() as u64 > limits.max_entries
                || payload_bytes(data.dead.iter().map(|(e, _)| e)) > limits.max_bytes)
        {
            data.dead.remove(0);
            dropped += 1;
        }
        Ok(dropped)
    }

    async fn usage(&self) -> Result<OutboxUsage, OutboxError> {
        let behaviour = lock(&self.data).behaviour;
        behaviour.apply().await.map_err(OutboxError::Unavailable)?;
        let data = lock(&self.data);
        Ok(OutboxUsage {
            entries: data.entries.len() as u64,
            bytes: payload_bytes(data.entries.iter()),
        })
    }
}
