//! The region's availability zones: hosts register in one, subnets (and so instances) live in
//! one, and an instance runs only on a host of its subnet's zone, so a zone is a failure domain.

/// The zones of the region (`us-east-1`) and their zone ids, as DescribeAvailabilityZones
/// lists them.
pub const ZONES: [(&str, &str); 6] = [
    ("us-east-1a", "use1-az1"),
    ("us-east-1b", "use1-az2"),
    ("us-east-1c", "use1-az3"),
    ("us-east-1d", "use1-az4"),
    ("us-east-1e", "use1-az5"),
    ("us-east-1f", "use1-az6"),
];

/// The zone name a zone name or zone id names, if it is one of [`ZONES`].
pub fn resolve(name_or_id: &str) -> Option<&'static str> {
    ZONES
        .iter()
        .find(|(n, id)| *n == name_or_id || *id == name_or_id)
        .map(|(n, _)| *n)
}

/// The zone id of zone `name`.
pub fn id_of(name: &str) -> Option<&'static str> {
    ZONES.iter().find(|(n, _)| *n == name).map(|(_, id)| *id)
}

/// The zone names, comma-separated (for error messages).
pub fn names() -> String {
    ZONES.map(|(n, _)| n).join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids() {
        assert_eq!(resolve("us-east-1b"), Some("us-east-1b"));
        assert_eq!(resolve("use1-az2"), Some("us-east-1b"));
        assert_eq!(resolve("us-west-1b"), None);
        assert_eq!(id_of("us-east-1f"), Some("use1-az6"));
        assert!(names().starts_with("us-east-1a, us-east-1b"));
    }
}
