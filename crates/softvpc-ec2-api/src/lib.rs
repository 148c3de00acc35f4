//! The EC2 Query API over HTTP (axum): decode the request, find the action in the [`ACTIONS`]
//! table, run it against the store (`softvpc-store`), answer with the response XML or AWS's
//! error XML.
//!
//! # How to write an action (model-driven style)
//! Requests are decoded and responses encoded from botocore's EC2 model
//! (`softvpc_ec2_protocol`), so a handler never sees wire names (`Filter.1.Value.2`, `vpcSet`):
//! it reads the input tree and returns the output tree, both keyed by the model's member names
//! (as in botocore / boto3: `VpcIds`, `Filters`, `TagSpecifications`; output `Vpcs`, `NextToken`).
//! 1. Write `pub fn create_thing(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError>` in
//!    `ec2/<family>.rs`. Unknown parameters, wrong types/enums/ranges and the model's required
//!    members are already refused by the decoder; check the rest (helpers in [`input`]:
//!    [`input::required`] for a string that must be present, [`input::id_list`],
//!    [`input::filters`], [`input::creation_tags`] / [`input::tag_specs`] for
//!    `TagSpecifications`, [`input::describe`] = ids + filters + `MaxResults`/`NextToken`).
//! 2. Change state only inside `ctx.mutate(|txn| ...)`: all or nothing, and on `DryRun=true`
//!    the mutation is checked and discarded, answering 412 `DryRunOperation` (the dispatcher
//!    reads `DryRun`; read-only actions answer `DryRunOperation` without running).
//! 3. Build the output: `Value::new_struct().with("Vpc", vpc_value)`; lists are
//!    `Value::List`, tags [`input::tag_set`], timestamps `Timestamp::from_unix(secs)`,
//!    optional members [`input::ValueExt::with_opt`]. Operations without an output shape (e.g.
//!    DeleteVpc) return `Value::new_struct()` and answer `<return>true</return>`. Member names
//!    must exist in the output shape: debug builds refuse a tree that does not fit (500, logged)
//!    so tests catch it; release builds encode leniently.
//! 4. Add one row `Action::model("CreateThing", Kind::Write, family::create_thing)` to
//!    [`ACTIONS`] (append-only). Errors are [`ApiError`]s with AWS's code, message and status.
//!
//! Every request except `GET /healthz` must carry a valid SigV4 signature (see [`auth`]).

#![warn(missing_docs)]

mod attributes;
pub mod auth;
mod dhcp_options;
mod discovery;
mod eni;
pub mod error;
mod flow_log;
mod host;
pub mod input;
mod instance;
mod instance_status;
mod internet_access;
pub mod key_pair;
mod launch_template;
mod lifecycle;
pub mod listing;
mod network_acl;
mod peering;
mod prefix_list;
mod route_table;
mod security_group;
mod sts;
mod subnet;
mod tags;
mod unsupported;
mod volume;
mod vpc;

pub use flow_log::prepare_destinations;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use softvpc_ec2_protocol::Value;
use softvpc_model::ids::new_request_id;
use softvpc_model::{ApiError, Txn};
use softvpc_store::Store;

pub use listing::Listing;

/// Whether an action only reads or changes the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Reads the published state (a dry run answers `DryRunOperation` without running it).
    Read,
    /// Runs as one mutation of the store.
    Write,
}

/// What a handler gets: the store, whether this is a dry run, and where flow log destinations
/// live.
pub struct Ctx<'a> {
    /// The store the action runs against.
    pub cp: &'a Store,
    /// `DryRun=true`: check the mutation, then discard it.
    pub dry_run: bool,
    /// The directory flow log destinations live in (None: flow logs get no directories, e.g.
    /// in tests).
    pub flow_log_dir: Option<&'a Path>,
}

impl Ctx<'_> {
    /// Runs `op` as one all-or-nothing mutation (discarded on a dry run; run again if another
    /// server replica committed first, see [`Store::mutate`]).
    pub fn mutate<R>(
        &self,
        op: impl FnMut(&mut Txn) -> Result<R, ApiError>,
    ) -> Result<R, ApiError> {
        self.cp.mutate(self.dry_run, op)
    }
}

