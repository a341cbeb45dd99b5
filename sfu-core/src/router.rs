//! A router: the media of one room on one worker.
//!
//! It groups the transports and producers of a room so that a consumer can only be created
//! for a producer of its own room, and so that closing the room closes everything in it. The
//! packet path does not go through the router: producers hold their consumer lists directly.

use crate::{ProducerId, RouterId, TransportId};

/// The transports and producers of one room on this worker.
#[derive(Debug)]
pub struct Router {
    /// Its id.
    pub id: RouterId,
    /// Transports created on it.
    pub transports: Vec<TransportId>,
    /// Producers published into it.
    pub producers: Vec<ProducerId>,
}

impl Router {
    /// An empty router.
    pub fn new(id: RouterId) -> Self {
        Self {
            id,
            transports: Vec::new(),
            producers: Vec::new(),
        }
    }
}
