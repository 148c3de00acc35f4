//! Decoding EC2 Query requests: an `application/x-www-form-urlencoded` body or a GET query
//! string into parameters, with helpers for the flattened shapes of the protocol: `Name.N`
//! lists, `Filter.N.Name`/`Filter.N.Value.M`, `TagSpecification.N.ResourceType`/`.Tag.M.Key`,
//! `Tag.N.Key`/`.Value`, and `Parent.Child` structs such as `Placement.HostId`.
//!
//! The input is untrusted: decoding never panics, refuses invalid UTF-8 and more than
//! [`MAX_PARAMS`] parameters, and tolerates stray `%` signs as literal text (as browsers do).

use std::collections::BTreeMap;

use crate::model::filter::Filter;
use crate::model::tags::TagSpec;
use crate::model::ApiError;

/// Most parameters one request may carry.
pub const MAX_PARAMS: usize = 10_000;

/// The decoded parameters of one request. A repeated key keeps its last value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    map: BTreeMap<String, String>,
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes one form-encoded component: `+` is a space, `%XX` a byte, any other `%` itself.
pub fn percent_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hi = input.get(i + 1).copied().and_then(hex_val);
                let lo = input.get(i + 2).copied().and_then(hex_val);
                if let (Some(h), Some(l)) = (hi, lo) {
                    out.push(h << 4 | l);
                    i += 3;
                } else {
                    out.push(b'%');
                    i += 1;
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

fn decode_text(input: &[u8]) -> Result<String, ApiError> {
    String::from_utf8(percent_decode(input)).map_err(|_| {
        ApiError::new(
            "MalformedQueryString",
            "The request contains a parameter that is not valid UTF-8.",
        )
    })
}

impl Params {
    /// Decodes one or more form-encoded inputs (e.g. the query string, then the body).
    pub fn parse_all(inputs: &[&[u8]]) -> Result<Params, ApiError> {
        let mut map = BTreeMap::new();
        for input in inputs {
            for pair in input.split(|b| *b == b'&') {
                if pair.is_empty() {
                    continue;
                }
                let (k, v) = match pair.iter().position(|b| *b == b'=') {
                    Some(i) => (&pair[..i], &pair[i + 1..]),
                    None => (pair, &[][..]),
                };
                let key = decode_text(k)?;
                if key.is_empty() {
                    continue;
                }
                map.insert(key, decode_text(v)?);
                if map.len() > MAX_PARAMS {
                    return Err(ApiError::invalid_value(format!(
                        "The request has more than {MAX_PARAMS} parameters."
                    )));
                }
            }
        }
        Ok(Params { map })
    }

    /// Decodes one form-encoded input.
    pub fn parse(input: &[u8]) -> Result<Params, ApiError> {
        Self::parse_all(&[input])
    }

    /// Parameters from decoded pairs (tests and callers that already hold them).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Params {
        Params {
            map: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.map.get(key).map(String::as_str)
    }

    /// The value of `key`, or `MissingParameter`. An empty value counts as missing.
    pub fn required(&self, key: &str) -> Result<&str, ApiError> {
        match self.get(key) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(ApiError::missing(key)),
        }
    }

    /// A boolean (`true`/`false`, any case).
    pub fn bool(&self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(v) => Err(ApiError::invalid_value(format!(
                "Value ({v}) for parameter {key} is invalid. Expected: 'true' or 'false'."
            ))),
        }
    }

    /// A non-negative integer.
    pub fn u32(&self, key: &str) -> Result<Option<u32>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.trim().parse::<u32>().map(Some).map_err(|_| {
                ApiError::invalid_value(format!(
                    "Value ({v}) for parameter {key} is invalid. Expected a non-negative integer."
                ))
            }),
        }
    }

    /// The keys below `prefix.` as (index, rest-of-key, value), for `prefix.N[.rest]` with N a
    /// positive integer; anything else under the prefix is ignored.
    fn indexed<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (u32, &'a str, &'a str)> + 'a {
        let dotted = format!("{prefix}.");
        self.map
            .range(dotted.clone()..)
            .take_while(move |(k, _)| k.starts_with(&dotted))
            .filter_map(move |(k, v)| {
                let rest = &k[prefix.len() + 1..];
                let (n, tail) = match rest.split_once('.') {
                    Some((n, tail)) => (n, tail),
                    None => (rest, ""),
                };
                if n.is_empty() || n.len() > 9 || !n.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                let n: u32 = n.parse().ok()?;
                (n >= 1).then_some((n, tail, v.as_str()))
            })
    }

    /// The list `prefix.1`, `prefix.2`, ... in index order.
    pub fn list(&self, prefix: &str) -> Vec<String> {
        let mut items: Vec<(u32, String)> = self
            .indexed(prefix)
            .filter(|(_, tail, _)| tail.is_empty())
            .map(|(n, _, v)| (n, v.to_string()))
            .collect();
        items.sort_by_key(|(n, _)| *n);
        items.into_iter().map(|(_, v)| v).collect()
    }

    /// The structures `prefix.N.*`, each as its own `Params` (keys relative to `prefix.N.`), in
    /// index order.
    pub fn members(&self, prefix: &str) -> Vec<Params> {
        let mut groups: BTreeMap<u32, Params> = BTreeMap::new();
        for (n, tail, v) in self.indexed(prefix) {
            if !tail.is_empty() {
                groups
                    .entry(n)
                    .or_default()
                    .map
                    .insert(tail.to_string(), v.to_string());
            }
        }
        groups.into_values().collect()
    }

    /// The struct `prefix.*` as its own `Params` (e.g. `Placement` -> `HostId`).
    pub fn member(&self, prefix: &str) -> Params {
        let dotted = format!("{prefix}.");
        Params {
            map: self
                .map
                .range(dotted.clone()..)
                .take_while(|(k, _)| k.starts_with(&dotted))
                .map(|(k, v)| (k[dotted.len()..].to_string(), v.clone()))
                .collect(),
        }
    }

    /// `Filter.N.Name` / `Filter.N.Value.M`.
    pub fn filters(&self) -> Result<Vec<Filter>, ApiError> {
        self.members("Filter")
            .into_iter()
            .map(|f| {
                let name = f
                    .required("Name")
                    .map_err(|_| ApiError::missing("Filter.N.Name"))?;
                Ok(Filter {
                    name: name.to_string(),
                    values: f.list("Value"),
                })
            })
            .collect()
    }

    /// `prefix.N.Key` / `prefix.N.Value` pairs (a missing value is "").
    pub fn tags(&self, prefix: &str) -> Result<Vec<(String, String)>, ApiError> {
        self.members(prefix)
            .into_iter()
            .map(|t| {
                let key = t
                    .get("Key")
                    .ok_or_else(|| ApiError::missing(&format!("{prefix}.N.Key")))?;
                Ok((key.to_string(), t.get("Value").unwrap_or("").to_string()))
            })
            .collect()
    }

    /// `TagSpecification.N.ResourceType` / `TagSpecification.N.Tag.M.Key` / `.Value`.
    pub fn tag_specifications(&self) -> Result<Vec<TagSpec>, ApiError> {
        self.members("TagSpecification")
            .into_iter()
            .map(|s| {
                let resource_type = s
                    .required("ResourceType")
                    .map_err(|_| ApiError::missing("TagSpecification.N.ResourceType"))?;
                Ok(TagSpec {
                    resource_type: resource_type.to_string(),
                    tags: s.tags("Tag")?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_form_bodies() {
        let p = Params::parse(
            b"Action=CreateVpc&Version=2016-11-15&CidrBlock=10.0.0.0%2F16&Note=a+b%zz&Empty=&Flag",
        )
        .unwrap();
        assert_eq!(p.get("Action"), Some("CreateVpc"));
        assert_eq!(p.get("CidrBlock"), Some("10.0.0.0/16"));
        assert_eq!(p.get("Note"), Some("a b%zz"));
        assert_eq!(p.get("Empty"), Some(""));
        assert_eq!(p.get("Flag"), Some(""));
        assert_eq!(p.required("Empty").unwrap_err().code, "MissingParameter");
        assert_eq!(
            Params::parse(b"A=%ff").unwrap_err().code,
            "MalformedQueryString"
        );
    }

    #[test]
    fn lists_structs_filters_and_tags() {
        let p = Params::parse(
            b"InstanceId.2=i-b&InstanceId.1=i-a&InstanceId.10=i-c&InstanceId.x=bad&InstanceId.0=zero\
              &Filter.1.Name=tag%3AName&Filter.1.Value.1=zigi-*&Filter.1.Value.2=other\
              &Filter.2.Name=vpc-id&Filter.2.Value.1=vpc-1\
              &TagSpecification.1.ResourceType=instance&TagSpecification.1.Tag.1.Key=Name\
              &TagSpecification.1.Tag.1.Value=vm1&TagSpecification.1.Tag.2.Key=empty\
              &Placement.HostId=host-1&Placement.Tenancy=default",
        )
        .unwrap();
        assert_eq!(p.list("InstanceId"), ["i-a", "i-b", "i-c"]);
        let f = p.filters().unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].name, "tag:Name");
        assert_eq!(f[0].values, ["zigi-*", "other"]);
        assert_eq!(f[1].values, ["vpc-1"]);
        let ts = p.tag_specifications().unwrap();
        assert_eq!(ts[0].resource_type, "instance");
        assert_eq!(
            ts[0].tags,
            [
                ("Name".to_string(), "vm1".to_string()),
                ("empty".to_string(), String::new())
            ]
        );
        assert_eq!(p.member("Placement").get("HostId"), Some("host-1"));
        let missing = Params::parse(b"Filter.1.Value.1=x").unwrap();
        assert_eq!(missing.filters().unwrap_err().code, "MissingParameter");
    }

    #[test]
    fn refuses_too_many_parameters() {
        let body: Vec<u8> = (0..=MAX_PARAMS)
            .map(|i| format!("K{i}=v"))
            .collect::<Vec<_>>()
            .join("&")
            .into_bytes();
        assert!(Params::parse(&body).is_err());
    }

    proptest! {
        #[test]
        fn never_panics(input in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(p) = Params::parse(&input) {
                let _ = p.filters();
                let _ = p.tag_specifications();
                let _ = p.list("InstanceId");
            }
        }

        #[test]
        fn encoded_pairs_round_trip(pairs in proptest::collection::btree_map("[A-Za-z0-9.]{1,12}", "\\PC{0,16}", 0..8)) {
            fn enc(s: &str) -> String {
                s.bytes().map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
                    b' ' => "+".to_string(),
                    _ => format!("%{b:02X}"),
                }).collect()
            }
            let body = pairs.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&");
            let p = Params::parse(body.as_bytes()).unwrap();
            prop_assert_eq!(p.len(), pairs.len());
            for (k, v) in &pairs {
                prop_assert_eq!(p.get(k), Some(v.as_str()));
            }
        }

        #[test]
        fn lists_come_back_in_index_order(values in proptest::collection::vec("[a-z0-9-]{1,10}", 1..20)) {
            // Encode in reverse order: the decoder must sort by the numeric index.
            let body = values.iter().enumerate().rev()
                .map(|(i, v)| format!("Id.{}={}", i + 1, v)).collect::<Vec<_>>().join("&");
            let p = Params::parse(body.as_bytes()).unwrap();
            prop_assert_eq!(p.list("Id"), values);
        }
    }
}