/// An action handler: the input tree (decoded by the EC2 model) in, the output tree out.
pub type Handler = fn(&Ctx<'_>, &Value) -> Result<Value, ApiError>;

/// One EC2 action.
pub struct Action {
    /// The wire name (`Action=` value).
    pub name: &'static str,
    /// Read-only or changing the model.
    pub kind: Kind,
    /// Its handler.
    pub handler: Handler,
    /// For Describe actions whose answers can be large: the same answer as a [`Listing`], sent
    /// while it is encoded (see [`listing`]); `handler` is then its whole form.
    pub listing: Option<ListingHandler>,
}

/// A handler answering with a [`Listing`].
pub type ListingHandler = fn(&Ctx<'_>, &Value) -> Result<Listing, ApiError>;

impl Action {
    /// A model-driven action (see the module docs).
    pub const fn model(name: &'static str, kind: Kind, handler: Handler) -> Self {
        Action {
            name,
            kind,
            handler,
            listing: None,
        }
    }

    /// A read action whose answer is a [`Listing`] (its whole form through `handler`).
    pub const fn listing(name: &'static str, handler: Handler, listing: ListingHandler) -> Self {
        Action {
            name,
            kind: Kind::Read,
            handler,
            listing: Some(listing),
        }
    }
}

/// Every action the API serves.
pub static ACTIONS: &[Action] = &[
    Action::model("CreateVpc", Kind::Write, vpc::create_vpc),
    Action::model("DescribeVpcs", Kind::Read, vpc::describe_vpcs),
    Action::model("DeleteVpc", Kind::Write, vpc::delete_vpc),
    Action::model("CreateSubnet", Kind::Write, subnet::create_subnet),
    Action::model("DescribeSubnets", Kind::Read, subnet::describe_subnets),
    Action::model("DeleteSubnet", Kind::Write, subnet::delete_subnet),
    Action::model("RunInstances", Kind::Write, instance::run_instances),
    Action::model(
        "ModifyInstanceMetadataOptions",
        Kind::Write,
        instance::modify_instance_metadata_options,
    ),
    Action::listing(
        "DescribeInstances",
        instance::describe_instances,
        instance::instance_listing,
    ),
    Action::model(
        "TerminateInstances",
        Kind::Write,
        instance::terminate_instances,
    ),
    Action::model(
        "ModifyInstanceAttribute",
        Kind::Write,
        instance::modify_instance_attribute,
    ),
    Action::listing(
        "DescribeNetworkInterfaces",
        eni::describe_network_interfaces,
        eni::network_interface_listing,
    ),
    Action::model("DescribeHosts", Kind::Read, host::describe_hosts),
    Action::model("CreateTags", Kind::Write, tags::create_tags),
    Action::model("DeleteTags", Kind::Write, tags::delete_tags),
    Action::listing("DescribeTags", tags::describe_tags, tags::tag_listing),
    Action::model(
        "CreateDhcpOptions",
        Kind::Write,
        dhcp_options::create_dhcp_options,
    ),
    Action::model(
        "DeleteDhcpOptions",
        Kind::Write,
        dhcp_options::delete_dhcp_options,
    ),
    Action::model(
        "AssociateDhcpOptions",
        Kind::Write,
        dhcp_options::associate_dhcp_options,
    ),
    Action::model(
        "DescribeDhcpOptions",
        Kind::Read,
        dhcp_options::describe_dhcp_options,
    ),
    Action::model(
        "CreateSecurityGroup",
        Kind::Write,
        security_group::create_security_group,
    ),
    Action::model(
        "DeleteSecurityGroup",
        Kind::Write,
        security_group::delete_security_group,
    ),
    Action::model(
        "DescribeSecurityGroups",
        Kind::Read,
        security_group::describe_security_groups,
    ),
    Action::model(
        "AuthorizeSecurityGroupIngress",
        Kind::Write,
        security_group::authorize_ingress,
    ),
    Action::model(
        "AuthorizeSecurityGroupEgress",
        Kind::Write,
        security_group::authorize_egress,
    ),
    Action::model(
        "RevokeSecurityGroupIngress",
        Kind::Write,
        security_group::revoke_ingress,
    ),
    Action::model(
        "RevokeSecurityGroupEgress",
        Kind::Write,
        security_group::revoke_egress,
    ),
    Action::model(
        "DescribeSecurityGroupRules",
        Kind::Read,
        security_group::describe_security_group_rules,
    ),
    Action::model(
        "ModifySecurityGroupRules",
        Kind::Write,
        security_group::modify_security_group_rules,
    ),
    Action::model(
        "UpdateSecurityGroupRuleDescriptionsIngress",
        Kind::Write,
        security_group::update_descriptions_ingress,
    ),
    Action::model(
        "UpdateSecurityGroupRuleDescriptionsEgress",
        Kind::Write,
        security_group::update_descriptions_egress,
    ),
    Action::model(
        "CreateNetworkAcl",
        Kind::Write,
        network_acl::create_network_acl,
    ),
    Action::model(
        "DeleteNetworkAcl",
        Kind::Write,
        network_acl::delete_network_acl,
    ),
    Action::model(
        "DescribeNetworkAcls",
        Kind::Read,
        network_acl::describe_network_acls,
    ),
    Action::model(
        "CreateNetworkAclEntry",
        Kind::Write,
        network_acl::create_network_acl_entry,
    ),
    Action::model(
        "ReplaceNetworkAclEntry",
        Kind::Write,
        network_acl::replace_network_acl_entry,
    ),
    Action::model(
        "DeleteNetworkAclEntry",
        Kind::Write,
        network_acl::delete_network_acl_entry,
    ),
    Action::model(
        "ReplaceNetworkAclAssociation",
        Kind::Write,
        network_acl::replace_network_acl_association,
    ),
    Action::model(
        "CreateNetworkInterface",
        Kind::Write,
        eni::create_network_interface,
    ),
    Action::model(
        "DeleteNetworkInterface",
        Kind::Write,
        eni::delete_network_interface,
    ),
    Action::model(
        "AttachNetworkInterface",
        Kind::Write,
        eni::attach_network_interface,
    ),
    Action::model(
        "DetachNetworkInterface",
        Kind::Write,
        eni::detach_network_interface,
    ),
    Action::model(
        "AssignPrivateIpAddresses",
        Kind::Write,
        eni::assign_private_ip_addresses,
    ),
    Action::model(
        "UnassignPrivateIpAddresses",
        Kind::Write,
        eni::unassign_private_ip_addresses,
    ),
    Action::model(
        "ModifyNetworkInterfaceAttribute",
        Kind::Write,
        eni::modify_network_interface_attribute,
    ),
    Action::model(
        "DescribeNetworkInterfaceAttribute",
        Kind::Read,
        eni::describe_network_interface_attribute,
    ),
    Action::model("StartInstances", Kind::Write, lifecycle::start_instances),
    Action::model("StopInstances", Kind::Write, lifecycle::stop_instances),
    Action::model(
        "DescribeVpcAttribute",
        Kind::Read,
        attributes::describe_vpc_attribute,
    ),
    Action::model(
        "ModifyVpcAttribute",
        Kind::Write,
        attributes::modify_vpc_attribute,
    ),
    Action::model(
        "ModifySubnetAttribute",
        Kind::Write,
        attributes::modify_subnet_attribute,
    ),
    Action::model(
        "CreateRouteTable",
        Kind::Write,
        route_table::create_route_table,
    ),
    Action::model(
        "DeleteRouteTable",
        Kind::Write,
        route_table::delete_route_table,
    ),
    Action::model(
        "DescribeRouteTables",
        Kind::Read,
        route_table::describe_route_tables,
    ),
    Action::model("CreateRoute", Kind::Write, route_table::create_route),
    Action::model("ReplaceRoute", Kind::Write, route_table::replace_route),
    Action::model("DeleteRoute", Kind::Write, route_table::delete_route),
    Action::model(
        "AssociateRouteTable",
        Kind::Write,
        route_table::associate_route_table,
    ),
    Action::model(
        "DisassociateRouteTable",
        Kind::Write,
        route_table::disassociate_route_table,
    ),
    Action::model(
        "ReplaceRouteTableAssociation",
        Kind::Write,
        route_table::replace_route_table_association,
    ),
    Action::model(
        "CreateInternetGateway",
        Kind::Write,
        internet_access::create_internet_gateway,
    ),
    Action::model(
        "DeleteInternetGateway",
        Kind::Write,
        internet_access::delete_internet_gateway,
    ),
    Action::model(
        "AttachInternetGateway",
        Kind::Write,
        internet_access::attach_internet_gateway,
    ),
    Action::model(
        "DetachInternetGateway",
        Kind::Write,
        internet_access::detach_internet_gateway,
    ),
    Action::model(
        "DescribeInternetGateways",
        Kind::Read,
        internet_access::describe_internet_gateways,
    ),
    Action::model(
        "AllocateAddress",
        Kind::Write,
        internet_access::allocate_address,
    ),
    Action::model(
        "ReleaseAddress",
        Kind::Write,
        internet_access::release_address,
    ),
    Action::model(
        "AssociateAddress",
        Kind::Write,
        internet_access::associate_address,
    ),
    Action::model(
        "DisassociateAddress",
        Kind::Write,
        internet_access::disassociate_address,
    ),
    Action::model(
        "DescribeAddresses",
        Kind::Read,
        internet_access::describe_addresses,
    ),
    Action::model(
        "CreateNatGateway",
        Kind::Write,
        internet_access::create_nat_gateway,
    ),
    Action::model(
        "DeleteNatGateway",
        Kind::Write,
        internet_access::delete_nat_gateway,
    ),
    Action::model(
        "DescribeNatGateways",
        Kind::Read,
        internet_access::describe_nat_gateways,
    ),
    Action::model(
        "CreateVpcPeeringConnection",
        Kind::Write,
        peering::create_vpc_peering_connection,
    ),
    Action::model(
        "AcceptVpcPeeringConnection",
        Kind::Write,
        peering::accept_vpc_peering_connection,
    ),
    Action::model(
        "RejectVpcPeeringConnection",
        Kind::Write,
        peering::reject_vpc_peering_connection,
    ),
    Action::model(
        "DeleteVpcPeeringConnection",
        Kind::Write,
        peering::delete_vpc_peering_connection,
    ),
    Action::model(
        "DescribeVpcPeeringConnections",
        Kind::Read,
        peering::describe_vpc_peering_connections,
    ),
    Action::listing(
        "DescribeInstanceStatus",
        instance_status::describe_instance_status,
        instance_status::instance_status_listing,
    ),
    Action::model("CreateFlowLogs", Kind::Write, flow_log::create_flow_logs),
    Action::model("DeleteFlowLogs", Kind::Write, flow_log::delete_flow_logs),
    Action::model("DescribeFlowLogs", Kind::Read, flow_log::describe_flow_logs),
    Action::model(
        "DescribeAvailabilityZones",
        Kind::Read,
        discovery::describe_availability_zones,
    ),
    Action::model("DescribeRegions", Kind::Read, discovery::describe_regions),
    Action::model(
        "DescribeAccountAttributes",
        Kind::Read,
        discovery::describe_account_attributes,
    ),
    Action::model(
        "CreateManagedPrefixList",
        Kind::Write,
        prefix_list::create_managed_prefix_list,
    ),
    Action::model(
        "DescribeManagedPrefixLists",
        Kind::Read,
        prefix_list::describe_managed_prefix_lists,
    ),
    Action::model(
        "ModifyManagedPrefixList",
        Kind::Write,
        prefix_list::modify_managed_prefix_list,
    ),
    Action::model(
        "DeleteManagedPrefixList",
        Kind::Write,
        prefix_list::delete_managed_prefix_list,
    ),
    Action::model(
        "GetManagedPrefixListEntries",
        Kind::Read,
        prefix_list::get_managed_prefix_list_entries,
    ),
    Action::model(
        "GetManagedPrefixListAssociations",
        Kind::Read,
        prefix_list::get_managed_prefix_list_associations,
    ),
    Action::model("CreateKeyPair", Kind::Write, key_pair::create_key_pair),
    Action::model("ImportKeyPair", Kind::Write, key_pair::import_key_pair),
    Action::model("DescribeKeyPairs", Kind::Read, key_pair::describe_key_pairs),
    Action::model("DeleteKeyPair", Kind::Write, key_pair::delete_key_pair),
    Action::model(
        "DescribeInstanceAttribute",
        Kind::Read,
        instance::describe_instance_attribute,
    ),
    Action::listing(
        "DescribeVolumes",
        volume::describe_volumes,
        volume::volume_listing,
    ),
    Action::model(
        "CreateLaunchTemplate",
        Kind::Write,
        launch_template::create_launch_template,
    ),
    Action::model(
        "DescribeLaunchTemplates",
        Kind::Read,
        launch_template::describe_launch_templates,
    ),
    Action::model(
        "ModifyLaunchTemplate",
        Kind::Write,
        launch_template::modify_launch_template,
    ),
    Action::model(
        "DeleteLaunchTemplate",
        Kind::Write,
        launch_template::delete_launch_template,
    ),
    Action::model(
        "CreateLaunchTemplateVersion",
        Kind::Write,
        launch_template::create_launch_template_version,
    ),
    Action::model(
        "DescribeLaunchTemplateVersions",
        Kind::Read,
        launch_template::describe_launch_template_versions,
    ),
    Action::model(
        "DeleteLaunchTemplateVersions",
        Kind::Write,
        launch_template::delete_launch_template_versions,
    ),
    Action::model(
        "AssociateVpcCidrBlock",
        Kind::Write,
        vpc::associate_vpc_cidr_block,
    ),
    Action::model(
        "DisassociateVpcCidrBlock",
        Kind::Write,
        vpc::disassociate_vpc_cidr_block,
    ),
];

/// The action named `name`, if served.
pub fn find_action(name: &str) -> Option<&'static Action> {
    ACTIONS.iter().find(|a| a.name == name)
}

/// An HTTP answer: status and XML body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// The XML document.
    pub body: String,
    /// Also sent as the `x-amzn-RequestId` header (the AWS SDK for JavaScript reads only that).
    pub request_id: String,
}

