//! Internet gateways: created detached, attached to at most one VPC (and a VPC has at most one),
//! detached only while the VPC maps no public address, deleted only when detached.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::filter::Filterable;
use super::ids::new_id;
use super::{ApiError, State, Tags, Txn};

/// An internet gateway (`igw-`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InternetGateway {
    /// `igw-...`.
    pub id: String,
    /// The VPC it is attached to (attachment state `available`).
    pub vpc_id: Option<String>,
    /// Its tags.
    pub tags: Tags,
}

/// `InvalidInternetGatewayID.NotFound` for `id`.
pub fn igw_not_found(id: &str) -> ApiError {
    ApiError::not_found(
        "InvalidInternetGatewayID.NotFound",
        "internetGateway",
        &[id],
    )
}

fn get_igw(txn: &Txn, id: &str) -> Result<InternetGateway, ApiError> {
    txn.state
        .internet_gateways
        .get(id)
        .map(|g| (**g).clone())
        .ok_or_else(|| igw_not_found(id))
}

/// The internet gateway attached to `vpc_id`, if any.
pub fn igw_of_vpc<'a>(state: &'a State, vpc_id: &str) -> Option<&'a Arc<InternetGateway>> {
    state
        .internet_gateways
        .values()
        .find(|g| g.vpc_id.as_deref() == Some(vpc_id))
}

/// `CreateInternetGateway`.
pub fn create_internet_gateway(txn: &mut Txn, tags: Tags) -> Result<InternetGateway, ApiError> {
    let igw = InternetGateway {
        id: new_id("igw"),
        vpc_id: None,
        tags,
    };
    txn.put(igw.clone());
    Ok(igw)
}

/// `DeleteInternetGateway`: refused while attached.
pub fn delete_internet_gateway(txn: &mut Txn, id: &str) -> Result<(), ApiError> {
    let igw = get_igw(txn, id)?;
    if igw.vpc_id.is_some() {
        return Err(ApiError::has_dependencies("internetGateway", id));
    }
    txn.delete::<InternetGateway>(id);
    Ok(())
}

/// `AttachInternetGateway`.
pub fn attach_internet_gateway(txn: &mut Txn, id: &str, vpc_id: &str) -> Result<(), ApiError> {
    let mut igw = get_igw(txn, id)?;
    super::vpc::get_vpc(&txn.state, vpc_id)?;
    if let Some(current) = &igw.vpc_id {
        return Err(ApiError::new(
            "Resource.AlreadyAssociated",
            format!("resource {id} is already attached to network {current}"),
        ));
    }
    if let Some(other) = igw_of_vpc(&txn.state, vpc_id) {
        return Err(ApiError::new(
            "Resource.AlreadyAssociated",
            format!(
                "Network {vpc_id} already has an internet gateway attached ({})",
                other.id
            ),
        ));
    }
    igw.vpc_id = Some(vpc_id.to_string());
    txn.put(igw);
    Ok(())
}

/// `DetachInternetGateway`: refused while an Elastic IP is associated inside the VPC.
pub fn detach_internet_gateway(txn: &mut Txn, id: &str, vpc_id: &str) -> Result<(), ApiError> {
    let mut igw = get_igw(txn, id)?;
    super::vpc::get_vpc(&txn.state, vpc_id)?;
    if igw.vpc_id.as_deref() != Some(vpc_id) {
        return Err(ApiError::new(
            "Gateway.NotAttached",
            format!("resource {id} is not attached to network {vpc_id}"),
        ));
    }
    if super::address::vpc_has_mapped_addresses(&txn.state, vpc_id) {
        return Err(ApiError::new(
            "DependencyViolation",
            format!(
                "Network {vpc_id} has some mapped public address(es). Please unmap those public address(es) before detaching the gateway."
            ),
        ));
    }
    igw.vpc_id = None;
    txn.put(igw);
    Ok(())
}

impl Filterable for InternetGateway {
    const FILTERS: &'static [&'static str] = &[
        "internet-gateway-id",
        "attachment.vpc-id",
        "attachment.state",
        "owner-id",
    ];

    fn field(&self, _state: &State, name: &str) -> Vec<String> {
        match name {
            "internet-gateway-id" => vec![self.id.clone()],
            "attachment.vpc-id" => self.vpc_id.iter().cloned().collect(),
            "attachment.state" => self.vpc_id.iter().map(|_| "available".into()).collect(),
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
    use super::super::vpc::{create_vpc, delete_vpc};
    use super::*;

    #[test]
    fn default_vpc_has_an_internet_gateway_and_default_route() {
        let mut txn = Txn::new(State::new(), 0);
        let (vpc, _subnet) = super::super::attributes::create_default_vpc(&mut txn).unwrap();
        let igw = igw_of_vpc(&txn.state, &vpc).unwrap().id.clone();
        let main = txn
            .state
            .route_tables
            .values()
            .find(|r| r.vpc_id == vpc && r.is_main())
            .unwrap()
            .clone();
        let default = main
            .routes
            .iter()
            .find(|r| r.destination.to_string() == "0.0.0.0/0")
            .unwrap();
        assert_eq!(
            default.target,
            super::super::route_table::Target::Gateway(igw)
        );
        assert_eq!(
            super::super::route_table::route_state(&txn.state, &vpc, default),
            "active"
        );
    }

    #[test]
    fn attach_detach_delete_rules() {
        let mut txn = Txn::new(State::new(), 0);
        let a = create_vpc(&mut txn, "10.0.0.0/16", None, Tags::new()).unwrap();
        let b = create_vpc(&mut txn, "10.1.0.0/16", None, Tags::new()).unwrap();
        let g1 = create_internet_gateway(&mut txn, Tags::new()).unwrap();
        let g2 = create_internet_gateway(&mut txn, Tags::new()).unwrap();
        let code = |r: Result<(), ApiError>| r.unwrap_err().code;
        assert_eq!(
            code(detach_internet_gateway(&mut txn, &g1.id, &a.id)),
            "Gateway.NotAttached"
        );
        attach_internet_gateway(&mut txn, &g1.id, &a.id).unwrap();
        assert_eq!(igw_of_vpc(&txn.state, &a.id).unwrap().id, g1.id);
        // A gateway has one VPC, a VPC one gateway.
        assert_eq!(
            code(attach_internet_gateway(&mut txn, &g1.id, &b.id)),
            "Resource.AlreadyAssociated"
        );
        assert_eq!(
            code(attach_internet_gateway(&mut txn, &g2.id, &a.id)),
            "Resource.AlreadyAssociated"
        );
        assert_eq!(
            code(attach_internet_gateway(
                &mut txn,
                &g2.id,
                "vpc-0123456789abcdef0"
            )),
            "InvalidVpcID.NotFound"
        );
        assert_eq!(
            code(detach_internet_gateway(&mut txn, &g1.id, &b.id)),
            "Gateway.NotAttached"
        );
        assert_eq!(
            code(delete_internet_gateway(&mut txn, &g1.id)),
            "DependencyViolation"
        );
        // A VPC with an attached gateway cannot be deleted.
        assert_eq!(code(delete_vpc(&mut txn, &a.id)), "DependencyViolation");
        detach_internet_gateway(&mut txn, &g1.id, &a.id).unwrap();
        delete_internet_gateway(&mut txn, &g1.id).unwrap();
        assert_eq!(
            code(delete_internet_gateway(&mut txn, &g1.id)),
            "InvalidInternetGatewayID.NotFound"
        );
        delete_vpc(&mut txn, &a.id).unwrap();
        assert_eq!(txn.state.internet_gateways.len(), 1);
    }
}
