//! The EC2 Query API over HTTP (axum): decode the request ([`query`]), find the action in the
//! [`ACTIONS`] table, run it against the control plane, answer with the response XML ([`xml`])
//! or AWS's error XML ([`error`]).
//!
//! Each action is one row of the table (wire name, read or write, handler), with the handlers
//! grouped by resource family. Unauthenticated for now: Authorization headers are accepted and
//! ignored, so the API must only listen on loopback or inside the lab.

pub mod error;
pub mod host;
pub mod instance;
pub mod query;
pub mod subnet;
pub mod tags;
pub mod vpc;
pub mod xml;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::control::ControlPlane;
use crate::model::ids::new_request_id;
use crate::model::{ApiError, Txn};
use query::Params;
use xml::Xml;

/// Whether an action only reads or changes the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Read,
    Write,
}

/// What a handler gets: the control plane and whether this is a dry run.
pub struct Ctx<'a> {
    pub cp: &'a ControlPlane,
    pub dry_run: bool,
}

impl Ctx<'_> {
    /// Runs `op` as one all-or-nothing mutation (discarded on a dry run).
    pub fn mutate<R>(
        &self,
        op: impl FnOnce(&mut Txn) -> Result<R, ApiError>,
    ) -> Result<R, ApiError> {
        self.cp.mutate(self.dry_run, op)
    }
}

/// An action handler: reads its parameters, does the work, writes the response body elements.
pub type Handler = fn(&Ctx<'_>, &Params, &mut Xml) -> Result<(), ApiError>;

/// One EC2 action.
pub struct Action {
    /// The wire name (`Action=` value).
    pub name: &'static str,
    pub kind: Kind,
    pub handler: Handler,
}

impl Action {
    const fn new(name: &'static str, kind: Kind, handler: Handler) -> Self {
        Action {
            name,
            kind,
            handler,
        }
    }
}

/// Every action the API serves.
pub static ACTIONS: &[Action] = &[
    Action::new("CreateVpc", Kind::Write, vpc::create_vpc),
    Action::new("DescribeVpcs", Kind::Read, vpc::describe_vpcs),
    Action::new("DeleteVpc", Kind::Write, vpc::delete_vpc),
    Action::new("CreateSubnet", Kind::Write, subnet::create_subnet),
    Action::new("DescribeSubnets", Kind::Read, subnet::describe_subnets),
    Action::new("DeleteSubnet", Kind::Write, subnet::delete_subnet),
    Action::new("RunInstances", Kind::Write, instance::run_instances),
    Action::new(
        "DescribeInstances",
        Kind::Read,
        instance::describe_instances,
    ),
    Action::new(
        "TerminateInstances",
        Kind::Write,
        instance::terminate_instances,
    ),
    Action::new(
        "DescribeNetworkInterfaces",
        Kind::Read,
        instance::describe_network_interfaces,
    ),
    Action::new("DescribeHosts", Kind::Read, host::describe_hosts),
    Action::new("CreateTags", Kind::Write, tags::create_tags),
    Action::new("DeleteTags", Kind::Write, tags::delete_tags),
];

/// The action named `name`, if served.
pub fn find_action(name: &str) -> Option<&'static Action> {
    ACTIONS.iter().find(|a| a.name == name)
}

/// An HTTP answer: status and XML body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

/// Handles one request given its raw form-encoded inputs (query string and body). Blocking (it
/// may commit to the store): call it off the async runtime.
pub fn dispatch(cp: &ControlPlane, inputs: &[&[u8]]) -> Reply {
    let request_id = new_request_id();
    match run(cp, inputs, &request_id) {
        Ok(body) => Reply { status: 200, body },
        Err((action, e)) => {
            if e.status >= 500 {
                tracing::error!(action, code = %e.code, message = %e.message, "request failed");
            } else {
                tracing::debug!(action, code = %e.code, message = %e.message, "request refused");
            }
            Reply {
                status: e.status,
                body: error::render(&e, &request_id),
            }
        }
    }
}