/// Handles one request given its raw form-encoded inputs (query string and body). Blocking (it
/// may commit to the store): call it off the async runtime.
pub fn dispatch(cp: &Store, inputs: &[&[u8]]) -> Reply {
    dispatch_with(cp, None, inputs)
}

/// [`dispatch`] with flow log destinations under `flow_log_dir`.
pub fn dispatch_with(cp: &Store, flow_log_dir: Option<&Path>, inputs: &[&[u8]]) -> Reply {
    let request_id = new_request_id();
    match run(cp, flow_log_dir, inputs, &request_id) {
        Ok(body) => Reply {
            status: 200,
            body,
            request_id,
        },
        Err((action, e)) => failed(&action, &e, request_id),
    }
}

/// An answer of [`dispatch_streaming`].
pub enum Answer {
    /// A whole document.
    Whole(Reply),
    /// A large listing (status 200): encode it with [`Listing::write`] while sending it.
    Streamed {
        /// The action, for [`Listing::write`].
        action: String,
        /// The request's id (the `x-amzn-RequestId` header, and in the document).
        request_id: String,
        /// What to send.
        listing: Listing,
    },
}

/// [`dispatch_with`], except that a large listing comes back unencoded, to be streamed.
pub fn dispatch_streaming(cp: &Store, flow_log_dir: Option<&Path>, inputs: &[&[u8]]) -> Answer {
    let request_id = new_request_id();
    match produce(cp, flow_log_dir, inputs, &request_id, true) {
        Ok(Produced::Listing(action, listing)) => Answer::Streamed {
            action,
            request_id,
            listing,
        },
        Ok(Produced::Whole(body)) => Answer::Whole(Reply {
            status: 200,
            body,
            request_id,
        }),
        Err((action, e)) => Answer::Whole(failed(&action, &e, request_id)),
    }
}

