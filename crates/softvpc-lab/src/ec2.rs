//! The lab's view of its server's EC2 API: the lab builds its VPCs and instances through the
//! server's public API, exactly as the AWS CLI would, never through the store.
//!
//! The calls go through `softvpc-ec2-client` (signed with the key pair the server generated in
//! `<data-dir>/credentials`, requests and answers through the EC2 model); this module only says
//! which calls the lab makes and reads the few fields it needs from the answers.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::bail;
use softvpc_ec2_client::read::{name_tag_spec, str_at, tag};
use softvpc_ec2_client::{BlockingClient, Config, Credentials, Value};

/// A client for one server.
#[derive(Debug, Clone)]
pub struct Ec2Client {
    /// The server's API address.
    pub addr: SocketAddr,
    /// The server's shared-credentials file (read at each call: the server writes it on its
    /// first start, after this client exists).
    pub credentials_file: PathBuf,
    api: BlockingClient,
}

/// A registered host as DescribeHosts lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInfo {
    /// `h-...`.
    pub host_id: String,
    /// The host's name: its `Name` tag.
    pub name: Option<String>,
}

/// An instance as DescribeInstances lists it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceInfo {
    /// `i-...`.
    pub instance_id: String,
    /// Its `Name` tag.
    pub name: Option<String>,
    /// Its primary private address.
    pub ip: Option<String>,
    /// The MAC of its first network interface.
    pub mac: Option<String>,
    /// The host it is placed on.
    pub host_id: Option<String>,
    /// Its VPC.
    pub vpc_id: Option<String>,
    /// Its subnet.
    pub subnet_id: Option<String>,
    /// `pending`, `running`, ...
    pub state: Option<String>,
}

/// A VPC as DescribeVpcs lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VpcInfo {
    /// `vpc-...`.
    pub vpc_id: String,
    /// Its `Name` tag.
    pub name: Option<String>,
}

/// Reads the hosts of a DescribeHosts output.
pub fn parse_hosts(out: &Value) -> Vec<HostInfo> {
    out.get_list("Hosts")
        .iter()
        .filter_map(|h| {
            Some(HostInfo {
                host_id: h.get_str("HostId")?.to_string(),
                name: tag(h, "Name").map(str::to_string),
            })
        })
        .collect()
}

/// Reads the instances of a DescribeInstances output (every reservation's instances).
pub fn parse_instances(out: &Value) -> Vec<InstanceInfo> {
    out.get_list("Reservations")
        .iter()
        .flat_map(|r| r.get_list("Instances"))
        .map(parse_instance)
        .collect()
}

/// Reads one instance (DescribeInstances and RunInstances share the shape).
pub fn parse_instance(item: &Value) -> InstanceInfo {
    let s = |path: &[&str]| {
        str_at(item, path)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
    };
    InstanceInfo {
        instance_id: s(&["InstanceId"]).unwrap_or_default(),
        name: tag(item, "Name").map(str::to_string),
        ip: s(&["PrivateIpAddress"]),
        mac: item
            .get_list("NetworkInterfaces")
            .first()
            .and_then(|e| e.get_str("MacAddress"))
            .map(str::to_string),
        host_id: s(&["Placement", "HostId"]),
        vpc_id: s(&["VpcId"]),
        subnet_id: s(&["SubnetId"]),
        state: s(&["State", "Name"]),
    }
}

/// Reads the VPCs of a DescribeVpcs output.
pub fn parse_vpcs(out: &Value) -> Vec<VpcInfo> {
    out.get_list("Vpcs")
        .iter()
        .filter_map(|v| {
            Some(VpcInfo {
                vpc_id: v.get_str("VpcId")?.to_string(),
                name: tag(v, "Name").map(str::to_string),
            })
        })
        .collect()
}

impl Ec2Client {
    /// A client of the server at `addr` whose key pair is in `credentials_file`.
    pub fn new(addr: SocketAddr, credentials_file: PathBuf) -> anyhow::Result<Ec2Client> {
        let api = BlockingClient::new(Config::http(
            addr,
            Credentials::File(credentials_file.clone()),
        ))?;
        Ok(Ec2Client {
            addr,
            credentials_file,
            api,
        })
    }

    /// The endpoint URL (for the AWS CLI's `--endpoint-url`).
    pub fn url(&self) -> String {
        self.api.config().url()
    }

