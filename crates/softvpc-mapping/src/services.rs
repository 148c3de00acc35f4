//! The instance services of a VPC as the mapping carries them (issue 11): its DNS attributes,
//! the region's private DNS domain and its DHCP option set. Hosts holding ENIs of the VPC get
//! them with the VPC's record; the host's router answers DHCP and DNS from them.

use std::net::Ipv4Addr;

use softvpc_proto::pb;

use crate::record::RecordError;

/// A name server of a DHCP option set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameServer {
    /// `AmazonProvidedDNS`: the VPC's base + 2.
    AmazonProvided,
    /// A server address.
    Ip(Ipv4Addr),
}

/// A DHCP option set (`dopt-`), checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DhcpOptionSet {
    /// `dopt-...`.
    pub dhcp_options_id: String,
    /// `domain-name` (empty: none).
    pub domain_name: String,
    /// `domain-name-servers`, in order.
    pub name_servers: Vec<NameServer>,
    /// `ntp-servers`.
    pub ntp_servers: Vec<Ipv4Addr>,
    /// `netbios-name-servers`.
    pub netbios_name_servers: Vec<Ipv4Addr>,
    /// `netbios-node-type` (0: none).
    pub netbios_node_type: u8,
}

/// The services of one VPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VpcServices {
    /// `enableDnsSupport` (default true).
    pub dns_support: bool,
    /// `enableDnsHostnames` (default false).
    pub dns_hostnames: bool,
    /// The region's private DNS domain (`ec2.internal`, `<region>.compute.internal`).
    pub private_domain: String,
    /// The region.
    pub region: String,
    /// The associated option set; `None`: AWS's default set (AmazonProvidedDNS and the
    /// private domain).
    pub dhcp_options: Option<DhcpOptionSet>,
}

impl Default for VpcServices {
    fn default() -> Self {
        VpcServices {
            dns_support: true,
            dns_hostnames: false,
            private_domain: "ec2.internal".to_string(),
            region: "us-east-1".to_string(),
            dhcp_options: None,
        }
    }
}

/// AWS's private DNS domain of `region`: `ec2.internal` in us-east-1,
/// `<region>.compute.internal` elsewhere.
pub fn private_domain(region: &str) -> String {
    if region == "us-east-1" {
        "ec2.internal".to_string()
    } else {
        format!("{region}.compute.internal")
    }
}

impl VpcServices {
    /// The protobuf form.
    pub fn to_pb(&self) -> pb::VpcServices {
        pb::VpcServices {
            dns_support_disabled: !self.dns_support,
            dns_hostnames: self.dns_hostnames,
            private_domain: self.private_domain.clone(),
            region: self.region.clone(),
            dhcp_options: self.dhcp_options.as_ref().map(|d| pb::DhcpOptionSet {
                dhcp_options_id: d.dhcp_options_id.clone(),
                domain_name: d.domain_name.clone(),
                domain_name_servers: d
                    .name_servers
                    .iter()
                    .map(|n| match n {
                        NameServer::AmazonProvided => "AmazonProvidedDNS".to_string(),
                        NameServer::Ip(ip) => ip.to_string(),
                    })
                    .collect(),
                ntp_servers: d.ntp_servers.iter().map(ToString::to_string).collect(),
                netbios_name_servers: d
                    .netbios_name_servers
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                netbios_node_type: u32::from(d.netbios_node_type),
            }),
        }
    }

    /// Checks and converts the protobuf form of VPC `vpc_id`'s services (absent: defaults).
    pub fn from_pb(vpc_id: &str, s: Option<&pb::VpcServices>) -> Result<Self, RecordError> {
        let Some(s) = s else {
            return Ok(VpcServices::default());
        };
        let bad = |field: &'static str, value: &str| RecordError::BadField {
            kind: "vpc",
            id: vpc_id.to_string(),
            field,
            value: value.to_string(),
        };
        let ips = |field: &'static str, v: &[String]| -> Result<Vec<Ipv4Addr>, RecordError> {
            v.iter()
                .map(|s| s.parse().map_err(|_| bad(field, s)))
                .collect()
        };
        let region = if s.region.is_empty() {
            "us-east-1".to_string()
        } else {
            s.region.clone()
        };
        let private_domain = if s.private_domain.is_empty() {
            private_domain(&region)
        } else {
            s.private_domain.clone()
        };
        let dhcp_options = match &s.dhcp_options {
            None => None,
            Some(d) => Some(DhcpOptionSet {
                dhcp_options_id: d.dhcp_options_id.clone(),
                domain_name: d.domain_name.clone(),
                name_servers: d
                    .domain_name_servers
                    .iter()
                    .map(|n| {
                        if n == "AmazonProvidedDNS" {
                            Ok(NameServer::AmazonProvided)
                        } else {
                            n.parse()
                                .map(NameServer::Ip)
                                .map_err(|_| bad("domain_name_servers", n))
                        }
                    })
                    .collect::<Result<_, _>>()?,
                ntp_servers: ips("ntp_servers", &d.ntp_servers)?,
                netbios_name_servers: ips("netbios_name_servers", &d.netbios_name_servers)?,
                netbios_node_type: u8::try_from(d.netbios_node_type)
                    .map_err(|_| bad("netbios_node_type", &d.netbios_node_type.to_string()))?,
            }),
        };
        Ok(VpcServices {
            dns_support: !s.dns_support_disabled,
            dns_hostnames: s.dns_hostnames,
            private_domain,
            region,
            dhcp_options,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_defaults() {
        assert_eq!(
            VpcServices::from_pb("vpc-1", None).unwrap(),
            VpcServices::default()
        );
        let s = VpcServices {
            dns_support: false,
            dns_hostnames: true,
            private_domain: "eu-west-1.compute.internal".into(),
            region: "eu-west-1".into(),
            dhcp_options: Some(DhcpOptionSet {
                dhcp_options_id: "dopt-1".into(),
                domain_name: "corp.example".into(),
                name_servers: vec![
                    NameServer::AmazonProvided,
                    NameServer::Ip(Ipv4Addr::new(10, 0, 0, 53)),
                ],
                ntp_servers: vec![Ipv4Addr::new(169, 254, 169, 123)],
                netbios_name_servers: vec![],
                netbios_node_type: 2,
            }),
        };
        assert_eq!(VpcServices::from_pb("vpc-1", Some(&s.to_pb())).unwrap(), s);
        let mut pb = s.to_pb();
        pb.dhcp_options.as_mut().unwrap().ntp_servers = vec!["nope".into()];
        assert!(VpcServices::from_pb("vpc-1", Some(&pb)).is_err());
        assert_eq!(private_domain("us-west-2"), "us-west-2.compute.internal");
    }
}