/// The reply refusing a request with `e`, logged.
fn failed(action: &str, e: &ApiError, request_id: String) -> Reply {
    if e.status >= 500 {
        tracing::error!(action, code = %e.code, message = %e.message, "request failed");
    } else {
        tracing::debug!(action, code = %e.code, message = %e.message, "request refused");
    }
    Reply {
        status: e.status,
        body: error::render(e, &request_id),
        request_id,
    }
}

fn run(
    cp: &Store,
    flow_log_dir: Option<&Path>,
    inputs: &[&[u8]],
    request_id: &str,
) -> Result<String, (String, ApiError)> {
    match produce(cp, flow_log_dir, inputs, request_id, false)? {
        Produced::Whole(body) => Ok(body),
        Produced::Listing(name, listing) => {
            encode_output(&name, &listing.into_value(), request_id).map_err(|e| (name, e))
        }
    }
}

/// What a request produced: a whole document, or (action name, listing) to stream.
enum Produced {
    Whole(String),
    Listing(String, Listing),
}

/// Runs a request; with `stream`, an action with a [`Listing`] of more than
/// [`listing::stream_min_items`] items answers with the listing, to be encoded while sent.
fn produce(
    cp: &Store,
    flow_log_dir: Option<&Path>,
    inputs: &[&[u8]],
    request_id: &str,
    stream: bool,
) -> Result<Produced, (String, ApiError)> {
    let pairs = softvpc_ec2_protocol::parse_forms(inputs)
        .map_err(|e| (String::new(), protocol_error(e)))?;
    let name = pairs
        .iter()
        .rev()
        .find(|(k, _)| k == "Action")
        .map(|(_, v)| v.clone())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| (String::new(), ApiError::missing("Action")))?;
    let fail = |e: ApiError| (name.clone(), e);
    let action = find_action(&name).ok_or_else(|| {
        fail(ApiError::new(
            "InvalidAction",
            format!("The action {name} is not valid for this web service."),
        ))
    })?;
    input::check_paging(&name, &pairs).map_err(fail)?;
    let input = softvpc_ec2_protocol::decode(&name, &pairs).map_err(|e| fail(protocol_error(e)))?;
    unsupported::check(&name, &input).map_err(fail)?;
    let dry_run = input.get_bool("DryRun").unwrap_or(false);
    if dry_run && action.kind == Kind::Read {
        return Err(fail(ApiError::dry_run()));
    }
    if action.kind == Kind::Read {
        // Over a replicated store: see every write any replica acknowledged before this call.
        cp.barrier().map_err(fail)?;
    }
    let ctx = Ctx {
        cp,
        dry_run,
        flow_log_dir,
    };
    if let (true, Some(listing)) = (stream, action.listing) {
        let listing = listing(&ctx, &input).map_err(fail)?;
        if listing.len > listing::stream_min_items() {
            tracing::debug!(action = %name, items = listing.len, "request served (streamed)");
            return Ok(Produced::Listing(name, listing));
        }
        let body = encode_output(&name, &listing.into_value(), request_id).map_err(fail)?;
        tracing::debug!(action = %name, "request served");
        return Ok(Produced::Whole(body));
    }
    let output = (action.handler)(&ctx, &input).map_err(fail)?;
    let body = encode_output(&name, &output, request_id).map_err(fail)?;
    tracing::debug!(action = %name, "request served");
    Ok(Produced::Whole(body))
}

