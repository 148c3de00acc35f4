//! Resource identifiers and other random names: `vpc-`/`subnet-`/`eni-`/`i-`/`h-` + 17 lowercase
//! hex digits, ENI MACs `02:` + 5 random bytes, request ids.

use rand::Rng;

/// A new id: `prefix` + `-` + 17 random lowercase hex digits.
pub fn new_id(prefix: &str) -> String {
    let mut rng = rand::thread_rng();
    let mut s = String::with_capacity(prefix.len() + 18);
    s.push_str(prefix);
    s.push('-');
    for _ in 0..17 {
        let d: u8 = rng.gen_range(0..16);
        s.push(char::from_digit(u32::from(d), 16).unwrap_or('0'));
    }
    s
}

/// A locally administered unicast MAC: `02:` followed by 5 random bytes.
pub fn new_mac() -> String {
    let b: [u8; 5] = rand::thread_rng().gen();
    format!(
        "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[0], b[1], b[2], b[3], b[4]
    )
}

/// A request id in the UUID form AWS uses.
pub fn new_request_id() -> String {
    let b: [u8; 16] = rand::thread_rng().gen();
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// True when `id` is `prefix-` followed by 17 lowercase hex digits (or 8, the old AWS form).
pub fn is_well_formed(id: &str, prefix: &str) -> bool {
    let Some(rest) = id.strip_prefix(prefix).and_then(|r| r.strip_prefix('-')) else {
        return false;
    };
    (rest.len() == 17 || rest.len() == 8)
        && rest
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_aws_shape() {
        for prefix in ["vpc", "subnet", "eni", "i", "h"] {
            let id = new_id(prefix);
            assert!(is_well_formed(&id, prefix), "{id}");
            assert_eq!(id.len(), prefix.len() + 18);
        }
        assert!(!is_well_formed("vpc-XYZ", "vpc"));
        assert!(!is_well_formed("subnet-0123456789abcdef0", "vpc"));
    }

    #[test]
    fn macs_are_locally_administered() {
        let mac = new_mac();
        assert!(mac.starts_with("02:"));
        assert_eq!(mac.len(), 17);
        assert_ne!(new_mac(), new_mac());
    }
}
