//! Describe filters with AWS semantics: values inside one filter are ORed, separate filters are
//! ANDed, `*` and `?` are wildcards; `tag:<key>`, `tag-key` and `tag-value` work on every
//! resource; an unknown filter name is refused with AWS's `InvalidParameterValue` "The filter
//! 'x' is invalid". Which names each Describe action accepts, compared with AWS's documentation,
//! is tabulated in `docs/ec2-api-coverage.md`.

use super::{ApiError, State, Tags};

/// One `Filter.N`: a name and its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// The filter name (`vpc-id`, `tag:Name`, ...).
    pub name: String,
    /// Its values: any may match (`*` and `?` are wildcards).
    pub values: Vec<String>,
}

/// A resource that Describe calls can filter.
pub trait Filterable {
    /// The filter names this resource understands, besides the tag filters.
    const FILTERS: &'static [&'static str];

    /// Filter names AWS documents for this resource's Describe action about data softvpc never
    /// holds (IPv6, Outposts, carrier IPs, ...): accepted as AWS accepts them, and since no
    /// resource has such a value ([`Self::field`] gives none), a filter on one matches nothing.
    const UNHELD: &'static [&'static str] = &[];

    /// The values of field `name` (one of [`Self::FILTERS`]) for this resource.
    fn field(&self, state: &State, name: &str) -> Vec<String>;

    /// The resource's tags.
    fn tag_map(&self) -> Tags;
}

/// Refuses filters this resource does not know (before anything is matched, so an unknown
/// filter is an error even when there is nothing to describe).
pub fn check<T: Filterable>(filters: &[Filter]) -> Result<(), ApiError> {
    for f in filters {
        let known = f.name.starts_with("tag:")
            || f.name == "tag-key"
            || f.name == "tag-value"
            || T::FILTERS.contains(&f.name.as_str())
            || T::UNHELD.contains(&f.name.as_str());
        if !known {
            return Err(ApiError::invalid_value(format!(
                "The filter '{}' is invalid",
                f.name
            )));
        }
    }
    Ok(())
}

/// True when `item` passes every filter.
pub fn matches<T: Filterable>(item: &T, state: &State, filters: &[Filter]) -> bool {
    filters.iter().all(|f| {
        let candidates: Vec<String> = if let Some(key) = f.name.strip_prefix("tag:") {
            item.tag_map().get(key).cloned().into_iter().collect()
        } else if f.name == "tag-key" {
            item.tag_map().into_keys().collect()
        } else if f.name == "tag-value" {
            item.tag_map().into_values().collect()
        } else {
            item.field(state, &f.name)
        };
        f.values
            .iter()
            .any(|pattern| candidates.iter().any(|c| glob(pattern, c)))
    })
}

/// A time (seconds since the epoch) as time filters compare it: ISO 8601 in UTC with
/// milliseconds (`2021-09-29T11:04:43.000Z`), so `2021-09-29T*` matches a day.
pub fn iso_time(secs: u64) -> String {
    softvpc_ec2_protocol::Timestamp::from_unix(i64::try_from(secs).unwrap_or(i64::MAX)).to_iso8601()
}

/// Matches `text` against `pattern` where `*` is any run of characters and `?` one character.
/// Linear-time greedy matching with backtracking to the last `*` (no exponential blow-up).
pub fn glob(pattern: &str, text: &str) -> bool {
    /// One pattern element: `*`, `?`, or a literal (a backslash escapes the next character,
    /// as AWS documents: `\*` is a literal star).
    #[derive(Clone, Copy, PartialEq)]
    enum Tok {
        Star,
        Any,
        Lit(char),
    }
    let mut p: Vec<Tok> = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        p.push(match c {
            '*' => Tok::Star,
            '?' => Tok::Any,
            '\\' => Tok::Lit(chars.next().unwrap_or('\\')),
            c => Tok::Lit(c),
        });
    }
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        // A star in the pattern is a wildcard even where the text has a '*' itself.
        match p.get(pi) {
            Some(Tok::Star) => {
                star = Some((pi, ti));
                pi += 1;
                continue;
            }
            Some(Tok::Any) => {
                pi += 1;
                ti += 1;
                continue;
            }
            Some(Tok::Lit(c)) if *c == t[ti] => {
                pi += 1;
                ti += 1;
                continue;
            }
            _ => {}
        }
        if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while p.get(pi) == Some(&Tok::Star) {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_wildcards() {
        assert!(glob("zigi-*", "zigi-vm1"));
        assert!(glob("zigi-vm?", "zigi-vm1"));
        assert!(!glob("zigi-vm?", "zigi-vm12"));
        assert!(glob("*", ""));
        assert!(glob("a*b*c", "aXXbYYc"));
        assert!(!glob("a*b*c", "aXXbYY"));
        assert!(glob("10.0.0.148", "10.0.0.148"));
        assert!(!glob("10.0.0.14", "10.0.0.148"));
        // Stars and question marks in the value itself (issue 13: `tag:star=x*` must find
        // `x*y?z`), and AWS's backslash escapes for literal ones.
        assert!(glob("x*", "x*y?z"));
        assert!(glob("x*y?z", "x*y?z"));
        assert!(glob("*y?z", "x*y?z"));
        assert!(glob("x\\*y*", "x*y?z"));
        assert!(!glob("x\\*y*", "xay?z"));
        assert!(glob("x*y\\?z", "x*y?z"));
        assert!(!glob("x*y\\?z", "x*yaz"));
        // Pathological patterns stay fast.
        let long = "a".repeat(5000);
        assert!(!glob(
            &"*a"
                .repeat(50)
                .chars()
                .chain("b".chars())
                .collect::<String>(),
            &long
        ));
    }
}