/// A protocol refusal as an API error (same code, message and status).
fn protocol_error(e: softvpc_ec2_protocol::ProtocolError) -> ApiError {
    ApiError::new(e.code(), e.message()).with_status(e.http_status())
}

/// The response document for `output`. A tree that does not fit the model's output shape is a
/// server bug: logged, and refused with 500 in debug builds (so tests catch it), encoded
/// leniently (unfit members left out) in release builds.
fn encode_output(name: &str, output: &Value, request_id: &str) -> Result<String, ApiError> {
    match softvpc_ec2_protocol::try_encode(name, output, request_id) {
        Ok(body) => Ok(body),
        Err(e) => {
            tracing::error!(action = name, error = %e, "response does not fit the model");
            if cfg!(debug_assertions) {
                Err(ApiError::internal(format!(
                    "response does not fit the model: {e}"
                )))
            } else {
                Ok(softvpc_ec2_protocol::encode(name, output, request_id))
            }
        }
    }
}

/// Largest request body accepted (EC2 requests are small; a CreateTags with 1000 ids is ~60 KiB).
pub const MAX_BODY: usize = 1 << 20;

/// What every API request needs: the store, the accepted keys, the flow log directory.
#[derive(Clone)]
struct Api {
    cp: Arc<Store>,
    keys: Arc<auth::Keys>,
    flow_log_dir: Option<Arc<PathBuf>>,
}

