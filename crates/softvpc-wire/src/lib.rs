//! Packet formats softvpc reads and writes, as zero-copy views checked on untrusted input.
//!
//! This crate is the one place for wire formats. It re-exports smoltcp's `wire` module
//! (Ethernet, ARP, IPv4, ICMPv4, UDP, TCP) and adds the formats smoltcp lacks:
//!
//! - [`vxlan`]: the RFC 7348 header that carries a VPC's frames between hosts;
//! - [`virtio_net`]: the `virtio_net_hdr` a TAP with `IFF_VNET_HDR` prepends (offloads);
//! - [`meta`]: the one parse of a frame ([`FrameMeta`]: flow key, the fields the router decides
//!   on, layer offsets), which the engine, the flow hash and the dissector share;
//! - [`flow`]: a flow hash of an inner frame, used for the VXLAN UDP source port;
//! - [`dissect`](mod@dissect): a checked walk of a frame through all of the above, for logs, tests and fuzzing;
//! - [`fuzzing`]: the bodies of the wire fuzz targets, shared with the regression tests.
//!
//! Every format follows smoltcp's two levels: `Packet<T: AsRef<[u8]>>` is a view over any buffer
//! whose accessors never panic once `check_len()` passed (untrusted input goes through
//! `new_checked()`), and `Repr` is the validated meaning with `parse` and `emit`. Short names
//! live in each module (`vxlan::Packet`) and are re-exported here with a protocol prefix
//! (`VxlanPacket`).

#![warn(missing_docs)]

pub use smoltcp::wire::*;
// `Repr::parse`/`emit` take checksum capabilities; re-exported so users need not name smoltcp.
pub use smoltcp::phy::{Checksum as ChecksumMode, ChecksumCapabilities};

pub mod dissect;
pub mod flow;
pub mod fuzzing;
pub mod meta;
pub mod virtio_net;
pub mod vxlan;

pub use dissect::{dissect, dissect_meta, Dissection, Layer as DissectLayer};
pub use flow::{flow_hash, vxlan_source_port, VXLAN_SOURCE_PORT_MAX, VXLAN_SOURCE_PORT_MIN};
pub use meta::{
    ArpMeta, FlowKey, FrameMeta, Ipv4Meta, L3Meta, L4Key, Truncated, ETHERNET_HEADER_LEN,
};
pub use virtio_net::{
    Checksum as VirtioNetHdrChecksum, Error as VirtioNetHdrError, Gso as VirtioNetHdrGso,
    GsoKind as VirtioNetHdrGsoKind, Packet as VirtioNetHdrPacket, Repr as VirtioNetHdrRepr,
    FLAG_DATA_VALID as VIRTIO_NET_HDR_F_DATA_VALID, FLAG_NEEDS_CSUM as VIRTIO_NET_HDR_F_NEEDS_CSUM,
    GSO_ECN as VIRTIO_NET_HDR_GSO_ECN, GSO_NONE as VIRTIO_NET_HDR_GSO_NONE,
    GSO_TCPV4 as VIRTIO_NET_HDR_GSO_TCPV4, GSO_TCPV6 as VIRTIO_NET_HDR_GSO_TCPV6,
    GSO_UDP as VIRTIO_NET_HDR_GSO_UDP, GSO_UDP_L4 as VIRTIO_NET_HDR_GSO_UDP_L4,
    HEADER_LEN as VIRTIO_NET_HDR_LEN,
};
pub use vxlan::{
    Error as VxlanError, Packet as VxlanPacket, Repr as VxlanRepr, FLAG_I as VXLAN_FLAG_I,
    HEADER_LEN as VXLAN_HEADER_LEN, UDP_PORT as VXLAN_UDP_PORT, VNI_MAX as VXLAN_VNI_MAX,
};
