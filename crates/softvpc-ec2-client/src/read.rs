//! Small readers over answer trees that every caller needs.

use softvpc_ec2_protocol::Value;

/// The value of tag `key` in a resource's `Tags` list.
pub fn tag<'a>(resource: &'a Value, key: &str) -> Option<&'a str> {
    resource
        .get_list("Tags")
        .iter()
        .find(|t| t.get_str("Key") == Some(key))
        .and_then(|t| t.get_str("Value"))
}

/// The text at a path of member names (`["State", "Name"]`).
pub fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut v = value;
    for name in path {
        v = v.get(name)?;
    }
    v.as_str()
}

/// The `TagSpecifications` member that gives a new resource of `resource_type` a Name tag.
pub fn name_tag_spec(resource_type: &str, name: &str) -> Value {
    Value::List(vec![Value::new_struct()
        .with("ResourceType", resource_type)
        .with(
            "Tags",
            vec![Value::new_struct().with("Key", "Name").with("Value", name)],
        )])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_paths() {
        let r = Value::new_struct()
            .with("State", Value::new_struct().with("Name", "running"))
            .with(
                "Tags",
                vec![Value::new_struct().with("Key", "Name").with("Value", "a")],
            );
        assert_eq!(tag(&r, "Name"), Some("a"));
        assert_eq!(tag(&r, "x"), None);
        assert_eq!(str_at(&r, &["State", "Name"]), Some("running"));
        assert_eq!(str_at(&r, &["State", "Code"]), None);
        assert_eq!(
            crate::codec::request_body(
                "CreateVpc",
                &Value::new_struct()
                    .with("CidrBlock", "10.0.0.0/16")
                    .with("TagSpecifications", name_tag_spec("vpc", "v"))
            )
            .unwrap(),
            "Action=CreateVpc&Version=2016-11-15&CidrBlock=10.0.0.0%2F16&TagSpecification.1.ResourceType=vpc&TagSpecification.1.Tag.1.Key=Name&TagSpecification.1.Tag.1.Value=v"
        );
    }
}
