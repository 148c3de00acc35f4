//! One watch on the server end: what its host needs, as a first message and then one message
//! per revision advance.
//!
//! A host needs every registered host (to check VXLAN sources); the whole of every VPC (VPC,
//! subnets, ENIs, network ACLs, route tables, peering connections) with at least one ENI placed
//! on it or actively peered with such a VPC; and the security groups of the ENIs placed on it
//! (the members of groups their rules reference are ENIs of those VPCs, already held). A group
//! that becomes needed is sent whole, one no longer needed is deleted, like a VPC. The first
//! message is a Snapshot,
//! or, when the agent resumes with this log's epoch and a revision the ring still holds, the
//! Delta since then. Later messages are Deltas: changes of VPCs the agent holds and still needs
//! are replayed in order; a VPC that became needed is sent whole (as of now); a VPC no longer
//! needed is deleted. A Heartbeat says only that the revision advanced. Whenever the ring no
//! longer holds the feed's revision, the feed sends a fresh Snapshot: never silent staleness.

use std::collections::BTreeSet;

use softvpc_proto::pb;

use crate::log::{LogRead, Needed};
use crate::record::Scope;

/// One watch's position: the revision it has sent and the VPCs and groups its agent then holds.
#[derive(Debug, Clone)]
pub struct Feed {
    host_id: String,
    revision: u64,
    held: Needed,
}

impl Feed {
    /// Opens a watch for `req`. `read` must be the log read at `req.revision`. Returns the
    /// feed and its first message.
    pub fn open(req: &pb::WatchRequest, read: &LogRead) -> (Feed, pb::WatchResponse) {
        let mut feed = Feed {
            host_id: req.host_id.clone(),
            revision: req.revision,
            held: Needed {
                vpcs: req.held_vpc_ids.iter().cloned().collect(),
                groups: req.held_security_group_ids.iter().cloned().collect(),
            },
        };
        let resume = *req.epoch == *read.epoch && req.revision > 0;
        let first = feed.message(read, !resume);
        (feed, first)
    }

    /// The host this feed serves.
    pub fn host_id(&self) -> &str {
        &self.host_id
    }

    /// The revision the feed has sent (read the log since it for [`Feed::next`]).
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The VPCs the agent holds after the messages sent so far.
    pub fn held(&self) -> &BTreeSet<String> {
        &self.held.vpcs
    }

    /// The security groups the agent holds after the messages sent so far.
    pub fn held_groups(&self) -> &BTreeSet<String> {
        &self.held.groups
    }

    /// The next message, given the log read at [`Feed::revision`]; None when the revision has
    /// not advanced.
    pub fn next(&mut self, read: &LogRead) -> Option<pb::WatchResponse> {
        if read.revision == self.revision && read.entries.is_some() {
            return None;
        }
        Some(self.message(read, false))
    }

    fn message(&mut self, read: &LogRead, snapshot: bool) -> pb::WatchResponse {
        use pb::watch_response::Kind;
        let kind = match &read.entries {
            Some(entries) if !snapshot => {
                let needed = read.catalog.needed(&self.host_id);
                let kept = |v: &str| self.held.vpcs.contains(v) && needed.vpcs.contains(v);
                let mut changes = Vec::new();
                for entry in entries {
                    for c in &entry.changes {
                        let forward = match c.scope() {
                            Scope::All => true,
                            Scope::Vpc(v) => kept(v),
                            // A peering also goes to an agent that held either side before
                            // this message: when the side it held is dropped and the other side
                            // arrives whole, only this delete removes a peering gone meanwhile.
                            Scope::Vpcs(a, b) => {
                                self.held.vpcs.contains(a) || self.held.vpcs.contains(b)
                            }
                            Scope::Group(g) => {
                                self.held.groups.contains(g) && needed.groups.contains(g)
                            }
                        };
                        if forward {
                            changes.push(c.to_pb());
                        }
                    }
                }
                for v in needed.vpcs.difference(&self.held.vpcs) {
                    changes.extend(read.catalog.whole_vpc(v));
                }
                for g in needed.groups.difference(&self.held.groups) {
                    changes.extend(read.catalog.whole_group(g));
                }
                for g in self.held.groups.difference(&needed.groups) {
                    changes.push(pb::Change {
                        kind: Some(pb::change::Kind::DeleteSecurityGroupId(g.clone())),
                    });
                }
                for v in self.held.vpcs.difference(&needed.vpcs) {
                    changes.push(pb::Change {
                        kind: Some(pb::change::Kind::DeleteVpcId(v.clone())),
                    });
                }
                self.held = needed;
                if changes.is_empty() {
                    Kind::Heartbeat(pb::Heartbeat {})
                } else {
                    Kind::Delta(pb::Delta { changes })
                }
            }
            _ => {
                let (snap, held) = read.catalog.snapshot(&self.host_id);
                self.held = held;
                Kind::Snapshot(snap)
            }
        };
        self.revision = read.revision;
        pb::WatchResponse {
            epoch: read.epoch.to_string(),
            revision: read.revision,
            kind: Some(kind),
        }
    }
}
