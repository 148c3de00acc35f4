//! What the engine did, counted: frames in and out per direction, and every drop by reason.
//!
//! The shell exports these as metrics (`softvpc_agent_*`). A malformed or refused packet is
//! never an error: it is dropped and counted here.

/// Why a frame or datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// Too short or with inconsistent length fields for its headers.
    Malformed,
}

/// Engine counters (plain integers: the engine runs on one thread).
#[derive(Debug, Clone, Default)]
pub struct Counters {}
