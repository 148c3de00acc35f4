//! Hosts: registered by name (idempotent: the same name keeps its id, a new underlay address
//! replaces the old one), described by `DescribeHosts`, chosen for placement.

use std::net::Ipv4Addr;

use super::filter::Filterable;
use super::ids::new_id;
use super::{ApiError, Host, State, Tags, Txn, DEFAULT_AZ};

/// Registers host `name` at `underlay_ip`; returns its id.
pub fn register_host(txn: &mut Txn, name: &str, underlay_ip: &str) -> Result<String, ApiError> {
    let valid_name = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !valid_name {
        return Err(ApiError::invalid_value(format!(
            "Invalid host name '{name}': use 1 to 64 letters, digits, '-', '_' or '.'"
        )));
    }
    let ip: Ipv4Addr = underlay_ip.parse().map_err(|_| {
        ApiError::invalid_value(format!("Invalid underlay IPv4 address '{underlay_ip}'"))
    })?;
    if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() {
        return Err(ApiError::invalid_value(format!(
            "Invalid underlay IPv4 address '{underlay_ip}'"
        )));
    }
    if let Some(other) = txn
        .state
        .hosts
        .values()
        .find(|h| h.underlay_ip == ip && h.name != name)
    {
        return Err(ApiError::invalid_value(format!(
            "Underlay address {ip} already belongs to host '{}'",
            other.name
        )));
    }
    if let Some(existing) = txn.state.host_by_name(name).cloned() {
        if existing.underlay_ip != ip {
            let mut h = (*existing).clone();
            h.underlay_ip = ip;
            txn.put(h);
        }
        return Ok(existing.id.clone());
    }
    let host = Host {
        id: new_id("h"),
        name: name.to_string(),
        underlay_ip: ip,
        availability_zone: DEFAULT_AZ.to_string(),
        allocation_time: txn.now,
    };
    let id = host.id.clone();
    txn.put(host);
    Ok(id)
}

/// Removes host `name` (`softvpc server remove-host`). While instances (running or stopped)
/// live there it is refused with `IncorrectState`, unless `force`: then they are terminated
/// first. Returns the host id and the terminated instances; None if no such host is registered.
pub fn remove_host(
    txn: &mut Txn,
    name: &str,
    force: bool,
) -> Result<Option<(String, Vec<String>)>, ApiError> {
    let Some(host) = txn.state.host_by_name(name).cloned() else {
        return Ok(None);
    };
    let mut live: Vec<String> = txn
        .state
        .instances
        .values()
        .filter(|i| i.host_id == host.id && i.state != super::InstanceState::Terminated)
        .map(|i| i.id.clone())
        .collect();
    live.sort();
    if !live.is_empty() && !force {
        return Err(ApiError::new(
            "IncorrectState",
            format!(
                "Host '{name}' still has {} instance(s) ({}): terminate them first, or remove it with --force (which terminates them)",
                live.len(),
                live.join(", ")
            ),
        ));
    }
    if !live.is_empty() {
        super::instance::terminate_instances(txn, &live)?;
    }
    txn.delete::<super::Host>(&host.id);
    Ok(Some((host.id.clone(), live)))
}

/// Finds a host by id (`h-...`) or by name. Unknown: `InvalidHostID.NotFound` for something
/// shaped like a host id, `InvalidParameterValue` otherwise.
pub fn resolve(state: &State, id_or_name: &str) -> Result<String, ApiError> {
    if let Some(h) = state.hosts.get(id_or_name) {
        return Ok(h.id.clone());
    }
    if let Some(h) = state.host_by_name(id_or_name) {
        return Ok(h.id.clone());
    }
    if super::ids::is_well_formed(id_or_name, "h") {
        Err(ApiError::new(
            "InvalidHostID.NotFound",
            format!("The host ID '{id_or_name}' does not exist"),
        ))
    } else {
        Err(ApiError::invalid_value(format!(
            "Invalid host '{id_or_name}': no registered host has that id or name"
        )))
    }
}

/// The host with the fewest live instances (ties: by name), for placement without a HostId.
pub fn least_loaded(state: &State) -> Result<String, ApiError> {
    state
        .hosts
        .values()
        .min_by(|a, b| {
            (state.live_instances_on(&a.id), &a.name)
                .cmp(&(state.live_instances_on(&b.id), &b.name))
        })
        .map(|h| h.id.clone())
        .ok_or_else(|| {
            ApiError::new(
                "InsufficientInstanceCapacity",
                "There is no registered host to place the instance on.",
            )
        })
}

impl Filterable for Host {
    const FILTERS: &'static [&'static str] = &[
        "host-id",
        "state",
        "availability-zone",
        "auto-placement",
        "instance-type",
    ];
    const UNHELD: &'static [&'static str] = &["client-token", "host-reservation-id"];

    fn field(&self, _state: &State, name: &str) -> Vec<String> {
        let v = match name {
            "host-id" => self.id.clone(),
            "state" => "available".into(),
            "availability-zone" => self.availability_zone.clone(),
            "auto-placement" => "on".into(),
            "instance-type" => super::instance::DEFAULT_INSTANCE_TYPE.into(),
            _ => return Vec::new(),
        };
        vec![v]
    }

    fn tag_map(&self) -> Tags {
        let mut t = Tags::new();
        t.insert("Name".into(), self.name.clone());
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_is_idempotent_by_name() {
        let mut txn = Txn::new(State::new(), 7);
        let a = register_host(&mut txn, "host-1", "198.18.0.11").unwrap();
        let writes = txn.writes.len();
        assert_eq!(register_host(&mut txn, "host-1", "198.18.0.11").unwrap(), a);
        assert_eq!(txn.writes.len(), writes, "same address: nothing written");
        assert_eq!(register_host(&mut txn, "host-1", "198.18.0.21").unwrap(), a);
        assert_eq!(
            txn.state.hosts[&a].underlay_ip,
            "198.18.0.21".parse::<Ipv4Addr>().unwrap()
        );
        let b = register_host(&mut txn, "host-2", "198.18.0.12").unwrap();
        assert_ne!(a, b);
        assert_eq!(
            register_host(&mut txn, "host-3", "198.18.0.12")
                .unwrap_err()
                .code,
            "InvalidParameterValue"
        );
        assert!(register_host(&mut txn, "bad name", "198.18.0.13").is_err());
        assert!(register_host(&mut txn, "host-4", "nope").is_err());
        assert_eq!(resolve(&txn.state, "host-2").unwrap(), b);
        assert_eq!(resolve(&txn.state, &b).unwrap(), b);
        assert_eq!(
            resolve(&txn.state, "h-0123456789abcdef0").unwrap_err().code,
            "InvalidHostID.NotFound"
        );
        assert_eq!(
            resolve(&txn.state, "host-9").unwrap_err().code,
            "InvalidParameterValue"
        );
        assert_eq!(
            remove_host(&mut txn, "host-2", false).unwrap(),
            Some((b.clone(), vec![]))
        );
        assert!(txn.state.hosts.get(&b).is_none());
        assert_eq!(remove_host(&mut txn, "host-2", false).unwrap(), None);
    }
}
