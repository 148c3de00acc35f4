//! The committed EC2 service model (`model/ec2-vpc.json`, written by `scripts/gen-ec2-model.py`
//! from botocore's own model), parsed once into indexed structs: shapes addressed by
//! [`ShapeId`], structures with their members in model order and a wire-name index for
//! decoding.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde::Deserialize;

/// The trimmed model, as committed.
const MODEL_JSON: &str = include_str!("../model/ec2-vpc.json");

/// Index of a shape in [`Model::shapes`].
pub type ShapeId = usize;

/// The parsed model, built on first use.
pub fn model() -> &'static Model {
    static MODEL: LazyLock<Model> = LazyLock::new(|| {
        // The model is a compile-time constant checked by this crate's tests: failing to parse it
        // is a build defect, not a runtime condition.
        Model::from_json(MODEL_JSON).expect("the committed EC2 model parses")
    });
    &MODEL
}

/// What a shape is.
#[derive(Debug, Clone, PartialEq)]
pub enum ShapeKind {
    /// Named members.
    Structure(Structure),
    /// A list of one member shape.
    List(List),
    /// A string; `enum_values` non-empty for an enum.
    String {
        /// The values an enum allows (empty: any string).
        enum_values: Vec<String>,
    },
    /// A 32-bit integer.
    Integer,
    /// A 64-bit integer.
    Long,
    /// `true` or `false`.
    Boolean,
    /// An instant (ISO 8601 on the wire).
    Timestamp,
    /// A double-precision number.
    Double,
    /// A single-precision number.
    Float,
    /// Bytes, carried as base64 text.
    Blob,
}

/// One shape of the model.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    /// The model's shape name (`CreateVpcRequest`).
    pub name: String,
    /// What it is.
    pub kind: ShapeKind,
    /// Lower bound: value for numbers, length for strings and lists.
    pub min: Option<i64>,
    /// Upper bound, same meaning as `min`.
    pub max: Option<i64>,
}

/// A structure's members in model order.
#[derive(Debug, Clone, PartialEq)]
pub struct Structure {
    /// The members, in model order (the order responses are written in).
    pub members: Vec<Member>,
    /// Input wire name (see [`Member::wire_name`]) -> index in `members`.
    pub by_wire_name: HashMap<String, usize>,
    /// Model name -> index in `members`.
    pub by_name: HashMap<String, usize>,
    /// Response element name (see [`Member::element_name`]) -> index in `members`, for reading
    /// responses; the first member wins if two share one.
    pub by_element_name: HashMap<String, usize>,
}

/// A structure member.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// The model name (`VpcId`): the key in decoded trees.
    pub name: String,
    /// The member's shape.
    pub shape: ShapeId,
    /// `locationName`: the response element name (`vpcId`, `vpcSet`).
    pub location_name: Option<String>,
    /// `ec2QueryName`/`queryName`: the request wire name when present.
    pub query_name: Option<String>,
    /// The model marks it required.
    pub required: bool,
    /// Filled by clients with a fresh token when absent (`ClientToken`).
    pub idempotency_token: bool,
}

impl Member {
    /// The request parameter name, as botocore's `EC2Serializer._get_serialized_name`: the
    /// `queryName`, else the `locationName` with its first letter capitalised, else the name.
    pub fn wire_name(&self) -> String {
        if let Some(q) = &self.query_name {
            return q.clone();
        }
        if let Some(loc) = &self.location_name {
            let mut chars = loc.chars();
            if let Some(first) = chars.next() {
                return first.to_uppercase().chain(chars).collect();
            }
        }
        self.name.clone()
    }

    /// The response element name, as botocore's `_member_key_name`: the `locationName`, else
    /// the member name.
    pub fn element_name(&self) -> &str {
        self.location_name.as_deref().unwrap_or(&self.name)
    }
}

/// A list shape.
#[derive(Debug, Clone, PartialEq)]
pub struct List {
    /// The shape of each entry.
    pub member: ShapeId,
    /// The element name of each entry in responses (`item`).
    pub member_location_name: Option<String>,
}

/// An operation: input and output structure shapes.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    /// The operation name (the `Action` value).
    pub name: String,
    /// Its input structure, if it takes any.
    pub input: Option<ShapeId>,
    /// Its output structure, if it answers with any.
    pub output: Option<ShapeId>,
}

/// The whole model.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// The botocore release the model was trimmed from.
    pub botocore_version: String,
    /// The EC2 API version (`2016-11-15`).
    pub api_version: String,
    /// The response namespace, with its trailing slash as AWS writes it.
    pub xml_namespace: String,
    /// Every shape, addressed by [`ShapeId`].
    pub shapes: Vec<Shape>,
    /// Operations by name.
    pub operations: HashMap<String, Operation>,
    shape_ids: HashMap<String, ShapeId>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawModel {
    botocore_version: String,
    api_version: String,
    xml_namespace: String,
    operations: HashMap<String, RawOperation>,
    shapes: HashMap<String, RawShape>,
}

