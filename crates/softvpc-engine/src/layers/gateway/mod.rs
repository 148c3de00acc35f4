//! Gateway services: what the VPC's virtual router answers itself, on the host, so that no
//! ARP, broadcast or multicast frame ever crosses the underlay.
//!
//! - [`arp`]: proxy ARP for every ENI address of the VPC and for the subnet router (.1);
//! - [`icmp`]: echo replies from the subnet router address.
//!
//! DHCP (address assignment from the mapping) will be a third module here.

pub mod arp;
pub mod icmp;
