//! softvpc's persistence: the resource model ([`softvpc_model::State`]) in redb.

pub mod redb_backend;

pub use redb_backend::{Store, TableStats};
