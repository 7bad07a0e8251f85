//! Where the rooms live: in this process ([`Registry`], the default) or shared with other
//! instances through Redis ([`Backplane`], with `--redis-url`). Connections talk to [`Rooms`]
//! and do not know which; the in-memory path awaits nothing and takes no extra hop.
//!
//! The Redis operations' futures are boxed: they are large (several Redis round trips), and
//! inline they would make every connection's task, which lives as long as the socket, as large
//! as the largest of them, with or without a backplane.

use std::sync::Arc;

use protocol::{Control, IceServer, PeerId, RawSignal};

use crate::{
    backplane::Backplane,
    registry::{Due, JoinRequest, Joined, MailboxRef, Refusal, Registry, Relayed},
};

/// The relay's rooms, in one of two homes.
// One value per relay: its size does not matter, and the in-memory path keeps no extra pointer.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Rooms {
    /// In this process only.
    Memory(Registry),
    /// Shared with every instance on the same Redis.
    Redis(Arc<Backplane>),
}

impl Rooms {
    /// Puts a peer into a room: see [`Registry::join`].
    pub async fn join(
        &self,
        request: JoinRequest,
        mailbox: MailboxRef,
        ice_servers: impl Fn(PeerId) -> Vec<IceServer>,
    ) -> Result<Joined, Refusal> {
        match self {
            Rooms::Memory(registry) => registry.join(request, mailbox, ice_servers),
            Rooms::Redis(backplane) => {
                Box::pin(backplane.join(request, mailbox, ice_servers)).await
            }
        }
    }

    /// Forwards a signal: see [`Registry::relay`].
    pub async fn relay(
        &self,
        from: PeerId,
        to: Option<PeerId>,
        signal: RawSignal,
    ) -> Result<Relayed, Refusal> {
        match self {
            Rooms::Memory(registry) => registry.relay(from, to, signal),
            Rooms::Redis(backplane) => Box::pin(backplane.relay(from, to, signal)).await,
        }
    }

    /// Carries out a room control request: see [`Registry::control`].
    pub async fn control(&self, from: PeerId, control: Control) -> Result<(), Refusal> {
        match self {
            Rooms::Memory(registry) => registry.control(from, &control),
            Rooms::Redis(backplane) => Box::pin(backplane.control(from, control)).await,
        }
    }

    /// Takes a peer out of its room: see [`Registry::leave`].
    pub async fn leave(&self, id: PeerId, reserve: bool) {
        match self {
            Rooms::Memory(registry) => registry.leave(id, reserve),
            Rooms::Redis(backplane) => Box::pin(backplane.leave(id, reserve)).await,
        }
    }

    /// Waits until a held message or a reservation is due.
    pub async fn next_due(&self) -> Vec<Due> {
        match self {
            Rooms::Memory(registry) => registry.next_due().await,
            Rooms::Redis(backplane) => backplane.next_due().await,
        }
    }

    /// Ends what is due; returns the mailbox of a sender to tell that nobody took its message.
    pub async fn expire(&self, due: Due) -> Option<MailboxRef> {
        match self {
            Rooms::Memory(registry) => registry.expire(due),
            Rooms::Redis(backplane) => backplane.expire(due).await,
        }
    }

    /// Rooms with a peer of this instance.
    pub fn room_count(&self) -> usize {
        match self {
            Rooms::Memory(registry) => registry.room_count(),
            Rooms::Redis(backplane) => backplane.room_count(),
        }
    }

    /// Peers of this instance in a room.
    pub fn member_count(&self) -> usize {
        match self {
            Rooms::Memory(registry) => registry.member_count(),
            Rooms::Redis(backplane) => backplane.member_count(),
        }
    }

    /// Whether new joins can be placed: always in memory; with Redis, while it answers.
    pub fn healthy(&self) -> bool {
        match self {
            Rooms::Memory(_) => true,
            Rooms::Redis(backplane) => backplane.healthy(),
        }
    }
}
