//! The redb backend: the model at `<data-dir>/softvpc.redb`, one table per resource kind
//! (id -> JSON), plus a `meta` table for the mapping revision and the next VNI, and `meta_text`
//! for the mapping epoch. Every commit (one mutation, or a group of them) is ONE write
//! transaction, so it lands whole or not at all.
//!
//! The mapping epoch is made once, at the store's creation, and kept: a revision then means the
//! same records before and after a server restart (the projection is a pure function of the
//! state), so an agent that reconnects to the restarted server at the store's revision resumes
//! without a full resync. (A data directory restored from an older copy keeps its epoch too: an
//! agent ahead of its revision asks for a revision the log does not have yet and gets a
//! snapshot.)

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle};

use crate::{Backend, CommitError, Mutation};
use softvpc_model::{LoadTable, Map, Resource, State, Table, Write, FIRST_VNI};

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

const META_REVISION: &str = "revision";
const META_NEXT_VNI: &str = "next_vni";

const META_TEXT: TableDefinition<&str, &str> = TableDefinition::new("meta_text");
const META_EPOCH: &str = "epoch";

fn definition(table: Table) -> TableDefinition<'static, &'static str, &'static [u8]> {
    TableDefinition::new(table.name())
}

/// The redb database.
pub struct RedbBackend {
    db: Database,
    /// The mapping epoch kept in the store (None in memory: each store is its own epoch).
    epoch: Option<String>,
}

impl RedbBackend {
    /// Opens (or creates) the store in `dir` and loads the model from it.
    pub fn open(dir: &Path) -> anyhow::Result<(RedbBackend, State)> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating data directory {}", dir.display()))?;
        let path = dir.join("softvpc.redb");
        let db =
            Database::create(&path).with_context(|| format!("opening store {}", path.display()))?;
        Self::init(db)
    }

    /// A store that lives in memory only (fuzzing and tests; nothing survives the process).
    pub fn open_in_memory() -> anyhow::Result<(RedbBackend, State)> {
        let db = redb::Builder::new()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .context("creating in-memory store")?;
        let (mut store, state) = Self::init(db)?;
        store.epoch = None;
        Ok((store, state))
    }

    fn init(db: Database) -> anyhow::Result<(RedbBackend, State)> {
        // Create every table up front so reads never meet a missing one.
        let txn = db.begin_write()?;
        for t in Table::ALL {
            txn.open_table(definition(*t))?;
        }
        txn.open_table(META)?;
        let epoch = {
            let mut text = txn.open_table(META_TEXT)?;
            let kept = text.get(META_EPOCH)?.map(|v| v.value().to_string());
            match kept {
                Some(epoch) => epoch,
                None => {
                    let epoch = softvpc_model::ids::new_id("epoch");
                    text.insert(META_EPOCH, epoch.as_str())?;
                    epoch
                }
            }
        };
        txn.commit()?;
        let store = RedbBackend {
            db,
            epoch: Some(epoch),
        };
        let state = store.load()?;
        Ok((store, state))
    }

    fn load(&self) -> anyhow::Result<State> {
        let txn = self.db.begin_read()?;
        let mut state = State::new();
        state.load_maps(&mut Loader(&txn))?;
        let meta = txn.open_table(META)?;
        state.revision = meta.get(META_REVISION)?.map(|v| v.value()).unwrap_or(0);
        state.next_vni = meta
            .get(META_NEXT_VNI)?
            .map(|v| v.value() as u32)
            .unwrap_or(FIRST_VNI);
        Ok(state)
    }

    /// How much one table holds, as redb accounts for it (the API benchmark reports it).
    pub fn table_stats(&self, table: Table) -> anyhow::Result<TableStats> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(definition(table))?;
        let stats = t.stats()?;
        Ok(TableStats {
            rows: t.len()?,
            stored_bytes: stats.stored_bytes(),
            total_bytes: stats.stored_bytes() + stats.metadata_bytes() + stats.fragmented_bytes(),
        })
    }
}

