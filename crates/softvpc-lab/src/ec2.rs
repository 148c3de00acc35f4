//! The lab's EC2 Query API client: the lab builds its VPCs and instances through the server's
//! public API, exactly as the AWS CLI would, never through the store.
//!
//! Requests are `POST /` with a form body (`Action=..&Version=2016-11-15&..`), answers are parsed
//! with [`crate::xml`]. Every call is SigV4-signed ([`softvpc_sigv4::sign`]) with the key pair the
//! server generated in `<data-dir>/credentials`; [`Ec2Client::call`] is the one place that signs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::http;
use crate::xml::Element;

/// EC2 API version the lab speaks.
const API_VERSION: &str = "2016-11-15";

/// A client for one server.
#[derive(Debug, Clone)]
pub struct Ec2Client {
    pub addr: SocketAddr,
    pub timeout: Duration,
    /// The server's shared-credentials file (read at each call: the server writes it on its
    /// first start, after this client exists).
    pub credentials_file: PathBuf,
}

/// The region the lab signs for (the server accepts any).
pub const REGION: &str = "us-east-1";

/// An error answer from the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub action: String,
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} failed (HTTP {}): {}: {}",
            self.action, self.status, self.code, self.message
        )
    }
}

impl std::error::Error for ApiError {}

/// A registered host as DescribeHosts lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInfo {
    pub host_id: String,
    /// The host's name: its `Name` tag, or a `hostName`/`name` element.
    pub name: Option<String>,
}

/// An instance as DescribeInstances lists it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceInfo {
    pub instance_id: String,
    pub name: Option<String>,
    pub ip: Option<String>,
    pub mac: Option<String>,
    pub host_id: Option<String>,
    pub vpc_id: Option<String>,
    pub subnet_id: Option<String>,
    pub state: Option<String>,
}

/// A VPC as DescribeVpcs lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VpcInfo {
    pub vpc_id: String,
    pub name: Option<String>,
}

/// Parameters of a request, in order.
pub type Params = Vec<(String, String)>;

/// Builds the form body of a request.
pub fn form_body(action: &str, params: &[(String, String)]) -> String {
    let mut body = format!("Action={}&Version={API_VERSION}", http::form_encode(action));
    for (k, v) in params {
        body.push('&');
        body.push_str(&http::form_encode(k));
        body.push('=');
        body.push_str(&http::form_encode(v));
    }
    body
}

/// Reads an EC2 error document (`Response/Errors/Error/{Code,Message}`).
pub fn parse_error(action: &str, status: u16, body: &str) -> ApiError {
    let (code, message) = match Element::parse(body) {
        Ok(root) => match root.find("Error") {
            Some(e) => (
                e.text_at("Code").unwrap_or("Unknown").to_string(),
                e.text_at("Message").unwrap_or_default().to_string(),
            ),
            None => ("Unknown".to_string(), body.chars().take(300).collect()),
        },
        Err(_) => ("Unknown".to_string(), body.chars().take(300).collect()),
    };
    ApiError {
        action: action.to_string(),
        status,
        code,
        message,
    }
}

/// The `TagSpecification.1` parameters that give a new resource a Name tag.
pub fn name_tag_spec(resource_type: &str, name: &str) -> Params {
    vec![
        (
            "TagSpecification.1.ResourceType".into(),
            resource_type.into(),
        ),
        ("TagSpecification.1.Tag.1.Key".into(), "Name".into()),
        ("TagSpecification.1.Tag.1.Value".into(), name.into()),
    ]
}

/// Reads the hosts of a DescribeHosts answer.
pub fn parse_hosts(root: &Element) -> Vec<HostInfo> {
    root.items("hostSet")
        .filter_map(|item| {
            let host_id = item.text_at("hostId")?.to_string();
            let name = item
                .tag("Name")
                .or_else(|| item.text_at("hostName"))
                .or_else(|| item.text_at("name"))
                .map(str::to_string);
            Some(HostInfo { host_id, name })
        })
        .collect()
}

/// Reads the instances of a DescribeInstances answer (`reservationSet/item/instancesSet/item`).
pub fn parse_instances(root: &Element) -> Vec<InstanceInfo> {
    let mut out = Vec::new();
    for reservation in root.items("reservationSet") {
        for item in reservation.items("instancesSet") {
            out.push(parse_instance(item));
        }
    }
    out
}

