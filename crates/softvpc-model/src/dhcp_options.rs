//! DHCP option sets (`dopt-`): immutable lists of DHCP options (domain name, name/NTP/NetBIOS
//! servers), associated with any number of VPCs; a VPC without one reports `default`.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::filter::Filterable;
use super::ids::new_id;
use super::{ApiError, State, Tags, Txn};

/// The option keys AWS accepts.
pub const KEYS: &[&str] = &[
    "domain-name",
    "domain-name-servers",
    "ntp-servers",
    "netbios-name-servers",
    "netbios-node-type",
];

/// A DHCP option set: key -> values, in the order given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DhcpOptions {
    /// `dopt-...`.
    pub id: String,
    /// Its options: key and values, in order.
    pub options: Vec<(String, Vec<String>)>,
    /// Its tags.
    pub tags: Tags,
    /// The region's default set, which new VPCs are associated with (see [`region_default`]).
    #[serde(default)]
    pub region_default: bool,
}

/// The options of the region's default set, as AWS makes it in us-east-1.
pub fn region_default_options() -> Vec<(String, Vec<String>)> {
    vec![
        ("domain-name".into(), vec!["ec2.internal".into()]),
        (
            "domain-name-servers".into(),
            vec!["AmazonProvidedDNS".into()],
        ),
    ]
}

/// The id of the region's default option set, which AWS associates with every new VPC. Made on
/// first use (a new VPC, or the default VPC at first start), and again if it was deleted, as
/// AWS's account has one per region.
pub fn region_default(txn: &mut Txn) -> String {
    if let Some(d) = txn.state.dhcp_options.values().find(|d| d.region_default) {
        return d.id.clone();
    }
    let d = DhcpOptions {
        id: new_id("dopt"),
        options: region_default_options(),
        tags: Tags::new(),
        region_default: true,
    };
    txn.put(d.clone());
    d.id
}

/// `InvalidDhcpOptionID.NotFound` for `ids`.
pub fn dopt_not_found(ids: &[&str]) -> ApiError {
    ApiError::not_found("InvalidDhcpOptionID.NotFound", "dhcpOption", ids)
}

fn bad(msg: String) -> ApiError {
    ApiError::invalid_value(msg)
}

/// Checks one option: a known key, 1..=4 values (IPv4 addresses for the server lists, except
/// `AmazonProvidedDNS` alone for name servers; node type 1, 2, 4 or 8).
fn check_option(key: &str, values: &[String]) -> Result<(), ApiError> {
    if !KEYS.contains(&key) {
        return Err(bad(format!("Value ({key}) for parameter key is invalid.")));
    }
    if values.is_empty() {
        return Err(bad(format!("No value given for DHCP option '{key}'.")));
    }
    let ips = |max: usize| -> Result<(), ApiError> {
        if values.len() > max {
            return Err(bad(format!(
                "Too many values for DHCP option '{key}' (at most {max})."
            )));
        }
        for v in values {
            if v.parse::<Ipv4Addr>().is_err() {
                return Err(bad(format!("Value ({v}) for parameter value is invalid.")));
            }
        }
        Ok(())
    };
    match key {
        "domain-name" => {
            let ok = values.len() == 1
                && values[0].split(' ').all(|d| {
                    !d.is_empty()
                        && d.len() <= 255
                        && d.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
                });
            if !ok {
                return Err(bad(format!(
                    "Value ({}) for parameter value is invalid.",
                    values.join(",")
                )));
            }
            Ok(())
        }
        "domain-name-servers" if values.iter().any(|v| v == "AmazonProvidedDNS") => {
            if values.len() > 4
                || values
                    .iter()
                    .any(|v| v != "AmazonProvidedDNS" && v.parse::<Ipv4Addr>().is_err())
            {
                return Err(bad("Invalid value for domain-name-servers.".into()));
            }
            Ok(())
        }
        "domain-name-servers" | "ntp-servers" | "netbios-name-servers" => ips(4),
        _ => {
            if values.len() != 1 || !["1", "2", "4", "8"].contains(&values[0].as_str()) {
                return Err(bad(format!(
                    "Value ({}) for parameter value is invalid.",
                    values.join(",")
                )));
            }
            Ok(())
        }
    }
}

/// `CreateDhcpOptions`: every option checked, no key twice.
pub fn create_dhcp_options(
    txn: &mut Txn,
    options: Vec<(String, Vec<String>)>,
    tags: Tags,
) -> Result<DhcpOptions, ApiError> {
    if options.is_empty() {
        return Err(ApiError::missing("DhcpConfiguration"));
    }
    for (i, (k, v)) in options.iter().enumerate() {
        check_option(k, v)?;
        if options[..i].iter().any(|(o, _)| o == k) {
            return Err(bad(format!("DHCP option '{k}' given more than once.")));
        }
    }
    let d = DhcpOptions {
        id: new_id("dopt"),
        options,
        tags,
        region_default: false,
    };
    txn.put(d.clone());
    Ok(d)
}

/// `DeleteDhcpOptions`: refused while any VPC uses the set.
pub fn delete_dhcp_options(txn: &mut Txn, id: &str) -> Result<(), ApiError> {
    if !txn.state.dhcp_options.contains_key(id) {
        return Err(dopt_not_found(&[id]));
    }
    if txn
        .state
        .vpcs
        .values()
        .any(|v| v.dhcp_options_id.as_deref() == Some(id))
    {
        return Err(ApiError::has_dependencies("dhcpOptions", id));
    }
    txn.delete::<DhcpOptions>(id);
    Ok(())
}

