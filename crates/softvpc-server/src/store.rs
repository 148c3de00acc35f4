//! The persistent store: redb at `<data-dir>/softvpc.redb`, one table per resource kind
//! (id -> JSON), plus a `meta` table for the mapping revision and the next VNI. Every API
//! mutation is committed as ONE write transaction, so it lands whole or not at all.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use redb::{Database, ReadableTable, TableDefinition, TableHandle};
use serde::de::DeserializeOwned;

use crate::model::{Map, State, Table, Write, FIRST_VNI};

const VPCS: TableDefinition<&str, &[u8]> = TableDefinition::new("vpcs");
const SUBNETS: TableDefinition<&str, &[u8]> = TableDefinition::new("subnets");
const HOSTS: TableDefinition<&str, &[u8]> = TableDefinition::new("hosts");
const INSTANCES: TableDefinition<&str, &[u8]> = TableDefinition::new("instances");
const ENIS: TableDefinition<&str, &[u8]> = TableDefinition::new("enis");
const ROUTE_TABLES: TableDefinition<&str, &[u8]> = TableDefinition::new("route_tables");
const INTERNET_GATEWAYS: TableDefinition<&str, &[u8]> = TableDefinition::new("internet_gateways");
const ADDRESSES: TableDefinition<&str, &[u8]> = TableDefinition::new("addresses");
const NAT_GATEWAYS: TableDefinition<&str, &[u8]> = TableDefinition::new("nat_gateways");
const SECURITY_GROUPS: TableDefinition<&str, &[u8]> = TableDefinition::new("security_groups");
const NETWORK_ACLS: TableDefinition<&str, &[u8]> = TableDefinition::new("network_acls");
const PEERING_CONNECTIONS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("peering_connections");
const DHCP_OPTIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("dhcp_options");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

const META_REVISION: &str = "revision";
const META_NEXT_VNI: &str = "next_vni";

fn definition(table: Table) -> TableDefinition<'static, &'static str, &'static [u8]> {
    match table {
        Table::Vpcs => VPCS,
        Table::Subnets => SUBNETS,
        Table::Hosts => HOSTS,
        Table::Instances => INSTANCES,
        Table::Enis => ENIS,
        Table::RouteTables => ROUTE_TABLES,
        Table::InternetGateways => INTERNET_GATEWAYS,
        Table::Addresses => ADDRESSES,
        Table::NatGateways => NAT_GATEWAYS,
        Table::SecurityGroups => SECURITY_GROUPS,
        Table::NetworkAcls => NETWORK_ACLS,
        Table::PeeringConnections => PEERING_CONNECTIONS,
        Table::DhcpOptions => DHCP_OPTIONS,
    }
}

/// The redb database.
pub struct Store {
    db: Database,
}

impl Store {
    /// Opens (or creates) the store in `dir` and loads the model from it.
    pub fn open(dir: &Path) -> anyhow::Result<(Store, State)> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating data directory {}", dir.display()))?;
        let path = dir.join("softvpc.redb");
        let db =
            Database::create(&path).with_context(|| format!("opening store {}", path.display()))?;
        Self::init(db)
    }

    /// A store that lives in memory only (fuzzing and tests; nothing survives the process).
    pub fn open_in_memory() -> anyhow::Result<(Store, State)> {
        let db = redb::Builder::new()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .context("creating in-memory store")?;
        Self::init(db)
    }

    fn init(db: Database) -> anyhow::Result<(Store, State)> {
        // Create every table up front so reads never meet a missing one.
        let txn = db.begin_write()?;
        for t in [
            VPCS,
            SUBNETS,
            HOSTS,
            INSTANCES,
            ENIS,
            ROUTE_TABLES,
            INTERNET_GATEWAYS,
            ADDRESSES,
            NAT_GATEWAYS,
            SECURITY_GROUPS,
            NETWORK_ACLS,
            PEERING_CONNECTIONS,
            DHCP_OPTIONS,
        ] {
            txn.open_table(t)?;
        }
        txn.open_table(META)?;
        txn.commit()?;
        let store = Store { db };
        let state = store.load()?;
        Ok((store, state))
    }

    fn load(&self) -> anyhow::Result<State> {
        let txn = self.db.begin_read()?;
        let mut state = State::new();
        state.vpcs = load_table(&txn, VPCS)?;
        state.subnets = load_table(&txn, SUBNETS)?;
        state.hosts = load_table(&txn, HOSTS)?;
        state.instances = load_table(&txn, INSTANCES)?;
        state.enis = load_table(&txn, ENIS)?;
        state.route_tables = load_table(&txn, ROUTE_TABLES)?;
        state.internet_gateways = load_table(&txn, INTERNET_GATEWAYS)?;
        state.addresses = load_table(&txn, ADDRESSES)?;
        state.nat_gateways = load_table(&txn, NAT_GATEWAYS)?;
        state.security_groups = load_table(&txn, SECURITY_GROUPS)?;
        state.network_acls = load_table(&txn, NETWORK_ACLS)?;
        state.peering_connections = load_table(&txn, PEERING_CONNECTIONS)?;
        state.dhcp_options = load_table(&txn, DHCP_OPTIONS)?;
        let meta = txn.open_table(META)?;
        state.revision = meta.get(META_REVISION)?.map(|v| v.value()).unwrap_or(0);
        state.next_vni = meta
            .get(META_NEXT_VNI)?
            .map(|v| v.value() as u32)
            .unwrap_or(FIRST_VNI);
        Ok(state)
    }

    /// Commits `writes` with the new `revision` and `next_vni`, in one write transaction.
    pub fn commit(&self, writes: &[Write], revision: u64, next_vni: u32) -> anyhow::Result<()> {
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

fn load_table<T: DeserializeOwned>(
    txn: &redb::ReadTransaction,
    def: TableDefinition<&str, &[u8]>,
) -> anyhow::Result<Map<T>> {
    let table = txn.open_table(def)?;
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