/// Reads one `instancesSet/item` (DescribeInstances and RunInstances share it).
pub fn parse_instance(item: &Element) -> InstanceInfo {
    let s = |path: &str| {
        item.text_at(path)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
    };
    let eni = item.items("networkInterfaceSet").next();
    InstanceInfo {
        instance_id: s("instanceId").unwrap_or_default(),
        name: item.tag("Name").map(str::to_string),
        ip: s("privateIpAddress"),
        mac: eni
            .and_then(|e| e.text_at("macAddress"))
            .map(str::to_string),
        host_id: s("placement/hostId"),
        vpc_id: s("vpcId"),
        subnet_id: s("subnetId"),
        state: s("instanceState/name"),
    }
}

/// Reads the VPCs of a DescribeVpcs answer.
pub fn parse_vpcs(root: &Element) -> Vec<VpcInfo> {
    root.items("vpcSet")
        .filter_map(|item| {
            Some(VpcInfo {
                vpc_id: item.text_at("vpcId")?.to_string(),
                name: item.tag("Name").map(str::to_string),
            })
        })
        .collect()
}

impl Ec2Client {
    pub fn new(addr: SocketAddr, credentials_file: PathBuf) -> Ec2Client {
        Ec2Client {
            addr,
            timeout: Duration::from_secs(15),
            credentials_file,
        }
    }

    /// The `default` profile (else the first) of the server's credentials file.
    fn credentials(&self) -> anyhow::Result<softvpc_sigv4::Credentials> {
        let profiles = softvpc_sigv4::read_credentials_file(&self.credentials_file)
            .with_context(|| format!("reading {}", self.credentials_file.display()))?;
        let pick = profiles
            .iter()
            .find(|p| p.name == "default")
            .or(profiles.first());
        match pick {
            Some(p) => Ok(p.credentials.clone()),
            None => bail!("{} holds no credentials", self.credentials_file.display()),
        }
    }

    /// The endpoint URL (for the AWS CLI's `--endpoint-url`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Calls an action and returns the answer's root element, or an [`ApiError`].
    pub fn call(&self, action: &str, params: &[(String, String)]) -> anyhow::Result<Element> {
        let body = form_body(action, params);
        let creds = self.credentials()?;
        let content_type = softvpc_sigv4::QUERY_CONTENT_TYPE;
        let host = self.addr.to_string();
        let signed = softvpc_sigv4::sign_ec2_query(&creds, REGION, &host, body.as_bytes())
            .context("signing the request (is the clock sane?)")?;
        let resp = http::request(
            self.addr,
            "POST",
            "/",
            Some(content_type),
            &signed,
            body.as_bytes(),
            self.timeout,
        )
        .with_context(|| format!("{action}: calling the EC2 API at {}", self.url()))?;
        let text = String::from_utf8_lossy(&resp.body);
        if resp.status != 200 {
            return Err(parse_error(action, resp.status, &text).into());
        }
        Element::parse(&text).with_context(|| format!("{action}: unreadable answer"))
    }

    /// `GET /healthz` answers 200.
    pub fn healthy(&self) -> bool {
        matches!(
            http::request(self.addr, "GET", "/healthz", None, &[], b"", Duration::from_secs(2)),
            Ok(r) if r.status == 200
        )
    }

    pub fn describe_hosts(&self) -> anyhow::Result<Vec<HostInfo>> {
        Ok(parse_hosts(&self.call("DescribeHosts", &[])?))
    }

    pub fn describe_instances(&self) -> anyhow::Result<Vec<InstanceInfo>> {
        Ok(parse_instances(&self.call("DescribeInstances", &[])?))
    }

    pub fn describe_vpcs(&self) -> anyhow::Result<Vec<VpcInfo>> {
        Ok(parse_vpcs(&self.call("DescribeVpcs", &[])?))
    }

    /// Tags a resource with `Name`.
    pub fn name_resource(&self, id: &str, name: &str) -> anyhow::Result<()> {
        let params = vec![
            ("ResourceId.1".into(), id.into()),
            ("Tag.1.Key".into(), "Name".into()),
            ("Tag.1.Value".into(), name.into()),
        ];
        self.call("CreateTags", &params)?;
        Ok(())
    }