    /// Calls an action and returns its output, or the server's refusal.
    pub fn call(&self, action: &str, input: &Value) -> anyhow::Result<Value> {
        Ok(self.api.call(action, input)?)
    }

    /// `GET /healthz` answers 200.
    pub fn healthy(&self) -> bool {
        self.api.healthy()
    }

    /// Every registered host.
    pub fn describe_hosts(&self) -> anyhow::Result<Vec<HostInfo>> {
        Ok(parse_hosts(
            &self.call("DescribeHosts", &Value::new_struct())?,
        ))
    }

    /// Every instance.
    pub fn describe_instances(&self) -> anyhow::Result<Vec<InstanceInfo>> {
        Ok(parse_instances(
            &self.call("DescribeInstances", &Value::new_struct())?,
        ))
    }

    /// Every VPC.
    pub fn describe_vpcs(&self) -> anyhow::Result<Vec<VpcInfo>> {
        Ok(parse_vpcs(
            &self.call("DescribeVpcs", &Value::new_struct())?,
        ))
    }

    /// Tags a resource with `Name`.
    pub fn name_resource(&self, id: &str, name: &str) -> anyhow::Result<()> {
        let input = Value::new_struct()
            .with("Resources", vec![Value::from(id)])
            .with(
                "Tags",
                vec![Value::new_struct().with("Key", "Name").with("Value", name)],
            );
        self.call("CreateTags", &input)?;
        Ok(())
    }

    /// Creates a VPC and returns its id.
    pub fn create_vpc(&self, cidr: &str) -> anyhow::Result<String> {
        let out = self.call("CreateVpc", &Value::new_struct().with("CidrBlock", cidr))?;
        match str_at(&out, &["Vpc", "VpcId"]) {
            Some(id) if !id.is_empty() => Ok(id.to_string()),
            _ => bail!("CreateVpc: the answer has no vpcId"),
        }
    }

    /// Creates a subnet and returns its id.
    pub fn create_subnet(&self, vpc_id: &str, cidr: &str, zone: &str) -> anyhow::Result<String> {
        let input = Value::new_struct()
            .with("VpcId", vpc_id)
            .with("CidrBlock", cidr)
            .with("AvailabilityZone", zone);
        let out = self.call("CreateSubnet", &input)?;
        match str_at(&out, &["Subnet", "SubnetId"]) {
            Some(id) if !id.is_empty() => Ok(id.to_string()),
            _ => bail!("CreateSubnet: the answer has no subnetId"),
        }
    }

    /// Calls `action` and returns the string at `path` of its answer (a new resource's id).
    pub fn create(&self, action: &str, input: &Value, path: &[&str]) -> anyhow::Result<String> {
        let out = self.call(action, input)?;
        match str_at(&out, path) {
            Some(id) if !id.is_empty() => Ok(id.to_string()),
            _ => bail!("{action}: the answer has no {}", path.join(".")),
        }
    }

    /// Creates an internet gateway and attaches it to `vpc_id`; returns its id.
    pub fn internet_gateway(&self, vpc_id: &str) -> anyhow::Result<String> {
        let igw = self.create(
            "CreateInternetGateway",
            &Value::new_struct(),
            &["InternetGateway", "InternetGatewayId"],
        )?;
        let input = Value::new_struct()
            .with("InternetGatewayId", igw.as_str())
            .with("VpcId", vpc_id);
        self.call("AttachInternetGateway", &input)?;
        Ok(igw)
    }

    /// Allocates an Elastic IP; returns (allocation id, address).
    pub fn allocate_address(&self) -> anyhow::Result<(String, String)> {
        let out = self.call(
            "AllocateAddress",
            &Value::new_struct().with("Domain", "vpc"),
        )?;
        match (str_at(&out, &["AllocationId"]), str_at(&out, &["PublicIp"])) {
            (Some(a), Some(ip)) if !a.is_empty() => Ok((a.to_string(), ip.to_string())),
            _ => bail!("AllocateAddress: the answer has no allocationId"),
        }
    }

