//! Permits for streamed downloads (`/api/counts`, `/api/history`, `/api/export`): at most
//! [`MAX_STREAMS`] at once, and at most [`PER_CLIENT`] for one client address, so a client
//! opening slow downloads on purpose takes its own share and nobody else's. Each stream's
//! memory is bounded (a few chunks), and a stream read below the minimum rate is cut (see
//! `http::Chunks`), which gives its permit back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Streams at once, in all.
pub const MAX_STREAMS: usize = 32;
/// Streams at once from one client address (an IPv6 /64).
pub const PER_CLIENT: u8 = 4;

pub struct StreamPermits {
    total: Arc<Semaphore>,
    per_client: Arc<Mutex<HashMap<u16, u8>>>,
}

/// One running stream; gives its place back when dropped.
pub struct StreamPermit {
    _total: OwnedSemaphorePermit,
    client: u16,
    per_client: Arc<Mutex<HashMap<u16, u8>>>,
}

impl Default for StreamPermits {
    fn default() -> StreamPermits {
        StreamPermits {
            total: Arc::new(Semaphore::new(MAX_STREAMS)),
            per_client: Arc::default(),
        }
    }
}

impl StreamPermits {
    /// A permit for a stream of the client in limiter bucket `client`, if one is free.
    pub fn try_acquire(&self, client: u16) -> Option<StreamPermit> {
        let mut per_client = self.per_client.lock().unwrap_or_else(|e| e.into_inner());
        let running = per_client.entry(client).or_default();
        if *running >= PER_CLIENT {
            return None;
        }
        let total = self.total.clone().try_acquire_owned().ok()?;
        *running += 1;
        Some(StreamPermit {
            _total: total,
            client,
            per_client: self.per_client.clone(),
        })
    }
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut per_client = self.per_client.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(running) = per_client.get_mut(&self.client) {
            *running -= 1;
            if *running == 0 {
                per_client.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_client_takes_its_share_and_nobody_elses() {
        let permits = StreamPermits::default();
        let mine: Vec<StreamPermit> = (0..PER_CLIENT)
            .map(|_| permits.try_acquire(1).unwrap())
            .collect();
        assert!(permits.try_acquire(1).is_none(), "over the client's share");
        let others: Vec<StreamPermit> = (0..(MAX_STREAMS - usize::from(PER_CLIENT)))
            .map(|i| permits.try_acquire(100 + (i / 4) as u16).unwrap())
            .collect();
        assert!(permits.try_acquire(999).is_none(), "all taken");
        drop(mine);
        assert!(permits.try_acquire(1).is_some(), "given back");
        drop(others);
        assert!(permits.per_client.lock().unwrap().len() <= 1);
    }
}
