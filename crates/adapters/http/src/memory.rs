//! How much memory post-call bodies may hold while they are read and verified.
//!
//! A signed delivery's body must be read whole before its signature can be checked, so anyone
//! who knows an organization's id can make the service buffer bodies. The bodies of one server
//! share a budget, and each organization may hold only part of it: a sender naming one
//! organization can only make that organization's deliveries wait, and together with the body's
//! minimum arrival rate (`body::BodyReader`) nobody holds memory for long. Room is taken as a
//! body arrives, in doubling steps (never on the word of its `Content-Length`), so a small
//! delivery takes little and never waits behind a recording, and a sender that declares a large
//! body and trickles it holds almost nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use relay_domain::OrgId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::body::BodyReader;
use crate::error::ApiError;

/// Room is counted in units of this many bytes.
const UNIT: usize = 16 * 1024;

/// Room a body starts with.
const FIRST_STEP: usize = 64 * 1024;

/// How long one delivery may wait, in all, for room before it is answered 503.
const ROOM_WAIT: Duration = Duration::from_secs(10);

/// The budget of one server, shared by its workers.
#[derive(Debug)]
pub(crate) struct BodyMemory {
    total: Arc<Semaphore>,
    per_org: Mutex<HashMap<OrgId, Arc<Semaphore>>>,
    org_units: usize,
}

impl BodyMemory {
    /// At most `total` bytes of bodies at once, at most `per_org` of them for one organization.
    pub(crate) fn new(total: usize, per_org: usize) -> Self {
        Self {
            total: Arc::new(Semaphore::new(total.div_ceil(UNIT))),
            per_org: Mutex::new(HashMap::new()),
            org_units: per_org.div_ceil(UNIT),
        }
    }

    fn org_semaphore(&self, org: OrgId) -> Arc<Semaphore> {
        let mut map = self.per_org.lock().unwrap_or_else(PoisonError::into_inner);
        // Forget organizations that hold nothing, so the map stays as small as what is in flight.
        if map.len() > 1_024 {
            map.retain(|_, s| s.available_permits() < self.org_units || Arc::strong_count(s) > 1);
        }
        Arc::clone(
            map.entry(org)
                .or_insert_with(|| Arc::new(Semaphore::new(self.org_units))),
        )
    }

    /// Reads `reader`'s body whole, taking room for it as it grows. Time spent waiting for room
    /// is not counted against the client's deadline.
    ///
    /// # Errors
    /// 503 when no room came within [`ROOM_WAIT`] (or the body could never fit the organization's
    /// share), and the reader's own errors (413, 408, 400).
    pub(crate) async fn read(
        &self,
        org: OrgId,
        mut reader: BodyReader,
        declared: Option<usize>,
    ) -> Result<(actix_web::web::BytesMut, Held), ApiError> {
        let give_up = Instant::now() + ROOM_WAIT;
        let mut held = Held::default();
        // Room follows what arrived, never what was declared: a sender that declares 16 MiB and
        // trickles holds one step, not 16 MiB. The declared length only caps the last step.
        let cap = |bytes: usize| declared.map_or(bytes, |d| bytes.min(d.max(1)));
        let mut wanted = cap(FIRST_STEP);
        loop {
            self.cover(org, &mut held, wanted, give_up, &mut reader)
                .await?;
            if reader.read_until(held.bytes()).await? {
                return Ok((reader.into_body(), held));
            }
            wanted = cap((held.bytes() * 2).max(reader.len() + 1)).max(reader.len() + 1);
        }
    }

    async fn cover(
        &self,
        org: OrgId,
        held: &mut Held,
        bytes: usize,
        give_up: Instant,
        reader: &mut BodyReader,
    ) -> Result<(), ApiError> {
        let units = bytes.div_ceil(UNIT);
        let more = units.saturating_sub(held.units);
        if more == 0 {
            return Ok(());
        }
        if units > self.org_units {
            return Err(ApiError::ServiceUnavailable);
        }
        let more = u32::try_from(more).map_err(|_| ApiError::ServiceUnavailable)?;
        let started = Instant::now();
        let org_semaphore = self.org_semaphore(org);
        let room = async {
            let org_permit = org_semaphore.acquire_many_owned(more).await.ok()?;
            let total_permit = Arc::clone(&self.total)
                .acquire_many_owned(more)
                .await
                .ok()?;
            Some((org_permit, total_permit))
        };
        let (org_permit, total_permit) = tokio::time::timeout_at(give_up, room)
            .await
            .ok()
            .flatten()
            .ok_or(ApiError::ServiceUnavailable)?;
        reader.pause(started.elapsed());
        held.add(org_permit, total_permit, units);
        Ok(())
    }
}

/// Room held by one body; returned when dropped.
#[derive(Debug, Default)]
pub(crate) struct Held {
    org: Option<OwnedSemaphorePermit>,
    total: Option<OwnedSemaphorePermit>,
    units: usize,
}

impl Held {
    fn bytes(&self) -> usize {
        self.units * UNIT
    }

    fn add(&mut self, org: OwnedSemaphorePermit, total: OwnedSemaphorePermit, units: usize) {
        for (slot, permit) in [(&mut self.org, org), (&mut self.total, total)] {
            match slot {
                Some(held) => held.merge(permit),
                None => *slot = Some(permit),
            }
        }
        self.units = units;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::tests::slow_request;

    fn org(n: u128) -> OrgId {
        OrgId::from_uuid(uuid::Uuid::from_u128(n))
    }

    static KIB_16: [u8; UNIT] = [b' '; UNIT];

    async fn read(memory: &BodyMemory, org_id: OrgId, chunks: usize) -> Result<usize, ApiError> {
        let (req, payload) =
            slow_request(vec![&KIB_16[..]; chunks], Duration::from_millis(10), None).await;
        let reader = BodyReader::new(&req, payload, 1 << 20)?;
        memory
            .read(org_id, reader, None)
            .await
            .map(|(body, _)| body.len())
    }

    #[tokio::test(start_paused = true)]
    async fn an_organization_at_its_share_waits_then_gets_503_while_others_are_read() {
        let memory = BodyMemory::new(16 * UNIT, 4 * UNIT);
        // Organization 1's whole share is held (bodies being read for it).
        let hog = memory
            .org_semaphore(org(1))
            .acquire_many_owned(4)
            .await
            .unwrap();
        let started = Instant::now();
        assert_eq!(
            read(&memory, org(1), 1).await,
            Err(ApiError::ServiceUnavailable)
        );
        assert!(started.elapsed() >= ROOM_WAIT, "it waited for room first");
        assert_eq!(read(&memory, org(2), 3).await, Ok(3 * UNIT));
        drop(hog);
        assert_eq!(read(&memory, org(1), 1).await, Ok(UNIT), "room again");
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_without_a_length_takes_room_as_it_grows_and_gives_it_back() {
        let memory = BodyMemory::new(16 * UNIT, 16 * UNIT);
        assert_eq!(read(&memory, org(1), 10).await, Ok(10 * UNIT));
        assert_eq!(memory.total.available_permits(), 16, "all room returned");
        assert_eq!(
            read(&memory, org(1), 17).await,
            Err(ApiError::ServiceUnavailable),
            "larger than the organization's share: refused, never waits forever"
        );
    }
}