#[derive(Deserialize)]
struct RawOperation {
    input: Option<String>,
    output: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawShape {
    #[serde(rename = "type")]
    kind: String,
    min: Option<i64>,
    max: Option<i64>,
    #[serde(rename = "enum", default)]
    enum_values: Vec<String>,
    #[serde(default)]
    required: Vec<String>,
    #[serde(default)]
    members: Vec<RawMember>,
    member: Option<RawListMember>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMember {
    name: String,
    shape: String,
    location_name: Option<String>,
    query_name: Option<String>,
    #[serde(default)]
    idempotency_token: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawListMember {
    shape: String,
    location_name: Option<String>,
}

/// Why a model file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Not the JSON the generator writes.
    #[error("model JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A shape referenced but not defined.
    #[error("shape {0} referenced but not defined")]
    UnknownShape(String),
    /// A shape that makes no sense (a list without member, ...).
    #[error("shape {shape}: {problem}")]
    BadShape {
        /// The shape name.
        shape: String,
        /// What is wrong.
        problem: String,
    },
}

impl Model {
    /// Parses and indexes a model file in the format of `scripts/gen-ec2-model.py`.
    pub fn from_json(text: &str) -> Result<Model, ModelError> {
        let raw: RawModel = serde_json::from_str(text)?;
        let mut names: Vec<&String> = raw.shapes.keys().collect();
        names.sort();
        let shape_ids: HashMap<String, ShapeId> = names
            .iter()
            .enumerate()
            .map(|(i, n)| ((*n).clone(), i))
            .collect();
        let id = |n: &str| {
            shape_ids
                .get(n)
                .copied()
                .ok_or_else(|| ModelError::UnknownShape(n.to_string()))
        };
        let mut shapes = Vec::with_capacity(names.len());
        for name in &names {
            let rs = &raw.shapes[*name];
            let bad = |problem: &str| ModelError::BadShape {
                shape: (*name).clone(),
                problem: problem.to_string(),
            };
            let kind = match rs.kind.as_str() {
                "structure" => {
                    let mut members = Vec::with_capacity(rs.members.len());
                    for m in &rs.members {
                        members.push(Member {
                            name: m.name.clone(),
                            shape: id(&m.shape)?,
                            location_name: m.location_name.clone(),
                            query_name: m.query_name.clone(),
                            required: rs.required.contains(&m.name),
                            idempotency_token: m.idempotency_token,
                        });
                    }
                    if let Some(r) = rs
                        .required
                        .iter()
                        .find(|r| !members.iter().any(|m| &m.name == *r))
                    {
                        return Err(bad(&format!("required member {r} is not a member")));
                    }
                    let mut by_wire_name = HashMap::new();
                    let mut by_name = HashMap::new();
                    let mut by_element_name = HashMap::new();
                    for (i, m) in members.iter().enumerate() {
                        by_element_name
                            .entry(m.element_name().to_string())
                            .or_insert(i);
                        if by_wire_name.insert(m.wire_name(), i).is_some() {
                            return Err(bad(&format!(
                                "two members share wire name {}",
                                m.wire_name()
                            )));
                        }
                        by_name.insert(m.name.clone(), i);
                    }
                    ShapeKind::Structure(Structure {
                        members,
                        by_wire_name,
                        by_name,
                        by_element_name,
                    })
                }
                "list" => {
                    let m = rs
                        .member
                        .as_ref()
                        .ok_or_else(|| bad("list without member"))?;
                    ShapeKind::List(List {
                        member: id(&m.shape)?,
                        member_location_name: m.location_name.clone(),
                    })
                }
                "string" => ShapeKind::String {
                    enum_values: rs.enum_values.clone(),
                },
                "integer" => ShapeKind::Integer,
                "long" => ShapeKind::Long,
                "boolean" => ShapeKind::Boolean,
                "timestamp" => ShapeKind::Timestamp,
                "double" => ShapeKind::Double,
                "float" => ShapeKind::Float,
                "blob" => ShapeKind::Blob,
                other => return Err(bad(&format!("unknown type {other}"))),
            };
            shapes.push(Shape {
                name: (*name).clone(),
                kind,
                min: rs.min,
                max: rs.max,
            });
        }
        let mut operations = HashMap::new();
        for (name, op) in &raw.operations {
            let input = op.input.as_deref().map(id).transpose()?;
            let output = op.output.as_deref().map(id).transpose()?;
            for s in [input, output].into_iter().flatten() {
                if !matches!(shapes[s].kind, ShapeKind::Structure(_)) {
                    return Err(ModelError::BadShape {
                        shape: shapes[s].name.clone(),
                        problem: format!("input/output of {name} is not a structure"),
                    });
                }
            }
            operations.insert(
                name.clone(),
                Operation {
                    name: name.clone(),
                    input,
                    output,
                },
            );
        }
        Ok(Model {
            botocore_version: raw.botocore_version,
            api_version: raw.api_version,
            xml_namespace: raw.xml_namespace,
            shapes,
            operations,
            shape_ids,
        })
    }

    /// The shape named `name`.
    pub fn shape_id(&self, name: &str) -> Option<ShapeId> {
        self.shape_ids.get(name).copied()
    }

    /// The shape with id `id` (ids come from this model, so it exists).
    pub fn shape(&self, id: ShapeId) -> &Shape {
        &self.shapes[id]
    }

    /// The operation named `name` (the `Action` value).
    pub fn operation(&self, name: &str) -> Option<&Operation> {
        self.operations.get(name)
    }

    /// Operation names, sorted.
    pub fn operation_names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.operations.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }
}