fn run(
    cp: &ControlPlane,
    inputs: &[&[u8]],
    request_id: &str,
) -> Result<String, (String, ApiError)> {
    let params = Params::parse_all(inputs).map_err(|e| (String::new(), e))?;
    let name = params
        .required("Action")
        .map_err(|e| (String::new(), e))?
        .to_string();
    let fail = |e: ApiError| (name.clone(), e);
    let action = find_action(&name).ok_or_else(|| {
        fail(ApiError::new(
            "InvalidAction",
            format!("The action {name} is not valid for this web service."),
        ))
    })?;
    let dry_run = params.bool("DryRun").map_err(fail)?.unwrap_or(false);
    if dry_run && action.kind == Kind::Read {
        return Err(fail(ApiError::dry_run()));
    }
    let ctx = Ctx { cp, dry_run };
    let mut x = Xml::new();
    let root = format!("{name}Response");
    x.open_root(&root);
    x.elem("requestId", request_id);
    (action.handler)(&ctx, &params, &mut x).map_err(fail)?;
    x.close(&root);
    tracing::debug!(action = %name, "request served");
    Ok(x.finish())
}

/// `MaxResults` / `NextToken` paging over an already filtered list. The token is the offset of
/// the next item.
pub fn paginate<T>(items: Vec<T>, p: &Params) -> Result<(Vec<T>, Option<String>), ApiError> {
    let start = match p.get("NextToken") {
        None | Some("") => 0usize,
        Some(t) => t
            .parse::<usize>()
            .ok()
            .filter(|n| *n <= items.len())
            .ok_or_else(|| ApiError::new("InvalidNextToken", "The specified token is invalid."))?,
    };
    let Some(max) = p.u32("MaxResults")? else {
        return Ok((items.into_iter().skip(start).collect(), None));
    };
    let max = (max as usize).max(1);
    let end = start.saturating_add(max).min(items.len());
    let next = (end < items.len()).then(|| end.to_string());
    Ok((
        items.into_iter().skip(start).take(end - start).collect(),
        next,
    ))
}

/// The axum router: `POST /` and `GET /` for the Query API, `GET /healthz` for readiness.
pub fn router(cp: Arc<ControlPlane>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/", get(handle).post(handle))
        .with_state(cp)
}

async fn handle(
    State(cp): State<Arc<ControlPlane>>,
    method: Method,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let query = query.unwrap_or_default();
    let reply = tokio::task::spawn_blocking(move || {
        let body: &[u8] = if method == Method::POST { &body } else { &[] };
        dispatch(&cp, &[query.as_bytes(), body])
    })
    .await
    .unwrap_or_else(|e| {
        tracing::error!(error = %e, "request handler panicked");
        Reply {
            status: 500,
            body: error::render(
                &ApiError::internal("An internal error has occurred."),
                &new_request_id(),
            ),
        }
    });
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "text/xml;charset=UTF-8")],
        reply.body,
    )
        .into_response()
}

/// The resources a Describe call returns: those named by `ids` (all must exist, else the
/// `not_found` code with noun), or all of them, that pass `filters`.
pub fn select<T: crate::model::filter::Filterable>(
    state: &crate::model::State,
    all: &crate::model::Map<T>,
    ids: &[String],
    not_found: (&str, &str),
    filters: &[crate::model::filter::Filter],
) -> Result<Vec<Arc<T>>, ApiError> {
    crate::model::filter::check::<T>(filters)?;
    let items: Vec<Arc<T>> = if ids.is_empty() {
        all.values().cloned().collect()
    } else {
        let missing: Vec<&str> = ids
            .iter()
            .filter(|i| !all.contains_key(*i))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(ApiError::not_found(not_found.0, not_found.1, &missing));
        }
        let mut seen = std::collections::HashSet::new();
        ids.iter()
            .filter(|i| seen.insert(i.as_str()))
            .filter_map(|i| all.get(i).cloned())
            .collect()
    };
    Ok(items
        .into_iter()
        .filter(|i| crate::model::filter::matches(&**i, state, filters))
        .collect())
}