/// The axum router: `POST /` and `GET /` for the Query API (SigV4-authenticated), `GET /healthz`
/// for readiness (not authenticated). Flow log destinations live under `flow_log_dir`.
pub fn router(cp: Arc<Store>, keys: Arc<auth::Keys>, flow_log_dir: Option<PathBuf>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/", get(handle).post(handle))
        .with_state(Api {
            cp,
            keys,
            flow_log_dir: flow_log_dir.map(Arc::new),
        })
}

fn xml_response(reply: Reply) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [
            (header::CONTENT_TYPE, "text/xml;charset=UTF-8".to_string()),
            (
                header::HeaderName::from_static("x-amzn-requestid"),
                reply.request_id,
            ),
        ],
        reply.body,
    )
        .into_response()
}

/// A refusal before dispatch, in the protocol of the service the request was meant for.
fn refusal(service: Service, code: &str, message: &str, status: u16) -> Response {
    let request_id = new_request_id();
    let body = match service {
        Service::Ec2 => softvpc_ec2_protocol::encode_error(code, message, &request_id),
        Service::Sts => sts::render_error(code, message, &request_id),
    };
    xml_response(Reply {
        status,
        body,
        request_id,
    })
}

/// The service a request is for: its SigV4 credential scope says (`ec2` unless it names `sts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    Ec2,
    Sts,
}

/// The service the credential scope names, read before verification only to choose the error
/// format of a refusal (the verified scope decides where the request goes).
fn claimed_service(headers: &[(&str, &[u8])], query: &str) -> Service {
    let scoped_sts = |s: &str| s.contains("/sts/aws4_request");
    let header = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("authorization") && scoped_sts(&String::from_utf8_lossy(v))
    });
    let presigned = query.split('&').any(|p| {
        p.starts_with("X-Amz-Credential=") && scoped_sts(&p.replace("%2F", "/").replace("%2f", "/"))
    });
    if header || presigned {
        Service::Sts
    } else {
        Service::Ec2
    }
}