    /// Creates a VPC and returns its id.
    pub fn create_vpc(&self, cidr: &str) -> anyhow::Result<String> {
        let root = self.call("CreateVpc", &[("CidrBlock".into(), cidr.into())])?;
        match root.find("vpcId") {
            Some(e) if !e.text.is_empty() => Ok(e.text.clone()),
            _ => bail!("CreateVpc: the answer has no vpcId"),
        }
    }

    /// Creates a subnet and returns its id.
    pub fn create_subnet(&self, vpc_id: &str, cidr: &str) -> anyhow::Result<String> {
        let params = vec![
            ("VpcId".into(), vpc_id.into()),
            ("CidrBlock".into(), cidr.into()),
        ];
        let root = self.call("CreateSubnet", &params)?;
        match root.find("subnetId") {
            Some(e) if !e.text.is_empty() => Ok(e.text.clone()),
            _ => bail!("CreateSubnet: the answer has no subnetId"),
        }
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
        let mut params: Params = vec![
            ("ImageId".into(), "ami-00000000000000000".into()),
            ("InstanceType".into(), "t3.micro".into()),
            ("MinCount".into(), "1".into()),
            ("MaxCount".into(), "1".into()),
            ("SubnetId".into(), subnet_id.into()),
            ("Placement.HostId".into(), host_id.into()),
        ];
        if let Some(ip) = ip {
            params.push(("PrivateIpAddress".into(), ip.into()));
        }
        params.extend(name_tag_spec("instance", name));
        let root = self.call("RunInstances", &params)?;
        let Some(item) = root.items("instancesSet").next() else {
            bail!("RunInstances: the answer has no instancesSet/item");
        };
        let info = parse_instance(item);
        if info.instance_id.is_empty() {
            bail!("RunInstances: the answer has no instanceId");
        }
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_bodies_carry_action_version_and_encoded_params() {
        let body = form_body("CreateVpc", &[("CidrBlock".into(), "10.0.0.0/16".into())]);
        assert_eq!(
            body,
            "Action=CreateVpc&Version=2016-11-15&CidrBlock=10.0.0.0%2F16"
        );
    }

    #[test]
    fn errors_are_read_from_the_aws_error_document() {
        let doc = r#"<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>InvalidSubnet.Range</Code><Message>The CIDR '10.1.0.0/24' is invalid.</Message></Error></Errors><RequestID>x</RequestID></Response>"#;
        let e = parse_error("CreateSubnet", 400, doc);
        assert_eq!(e.code, "InvalidSubnet.Range");
        assert_eq!(e.message, "The CIDR '10.1.0.0/24' is invalid.");
        assert_eq!(e.to_string(), "CreateSubnet failed (HTTP 400): InvalidSubnet.Range: The CIDR '10.1.0.0/24' is invalid.");
        let e = parse_error("X", 502, "bad gateway");
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("Unknown", "bad gateway")
        );
    }

    #[test]
    fn hosts_are_named_by_tag_or_element() {
        let doc = r#"<DescribeHostsResponse><hostSet>
            <item><hostId>h-00000000000000001</hostId><tagSet><item><key>Name</key><value>host-1</value></item></tagSet></item>
            <item><hostId>h-00000000000000002</hostId><hostName>host-2</hostName></item>
            <item><hostId>h-00000000000000003</hostId></item>
            <item><name>no-id</name></item>
        </hostSet></DescribeHostsResponse>"#;
        let hosts = parse_hosts(&Element::parse(doc).unwrap());
        let got: Vec<_> = hosts
            .iter()
            .map(|h| (h.host_id.as_str(), h.name.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                ("h-00000000000000001", Some("host-1")),
                ("h-00000000000000002", Some("host-2")),
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
        let got = parse_instances(&Element::parse(doc).unwrap());
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
    fn name_tags_use_the_tag_specification_wire_names() {
        let p = name_tag_spec("instance", "zigi-vm1");
        let body = form_body("RunInstances", &p);
        assert_eq!(
            body,
            "Action=RunInstances&Version=2016-11-15&TagSpecification.1.ResourceType=instance&TagSpecification.1.Tag.1.Key=Name&TagSpecification.1.Tag.1.Value=zigi-vm1"
        );
    }
}
