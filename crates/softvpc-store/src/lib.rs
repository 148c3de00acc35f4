//! softvpc's persistence: the resource store ([`Store`]: the current [`softvpc_model::State`],
//! one all-or-nothing mutation at a time, group commit) over a [`Backend`] that keeps committed
//! mutations durably: [`RedbBackend`] (one machine) or [`EtcdBackend`] (an etcd cluster shared
//! by several server replicas, commits linearized by compare-and-swap on the revision).
//! [`CommitFollower`]s learn of each mutation (the server's mapping log is one), so the store
//! itself knows nothing of who reads its changes.

#![warn(missing_docs)]

pub mod etcd_backend;
pub mod group_commit;
pub mod redb_backend;

pub use etcd_backend::{EtcdBackend, EtcdDoc, SharedDoc};
pub use group_commit::{
    now_secs, Backend, CommitError, CommitFollower, Entry, Mutation, Since, Store,
};
pub use redb_backend::{RedbBackend, TableStats};