impl Backend for RedbBackend {
    /// redb's default `Durability::Immediate`: fsync before it returns.
    fn commit(&self, batch: &[Mutation<'_>]) -> Result<(), CommitError> {
        let Some(last) = batch.last() else {
            return Ok(());
        };
        let writes = batch.iter().flat_map(|m| m.writes.iter());
        self.write(writes, last.revision, last.next_vni)
            .map_err(CommitError::Failed)
    }

    /// The epoch kept in the store: the same across server restarts.
    fn epoch(&self) -> Option<String> {
        self.epoch.clone()
    }
}

impl RedbBackend {
    /// Writes `writes` with `revision` and `next_vni` in one write transaction.
    fn write<'a>(
        &self,
        writes: impl Iterator<Item = &'a Write>,
        revision: u64,
        next_vni: u32,
    ) -> anyhow::Result<()> {
        let txn = self.db.begin_write()?;
        for w in writes {
            match w {
                Write::Put { table, key, value } => {
                    txn.open_table(definition(*table))?
                        .insert(key.as_str(), value.as_slice())?;
                }
                Write::Delete { table, key } => {
                    txn.open_table(definition(*table))?.remove(key.as_str())?;
                }
            }
        }
        {
            let mut meta = txn.open_table(META)?;
            meta.insert(META_REVISION, revision)?;
            meta.insert(META_NEXT_VNI, u64::from(next_vni))?;
        }
        txn.commit()?;
        Ok(())
    }
}

/// The size of one table of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableStats {
    /// Rows (resources of the table's kind).
    pub rows: u64,
    /// Bytes of keys and values.
    pub stored_bytes: u64,
    /// Stored bytes plus B-tree metadata and fragmentation: what the table costs on disk.
    pub total_bytes: u64,
}

/// Reads the store's tables into the model's maps.
struct Loader<'a>(&'a redb::ReadTransaction);

impl LoadTable for Loader<'_> {
    fn load<T: Resource>(&mut self) -> anyhow::Result<Map<T>> {
        let def = definition(T::TABLE);
        let table = self.0.open_table(def)?;
        let mut out = Map::new();
        for item in table.iter()? {
            let (k, v) = item?;
            let key = k.value().to_string();
            let value: T = serde_json::from_slice(v.value())
                .with_context(|| format!("decoding {} {key}", def.name()))?;
            out.insert(key, Arc::new(value));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_stats_count_what_was_committed() {
        let (store, _) = RedbBackend::open_in_memory().unwrap();
        assert_eq!(store.table_stats(Table::Enis).unwrap().rows, 0);
        let writes: Vec<Write> = (0..3)
            .map(|i| Write::Put {
                table: Table::Enis,
                key: format!("eni-{i}"),
                value: vec![b'x'; 100],
            })
            .collect();
        store.write(writes.iter(), 1, FIRST_VNI).unwrap();
        let stats = store.table_stats(Table::Enis).unwrap();
        assert_eq!(stats.rows, 3);
        assert!(stats.stored_bytes >= 300, "{stats:?}");
        assert!(stats.total_bytes >= stats.stored_bytes, "{stats:?}");
        assert_eq!(store.table_stats(Table::Vpcs).unwrap().rows, 0);
    }

    #[test]
    fn the_mapping_epoch_outlives_the_process() {
        let dir = std::env::temp_dir().join(format!("softvpc-epoch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (store, _) = RedbBackend::open(&dir).unwrap();
        let epoch = store.epoch().expect("a kept epoch");
        assert!(epoch.starts_with("epoch-"), "{epoch}");
        drop(store);
        let (again, _) = RedbBackend::open(&dir).unwrap();
        assert_eq!(again.epoch(), Some(epoch));
        std::fs::remove_dir_all(&dir).unwrap();
        // In memory, every store is its own epoch (the server makes one).
        assert_eq!(RedbBackend::open_in_memory().unwrap().0.epoch(), None);
    }
}