async fn handle(State(api): State<Api>, req: axum::extract::Request) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return refusal(
            Service::Ec2,
            "InvalidParameterValue",
            &format!("The request body is larger than {MAX_BODY} bytes."),
            413,
        );
    };
    let query = parts.uri.query().unwrap_or("").to_string();
    // Verify the signature over the request exactly as received. HTTP/2 has no Host header:
    // sign against the authority then.
    let mut headers: Vec<(&str, &[u8])> = parts
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_bytes()))
        .collect();
    let authority = parts.uri.authority().map(|a| a.as_str().to_string());
    if !parts.headers.contains_key(header::HOST) {
        if let Some(a) = &authority {
            headers.push(("host", a.as_bytes()));
        }
    }
    let view = softvpc_sigv4::Request {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: &query,
        headers: &headers,
        body: &body,
    };
    let verified = match api.keys.verify(&view, std::time::SystemTime::now()) {
        Ok(v) => v,
        Err(e) => {
            let service = claimed_service(&headers, &query);
            let (mut code, message, mut status) = e.aws_error();
            // The query services answer a wrong-region scope as SignatureDoesNotMatch (403).
            if service == Service::Sts && matches!(e, softvpc_sigv4::AuthError::WrongRegion { .. })
            {
                (code, status) = ("SignatureDoesNotMatch", 403);
            }
            tracing::info!(reason = %e, code, "request refused: authentication");
            return refusal(service, code, &message, status);
        }
    };
    let method = parts.method.clone();
    let (cp, flow_log_dir) = (api.cp.clone(), api.flow_log_dir.clone());
    // The blocking thread answers with a whole reply, or with the request id of a listing it
    // then encodes into `chunks` while the client reads (see `listing`).
    let (head_tx, head_rx) = tokio::sync::oneshot::channel::<Result<Reply, String>>();
    let (chunk_tx, chunks) = tokio::sync::mpsc::channel::<String>(listing::CHUNKS_AHEAD);
    tokio::task::spawn_blocking(move || {
        let body: &[u8] = if method == Method::POST { &body } else { &[] };
        if verified.service == "sts" {
            let _ = head_tx.send(Ok(sts::dispatch(
                &[query.as_bytes(), body],
                &new_request_id(),
            )));
            return;
        }
        let flow_log_dir = flow_log_dir.as_deref().map(PathBuf::as_path);
        match dispatch_streaming(&cp, flow_log_dir, &[query.as_bytes(), body]) {
            Answer::Whole(reply) => {
                let _ = head_tx.send(Ok(reply));
            }
            Answer::Streamed {
                action,
                request_id,
                listing,
            } => {
                if head_tx.send(Err(request_id.clone())).is_ok() {
                    listing.write(&action, &request_id, &mut |chunk| {
                        chunk_tx.blocking_send(chunk).is_ok()
                    });
                }
            }
        }
    });
    match head_rx.await {
        Ok(Ok(reply)) => xml_response(reply),
        Ok(Err(request_id)) => streamed_response(request_id, chunks),
        Err(_) => {
            tracing::error!("request handler panicked");
            let request_id = new_request_id();
            xml_response(Reply {
                status: 500,
                body: error::render(
                    &ApiError::internal("An internal error has occurred."),
                    &request_id,
                ),
                request_id,
            })
        }
    }
}