    /// Creates a public NAT gateway in `subnet_id` with Elastic IP `allocation_id` and waits
    /// until it is available; returns its id.
    pub fn nat_gateway(&self, subnet_id: &str, allocation_id: &str) -> anyhow::Result<String> {
        let input = Value::new_struct()
            .with("SubnetId", subnet_id)
            .with("AllocationId", allocation_id);
        let id = self.create("CreateNatGateway", &input, &["NatGateway", "NatGatewayId"])?;
        let ask = Value::new_struct().with("NatGatewayIds", vec![Value::from(id.as_str())]);
        for _ in 0..100 {
            let out = self.call("DescribeNatGateways", &ask)?;
            let state = out
                .get_list("NatGateways")
                .first()
                .and_then(|n| n.get_str("State"))
                .map(str::to_string);
            if state.as_deref() == Some("available") {
                return Ok(id);
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        bail!("NAT gateway {id} did not become available")
    }

    /// Creates a route table for `vpc_id` with `routes` (destination, `GatewayId` or
    /// `NatGatewayId`, target id) and associates it with `subnet_id`; returns its id.
    pub fn route_table(
        &self,
        vpc_id: &str,
        subnet_id: &str,
        routes: &[(String, &str, String)],
    ) -> anyhow::Result<String> {
        let rtb = self.create(
            "CreateRouteTable",
            &Value::new_struct().with("VpcId", vpc_id),
            &["RouteTable", "RouteTableId"],
        )?;
        for (destination, kind, target) in routes {
            let input = Value::new_struct()
                .with("RouteTableId", rtb.as_str())
                .with("DestinationCidrBlock", destination.as_str())
                .with(*kind, target.as_str());
            self.call("CreateRoute", &input)?;
        }
        let input = Value::new_struct()
            .with("RouteTableId", rtb.as_str())
            .with("SubnetId", subnet_id);
        self.call("AssociateRouteTable", &input)?;
        Ok(rtb)
    }

    /// Creates security group `name` in `vpc_id`; returns its id.
    pub fn security_group(&self, vpc_id: &str, name: &str) -> anyhow::Result<String> {
        let input = Value::new_struct()
            .with("GroupName", name)
            .with("Description", format!("lab group {name}").as_str())
            .with("VpcId", vpc_id);
        self.create("CreateSecurityGroup", &input, &["GroupId"])
    }

    /// Adds an inbound rule: `protocol`, `ports` (TCP/UDP), from a CIDR or a group id.
    pub fn authorize_ingress(
        &self,
        group_id: &str,
        protocol: &str,
        ports: Option<(u16, u16)>,
        cidr: Option<&str>,
        group: Option<&str>,
    ) -> anyhow::Result<()> {
        let mut perm = Value::new_struct().with("IpProtocol", protocol);
        match (ports, protocol) {
            (Some((from, to)), _) => {
                perm = perm
                    .with("FromPort", i64::from(from))
                    .with("ToPort", i64::from(to));
            }
            (None, "icmp") => perm = perm.with("FromPort", -1i64).with("ToPort", -1i64),
            (None, _) => {}
        }
        if let Some(c) = cidr {
            perm = perm.with("IpRanges", vec![Value::new_struct().with("CidrIp", c)]);
        }
        if let Some(g) = group {
            perm = perm.with(
                "UserIdGroupPairs",
                vec![Value::new_struct().with("GroupId", g)],
            );
        }
        let input = Value::new_struct()
            .with("GroupId", group_id)
            .with("IpPermissions", vec![perm]);
        self.call("AuthorizeSecurityGroupIngress", &input)?;
        Ok(())
    }

    /// Associates Elastic IP `allocation_id` with `instance_id`.
    pub fn associate_address(&self, allocation_id: &str, instance_id: &str) -> anyhow::Result<()> {
        let input = Value::new_struct()
            .with("AllocationId", allocation_id)
            .with("InstanceId", instance_id);
        self.call("AssociateAddress", &input)?;
        Ok(())
    }

    /// Launches one instance with a Name tag, in a subnet, on a host; returns what the answer
    /// says about it (id and address at least).
    pub fn run_instance(
        &self,
        name: &str,
        subnet_id: &str,
        ip: Option<&str>,
        host_id: &str,
    ) -> anyhow::Result<InstanceInfo> {
        self.run_instance_in(name, subnet_id, ip, host_id, &[])
    }

    /// [`Self::run_instance`] with security groups (ids; empty: the VPC's default group).
    pub fn run_instance_in(
        &self,
        name: &str,
        subnet_id: &str,
        ip: Option<&str>,
        host_id: &str,
        groups: &[String],
    ) -> anyhow::Result<InstanceInfo> {
        let mut input = run_instance_input(name, subnet_id, host_id);
        if let Some(ip) = ip {
            input = input.with("PrivateIpAddress", ip);
        }
        if !groups.is_empty() {
            let ids: Vec<Value> = groups.iter().map(|g| Value::from(g.as_str())).collect();
            input = input.with("SecurityGroupIds", ids);
        }
        let out = self.call("RunInstances", &input)?;
        let Some(item) = out.get_list("Instances").first() else {
            bail!("RunInstances: the answer has no instancesSet/item");
        };
        let info = parse_instance(item);
        if info.instance_id.is_empty() {
            bail!("RunInstances: the answer has no instanceId");
        }
        Ok(info)
    }
}

/// The RunInstances input of one named instance in a subnet, on a host.
fn run_instance_input(name: &str, subnet_id: &str, host_id: &str) -> Value {
    Value::new_struct()
        .with("ImageId", "ami-00000000000000000")
        .with("InstanceType", "t3.micro")
        .with("MinCount", 1i64)
        .with("MaxCount", 1i64)
        .with("SubnetId", subnet_id)
        .with("Placement", Value::new_struct().with("HostId", host_id))
        .with("TagSpecifications", name_tag_spec("instance", name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use softvpc_ec2_client::codec::{decode_reply, request_body};

    #[test]
    fn hosts_are_named_by_tag() {
        let doc = r#"<DescribeHostsResponse><hostSet>
            <item><hostId>h-00000000000000001</hostId><tagSet><item><key>Name</key><value>host-1</value></item></tagSet></item>
            <item><hostId>h-00000000000000003</hostId></item>
            <item><availabilityZone>no-id</availabilityZone></item>
        </hostSet></DescribeHostsResponse>"#;
        let hosts = parse_hosts(&decode_reply("DescribeHosts", 200, doc).unwrap());
        let got: Vec<_> = hosts
            .iter()
            .map(|h| (h.host_id.as_str(), h.name.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                ("h-00000000000000001", Some("host-1")),
                ("h-00000000000000003", None)
            ]
        );
    }

    #[test]
    fn instances_are_read_from_reservations() {
        let doc = r#"<DescribeInstancesResponse><reservationSet><item><reservationId>r-1</reservationId><instancesSet><item>
            <instanceId>i-0123456789abcdef0</instanceId>
            <instanceState><code>16</code><name>running</name></instanceState>
            <placement><availabilityZone>us-east-1a</availabilityZone><hostId>h-00000000000000001</hostId></placement>
            <subnetId>subnet-1</subnetId><vpcId>vpc-1</vpcId><privateIpAddress>10.0.0.148</privateIpAddress>
            <networkInterfaceSet><item><networkInterfaceId>eni-1</networkInterfaceId><macAddress>02:00:00:00:00:01</macAddress></item></networkInterfaceSet>
            <tagSet><item><key>Name</key><value>zigi-vm1</value></item></tagSet>
            </item></instancesSet></item>
            <item><instancesSet><item><instanceId>i-2</instanceId><privateIpAddress></privateIpAddress></item></instancesSet></item>
            </reservationSet></DescribeInstancesResponse>"#;
        let got = parse_instances(&decode_reply("DescribeInstances", 200, doc).unwrap());
        assert_eq!(
            got[0],
            InstanceInfo {
                instance_id: "i-0123456789abcdef0".into(),
                name: Some("zigi-vm1".into()),
                ip: Some("10.0.0.148".into()),
                mac: Some("02:00:00:00:00:01".into()),
                host_id: Some("h-00000000000000001".into()),
                vpc_id: Some("vpc-1".into()),
                subnet_id: Some("subnet-1".into()),
                state: Some("running".into()),
            }
        );
        assert_eq!(
            got[1],
            InstanceInfo {
                instance_id: "i-2".into(),
                ..InstanceInfo::default()
            }
        );
    }

    #[test]
    fn run_instances_uses_the_wire_names_the_cli_sends() {
        let body = request_body(
            "RunInstances",
            &run_instance_input("zigi-vm1", "subnet-1", "h-1").with("PrivateIpAddress", "10.0.0.5"),
        )
        .unwrap();
        assert_eq!(
            body,
            "Action=RunInstances&Version=2016-11-15&ImageId=ami-00000000000000000&InstanceType=t3.micro\
             &MaxCount=1&MinCount=1&Placement.HostId=h-1&SubnetId=subnet-1\
             &TagSpecification.1.ResourceType=instance&TagSpecification.1.Tag.1.Key=Name\
             &TagSpecification.1.Tag.1.Value=zigi-vm1&PrivateIpAddress=10.0.0.5"
        );
    }
}