/// `AssociateDhcpOptions`: `default` means no option set.
pub fn associate_dhcp_options(txn: &mut Txn, id: &str, vpc_id: &str) -> Result<(), ApiError> {
    let mut vpc = super::vpc::get_vpc(&txn.state, vpc_id).map(|v| (**v).clone())?;
    if id != "default" && !txn.state.dhcp_options.contains_key(id) {
        return Err(dopt_not_found(&[id]));
    }
    vpc.dhcp_options_id = (id != "default").then(|| id.to_string());
    txn.put(vpc);
    Ok(())
}

/// Edits the tags of option set `id` (for CreateTags/DeleteTags).
pub fn edit_tags(
    txn: &mut Txn,
    id: &str,
    edit: &mut dyn FnMut(&mut Tags) -> Result<(), ApiError>,
) -> Result<(), ApiError> {
    let mut d = txn
        .state
        .dhcp_options
        .get(id)
        .map(|d| (**d).clone())
        .ok_or_else(|| dopt_not_found(&[id]))?;
    edit(&mut d.tags)?;
    txn.put(d);
    Ok(())
}

impl Filterable for DhcpOptions {
    const FILTERS: &'static [&'static str] = &["dhcp-options-id", "key", "value", "owner-id"];

    fn field(&self, _state: &State, name: &str) -> Vec<String> {
        match name {
            "dhcp-options-id" => vec![self.id.clone()],
            "key" => self.options.iter().map(|(k, _)| k.clone()).collect(),
            "value" => self.options.iter().flat_map(|(_, v)| v.clone()).collect(),
            "owner-id" => vec![super::OWNER_ID.into()],
            _ => Vec::new(),
        }
    }

    fn tag_map(&self) -> Tags {
        self.tags.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vpc::{create_vpc, delete_vpc};

    fn opt(k: &str, v: &[&str]) -> (String, Vec<String>) {
        (k.into(), v.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn new_vpcs_share_the_regions_default_set() {
        let mut txn = Txn::new(State::new(), 0);
        let a = create_vpc(&mut txn, "10.0.0.0/16", None, Tags::new()).unwrap();
        let b = create_vpc(&mut txn, "10.1.0.0/16", None, Tags::new()).unwrap();
        let id = a.dhcp_options_id.clone().expect("a default set");
        assert_eq!(b.dhcp_options_id.as_deref(), Some(id.as_str()));
        let d = &txn.state.dhcp_options[&id];
        assert!(d.region_default);
        assert_eq!(d.options, region_default_options());
        assert_eq!(txn.state.dhcp_options.len(), 1);
        // Deleted once no VPC uses it: the next VPC gets a new one.
        for v in [&a, &b] {
            associate_dhcp_options(&mut txn, "default", &v.id).unwrap();
        }
        delete_dhcp_options(&mut txn, &id).unwrap();
        let c = create_vpc(&mut txn, "10.2.0.0/16", None, Tags::new()).unwrap();
        let again = c.dhcp_options_id.expect("a new default set");
        assert_ne!(again, id);
        assert!(txn.state.dhcp_options[&again].region_default);
    }

    #[test]
    fn create_associate_delete() {
        let mut txn = Txn::new(State::new(), 0);
        let d = create_dhcp_options(
            &mut txn,
            vec![
                opt("domain-name", &["corp.example"]),
                opt("domain-name-servers", &["AmazonProvidedDNS"]),
                opt("ntp-servers", &["10.0.0.5"]),
                opt("netbios-node-type", &["2"]),
            ],
            Tags::new(),
        )
        .unwrap();
        assert!(d.id.starts_with("dopt-"));
        let v = create_vpc(&mut txn, "10.0.0.0/16", None, Tags::new()).unwrap();
        associate_dhcp_options(&mut txn, &d.id, &v.id).unwrap();
        assert_eq!(
            txn.state.vpcs[&v.id].dhcp_options_id.as_deref(),
            Some(d.id.as_str())
        );
        assert_eq!(
            delete_dhcp_options(&mut txn, &d.id).unwrap_err().code,
            "DependencyViolation"
        );
        associate_dhcp_options(&mut txn, "default", &v.id).unwrap();
        assert_eq!(txn.state.vpcs[&v.id].dhcp_options_id, None);
        let code = |r: Result<(), ApiError>| r.unwrap_err().code;
        assert_eq!(
            code(associate_dhcp_options(&mut txn, "dopt-nope", &v.id)),
            "InvalidDhcpOptionID.NotFound"
        );
        assert_eq!(
            code(associate_dhcp_options(&mut txn, &d.id, "vpc-nope")),
            "InvalidVpcID.NotFound"
        );
        delete_dhcp_options(&mut txn, &d.id).unwrap();
        assert_eq!(
            code(delete_dhcp_options(&mut txn, &d.id)),
            "InvalidDhcpOptionID.NotFound"
        );
        delete_vpc(&mut txn, &v.id).unwrap();
    }

    #[test]
    fn refuses_bad_options() {
        let mut txn = Txn::new(State::new(), 0);
        for bad in [
            vec![opt("bogus", &["x"])],
            vec![opt(
                "domain-name-servers",
                &["1.1.1.1", "2.2.2.2", "3.3.3.3", "4.4.4.4", "5.5.5.5"],
            )],
            vec![opt("ntp-servers", &["not-an-ip"])],
            vec![opt("netbios-node-type", &["3"])],
            vec![opt("domain-name", &["bad_name!"])],
            vec![opt("domain-name", &["a.b"]), opt("domain-name", &["c.d"])],
            vec![],
        ] {
            let e = create_dhcp_options(&mut txn, bad, Tags::new()).unwrap_err();
            assert!(
                e.code.starts_with("InvalidParameter") || e.code == "MissingParameter",
                "{}",
                e.code
            );
        }
        assert!(txn.state.dhcp_options.is_empty());
    }
}