/// A 200 answer whose XML body arrives in `chunks` (HTTP/1.1 chunked framing).
fn streamed_response(request_id: String, chunks: tokio::sync::mpsc::Receiver<String>) -> Response {
    use tokio_stream::StreamExt;
    let body =
        tokio_stream::wrappers::ReceiverStream::new(chunks).map(Ok::<_, std::convert::Infallible>);
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/xml;charset=UTF-8".to_string()),
            (
                header::HeaderName::from_static("x-amzn-requestid"),
                request_id,
            ),
        ],
        axum::body::Body::from_stream(body),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(cp: &Store, body: &str) -> Reply {
        dispatch(cp, &[body.as_bytes()])
    }

    /// The error code of a refusal, read as softvpc's EC2 client reads it.
    fn code(r: &Reply) -> String {
        softvpc_ec2_client::codec::api_error("test", r.status, &r.body).code
    }

    #[test]
    fn model_actions_decode_encode_and_refuse() {
        let cp = Store::ephemeral();
        let r = call(
            &cp,
            "Action=CreateVpc&Version=2016-11-15&CidrBlock=10.0.0.0%2F16\
             &TagSpecification.1.ResourceType=vpc&TagSpecification.1.Tag.1.Key=Name\
             &TagSpecification.1.Tag.1.Value=blue",
        );
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.body.contains("<CreateVpcResponse xmlns="), "{}", r.body);
        assert!(
            r.body
                .contains("<tagSet><item><key>Name</key><value>blue</value></item></tagSet>"),
            "{}",
            r.body
        );
        assert_eq!(cp.state().vpcs.len(), 1);

        let r = call(
            &cp,
            "Action=DescribeVpcs&Filter.1.Name=tag%3AName&Filter.1.Value.1=bl%3F*",
        );
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body.matches("<vpcId>").count(), 1, "{}", r.body);
        let r = call(
            &cp,
            "Action=DescribeVpcs&Filter.1.Name=tag-value&Filter.1.Value.1=red",
        );
        assert_eq!(r.body.matches("<vpcId>").count(), 0, "{}", r.body);

        let r = call(&cp, "Action=CreateVpc&CidrBlock=10.1.0.0%2F16&DryRun=true");
        assert_eq!((r.status, code(&r).as_str()), (412, "DryRunOperation"));
        assert_eq!(cp.state().vpcs.len(), 1);

        let r = call(&cp, "Action=CreateVpc&CidrBlock=10.1.0.0%2F16&Bogus=1");
        assert_eq!((r.status, code(&r).as_str()), (400, "UnknownParameter"));
        let r = call(&cp, "Action=DeleteVpc");
        assert_eq!((r.status, code(&r).as_str()), (400, "MissingParameter"));
        let r = call(&cp, "Action=DescribeVpcs&MaxResults=abc");
        assert_eq!(
            (r.status, code(&r).as_str()),
            (400, "InvalidParameterValue")
        );
        let r = call(&cp, "Action=NoSuchThing");
        assert_eq!((r.status, code(&r).as_str()), (400, "InvalidAction"));
        let r = call(&cp, "Version=2016-11-15");
        assert_eq!((r.status, code(&r).as_str()), (400, "MissingParameter"));
    }

    /// A streamed answer's bytes: the chunks `Listing::write` produces, joined.
    fn streamed(cp: &Store, body: &str) -> (String, String) {
        match dispatch_streaming(cp, None, &[body.as_bytes()]) {
            Answer::Streamed {
                action,
                request_id,
                listing,
            } => {
                let mut out = String::new();
                listing.write(&action, &request_id, &mut |c| {
                    out.push_str(&c);
                    true
                });
                (out, request_id)
            }
            Answer::Whole(r) => panic!("not streamed: {} {}", r.status, r.body),
        }
    }

    #[test]
    fn volumes_instance_statuses_and_tags_are_streamed_with_the_whole_answers_bytes() {
        let cp = Store::ephemeral();
        let ok = |r: Reply| {
            assert_eq!(r.status, 200, "{}", r.body);
            r.body
        };
        let vpc = ok(call(
            &cp,
            "Action=CreateVpc&Version=2016-11-15&CidrBlock=10.0.0.0%2F16",
        ));
        let vpc = &vpc[vpc.find("<vpcId>").unwrap() + 7..];
        let vpc = &vpc[..vpc.find('<').unwrap()];
        let subnet = ok(call(
            &cp,
            &format!("Action=CreateSubnet&Version=2016-11-15&VpcId={vpc}&CidrBlock=10.0.0.0%2F22"),
        ));
        let subnet = &subnet[subnet.find("<subnetId>").unwrap() + 10..];
        let subnet = &subnet[..subnet.find('<').unwrap()];
        cp.mutate(false, |t| {
            softvpc_model::host::register_host_in(t, "host-1", "198.18.0.1", None)
        })
        .unwrap();
        // 300 instances (a root volume and a status each), tagged <a&b> with 2 tags each.
        ok(call(
            &cp,
            &format!(
                "Action=RunInstances&Version=2016-11-15&ImageId=ami-1&SubnetId={subnet}\
                 &MinCount=300&MaxCount=300&TagSpecification.1.ResourceType=instance\
                 &TagSpecification.1.Tag.1.Key=Name&TagSpecification.1.Tag.1.Value=%3Ca%26b%3E\
                 &TagSpecification.1.Tag.2.Key=team&TagSpecification.1.Tag.2.Value=blue"
            ),
        ));
        for (action, member, n) in [
            ("DescribeVolumes", "<volumeSet>", 300),
            ("DescribeInstanceStatus", "<instanceStatusSet>", 300),
            ("DescribeTags", "<tagSet>", 600),
        ] {
            let body = format!("Action={action}&Version=2016-11-15");
            let whole = ok(call(&cp, &body));
            let (streamed, id) = streamed(&cp, &body);
            // The same document but for the request id.
            let whole_id = whole[whole.find("<requestId>").unwrap() + 11..]
                .split('<')
                .next()
                .unwrap()
                .to_string();
            assert_eq!(streamed, whole.replace(&whole_id, &id), "{action}");
            assert!(streamed.contains(member), "{action}");
            assert!(streamed.matches("<item>").count() >= n, "{action}");
        }
        // A small answer stays whole.
        let body =
            "Action=DescribeTags&Version=2016-11-15&Filter.1.Name=value&Filter.1.Value.1=nothing";
        assert!(matches!(
            dispatch_streaming(&cp, None, &[body.as_bytes()]),
            Answer::Whole(_)
        ));
    }
}
