//! Hosts: registered by name (idempotent: the same name keeps its id, a new underlay address
//! replaces the old one), described by `DescribeHosts`, chosen for placement.

use std::net::Ipv4Addr;

use super::filter::Filterable;
use super::ids::new_id;
use super::{ApiError, Host, State, Tags, Txn, DEFAULT_AZ};

/// Registers host `name` at `underlay_ip` in the default zone; returns its id.
pub fn register_host(txn: &mut Txn, name: &str, underlay_ip: &str) -> Result<String, ApiError> {
    register_host_in(txn, name, underlay_ip, None)
}

/// Registers host `name` at `underlay_ip` in availability zone `zone` (a zone name or id of the
/// region; None or empty: [`DEFAULT_AZ`]); returns its id. A registered host may change zone only
/// while no instance lives on it (an instance stays in its subnet's zone).
pub fn register_host_in(
    txn: &mut Txn,
    name: &str,
    underlay_ip: &str,
    zone: Option<&str>,
) -> Result<String, ApiError> {
    let zone = match zone.filter(|z| !z.is_empty()) {
        None => DEFAULT_AZ,
        Some(z) => super::zone::resolve(z).ok_or_else(|| {
            ApiError::invalid_value(format!(
                "Invalid availability zone '{z}' for host '{name}': use one of {}",
                super::zone::names()
            ))
        })?,
    };
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
        if existing.availability_zone != zone && txn.state.live_instances_on(&existing.id) > 0 {
            return Err(ApiError::new(
                "IncorrectState",
                format!(
                    "Host '{name}' runs instances in {}; it cannot move to {zone} until they \
                     are terminated.",
                    existing.availability_zone
                ),
            ));
        }
        if existing.underlay_ip != ip || existing.availability_zone != zone {
            let mut h = (*existing).clone();
            h.underlay_ip = ip;
            h.availability_zone = zone.to_string();
            txn.put(h);
        }
        return Ok(existing.id.clone());
    }
    let host = Host {
        id: new_id("h"),
        name: name.to_string(),
        underlay_ip: ip,
        availability_zone: zone.to_string(),
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
        super::instance::force_terminate_instances(txn, &live)?;
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

/// The host of zone `zone` with the fewest live instances (ties: by name), for placement
/// without a HostId. No host there: AWS's `InsufficientInstanceCapacity` (a server error),
/// naming the zones that have hosts.
pub fn least_loaded_in(state: &State, zone: &str) -> Result<String, ApiError> {
    if let Some(h) = state
        .hosts
        .values()
        .filter(|h| h.availability_zone == zone)
        .min_by(|a, b| {
            (state.live_instances_on(&a.id), &a.name)
                .cmp(&(state.live_instances_on(&b.id), &b.name))
        })
    {
        return Ok(h.id.clone());
    }
    let mut others: Vec<&str> = state
        .hosts
        .values()
        .map(|h| h.availability_zone.as_str())
        .collect();
    others.sort();
    others.dedup();
    let hint = if others.is_empty() {
        "There is no registered host in any zone.".to_string()
    } else {
        format!(
            "You can currently get capacity by not specifying an Availability Zone in your \
             request or choosing {}.",
            others.join(", ")
        )
    };
    Err(ApiError::new(
        "InsufficientInstanceCapacity",
        format!(
            "We currently do not have sufficient capacity in the Availability Zone you requested \
             ({zone}). {hint}"
        ),
    )
    .with_status(500))
}

/// The zone with hosts to place an instance in when the request names none (the first by name
/// of the zones that have hosts; `DEFAULT_AZ` when there are none, so the capacity error names it).
pub fn zone_with_hosts(state: &State) -> &str {
    state
        .hosts
        .values()
        .map(|h| h.availability_zone.as_str())
        .min()
        .unwrap_or(DEFAULT_AZ)
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

    #[test]
    fn hosts_live_in_zones() {
        let mut txn = Txn::new(State::new(), 0);
        let a = register_host_in(&mut txn, "a", "198.18.0.11", None).unwrap();
        let b = register_host_in(&mut txn, "b", "198.18.0.12", Some("use1-az2")).unwrap();
        register_host_in(&mut txn, "c", "198.18.0.13", Some("us-east-1b")).unwrap();
        assert_eq!(txn.state.hosts[&a].availability_zone, "us-east-1a");
        assert_eq!(txn.state.hosts[&b].availability_zone, "us-east-1b");
        assert_eq!(
            register_host_in(&mut txn, "d", "198.18.0.14", Some("us-west-2a"))
                .unwrap_err()
                .code,
            "InvalidParameterValue"
        );
        assert_eq!(least_loaded_in(&txn.state, "us-east-1a").unwrap(), a);
        assert_eq!(least_loaded_in(&txn.state, "us-east-1b").unwrap(), b);
        let e = least_loaded_in(&txn.state, "us-east-1c").unwrap_err();
        assert_eq!(
            (e.code.as_str(), e.status),
            ("InsufficientInstanceCapacity", 500)
        );
        assert!(e.message.contains("(us-east-1c)") && e.message.contains("us-east-1a, us-east-1b"));
        assert_eq!(zone_with_hosts(&txn.state), "us-east-1a");
        // An idle host may move; the zone is rewritten.
        register_host_in(&mut txn, "a", "198.18.0.11", Some("us-east-1c")).unwrap();
        assert_eq!(txn.state.hosts[&a].availability_zone, "us-east-1c");
        assert_eq!(zone_with_hosts(&txn.state), "us-east-1b");
    }
}
