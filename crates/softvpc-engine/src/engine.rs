//! The engine: per-batch entry points and the output the shell performs.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Instant;

use crate::{Counters, MappingTable};

/// A local port: one TAP device, carrying one ENI. Assigned by the shell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortId(pub u32);

/// Static configuration of the engine on one host.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// This host's underlay address (the outer source of what it sends).
    pub underlay_ip: Ipv4Addr,
    /// UDP destination port for VXLAN (4789, RFC 7348).
    pub vxlan_port: u16,
}

/// One UDP datagram to send on the underlay. `payload` starts with the VXLAN header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub dst_ip: Ipv4Addr,
    pub dst_port: u16,
    /// Outer UDP source port: a hash of the inner flow (RFC 7348 5.), in 49152..=65535.
    pub src_port: u16,
    pub payload: Vec<u8>,
}

/// What the engine wants done after a batch: frames to write to local ports, datagrams to send.
/// The shell drains both vectors and reuses the `Output` for the next batch.
#[derive(Debug, Default)]
pub struct Output {
    pub to_ports: Vec<(PortId, Vec<u8>)>,
    pub to_underlay: Vec<Transmit>,
}

/// The virtual router of one host.
pub struct Engine {
    config: EngineConfig,
    table: Arc<MappingTable>,
    counters: Counters,
}

impl Engine {
    pub fn new(config: EngineConfig) -> Self {
        Engine {
            config,
            table: Arc::new(MappingTable::default()),
            counters: Counters::default(),
        }
    }

    /// Swaps in a new mapping snapshot (the shell calls this when the mapping view changed).
    pub fn set_table(&mut self, table: Arc<MappingTable>) {
        self.table = table;
    }

    pub fn table(&self) -> &Arc<MappingTable> {
        &self.table
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Frames read from a local port (an instance sent them), in order.
    pub fn handle_port_frames<'a>(
        &mut self,
        now: Instant,
        port: PortId,
        frames: impl IntoIterator<Item = &'a [u8]>,
        out: &mut Output,
    ) {
        let _ = (now, port, frames, out);
        todo!("engine implementation")
    }

    /// UDP payloads received on the VXLAN port, each with its outer IPv4 source address.
    pub fn handle_underlay_datagrams<'a>(
        &mut self,
        now: Instant,
        datagrams: impl IntoIterator<Item = (Ipv4Addr, &'a [u8])>,
        out: &mut Output,
    ) {
        let _ = (now, datagrams, out);
        todo!("engine implementation")
    }
}
