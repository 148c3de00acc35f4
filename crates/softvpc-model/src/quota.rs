//! The account's adjustable VPC quotas that the model enforces (AWS's "Amazon VPC quotas"):
//! rules per security group (each direction) and security groups per network interface.
//!
//! They are settings of the server (`softvpc server --sg-rules-per-group`,
//! `--sgs-per-interface`), not resources: they live in [`crate::State`] for the model's checks
//! and are never stored. The defaults are AWS's; the bounds are AWS's too: a group may be raised
//! to 1,000 rules per direction and an interface to 16 groups, as long as their product stays at
//! most 1,000 (AWS: "the quota for security groups per network interface multiplied by the quota
//! for rules per security group can't exceed 1,000").

/// AWS's default rules per security group, per direction.
pub const DEFAULT_RULES_PER_GROUP: usize = 60;
/// AWS's default security groups per network interface.
pub const DEFAULT_GROUPS_PER_INTERFACE: usize = 5;
/// The most groups per interface AWS grants.
pub const MAX_GROUPS_PER_INTERFACE: usize = 16;
/// The most a group's rules (per direction) times an interface's groups may be.
pub const MAX_RULES_PER_INTERFACE: usize = 1_000;

/// The quotas in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    /// Rules per security group, in each direction (a prefix list reference costs its
    /// MaxEntries).
    pub rules_per_group: usize,
    /// Security groups per network interface.
    pub groups_per_interface: usize,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            rules_per_group: DEFAULT_RULES_PER_GROUP,
            groups_per_interface: DEFAULT_GROUPS_PER_INTERFACE,
        }
    }
}

impl Quotas {
    /// Checked quotas: each at least 1, groups at most 16, their product at most 1,000.
    pub fn new(rules_per_group: usize, groups_per_interface: usize) -> Result<Self, String> {
        if rules_per_group == 0 || groups_per_interface == 0 {
            return Err("quotas must be at least 1".into());
        }
        if groups_per_interface > MAX_GROUPS_PER_INTERFACE {
            return Err(format!(
                "security groups per network interface: at most {MAX_GROUPS_PER_INTERFACE}, \
                 got {groups_per_interface}"
            ));
        }
        if rules_per_group * groups_per_interface > MAX_RULES_PER_INTERFACE {
            return Err(format!(
                "rules per security group ({rules_per_group}) times security groups per network \
                 interface ({groups_per_interface}) must not exceed {MAX_RULES_PER_INTERFACE}"
            ));
        }
        Ok(Quotas {
            rules_per_group,
            groups_per_interface,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_bounds() {
        assert_eq!(Quotas::default(), Quotas::new(60, 5).unwrap());
        assert!(Quotas::new(1000, 1).is_ok());
        assert!(Quotas::new(200, 5).is_ok());
        assert!(Quotas::new(62, 16).is_ok());
        assert!(Quotas::new(1001, 1).is_err());
        assert!(Quotas::new(201, 5).is_err());
        assert!(Quotas::new(10, 17).is_err());
        assert!(Quotas::new(0, 5).is_err());
        assert!(Quotas::new(60, 0).is_err());
    }
}
