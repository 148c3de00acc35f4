//! Test helpers: a seeded generator of trees that fit a shape. (Serializing requests is the
//! crate's own `serialize_request`, checked against botocore's bodies in `client_directions.rs`.)

#![allow(dead_code)]

use softvpc_ec2_protocol::model::{Model, ShapeId, ShapeKind};
use softvpc_ec2_protocol::{Timestamp, Value};

/// splitmix64: small, seedable, good enough to pick test values.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Texts that stress escaping on both sides: XML specials, form specials, CR/LF, non-ASCII.
pub const WORDS: &[&str] = &[
    "vpc-0123456789abcdef0",
    "a&b",
    "<tag>",
    "x > y",
    "quote\"s 'single'",
    "100%",
    "+plus=eq",
    "é日本",
    "line\nbreak",
    "cr\rlf\r\n",
    "tab\t",
    "  spaced  ",
    "",
    "]]>",
];

/// A tree fitting `shape`: required members always, others by chance, lists of 1..=3, values
/// inside the model's enums and ranges. Empty structures and lists are never produced below the
/// top (the wire cannot carry them).
pub fn gen_tree(m: &Model, shape: ShapeId, rng: &mut Rng, depth: usize) -> Option<Value> {
    gen(m, shape, rng, depth, depth == 0)
}

/// `force`: the caller needs a value (a required member, a list item), so an optional-only
/// structure gets at least one member.
fn gen(m: &Model, shape: ShapeId, rng: &mut Rng, depth: usize, force: bool) -> Option<Value> {
    let s = m.shape(shape);
    match &s.kind {
        ShapeKind::Structure(st) => {
            let mut out = Value::new_struct();
            let mut any = false;
            for member in &st.members {
                if member.required || (depth < 5 && rng.chance(40)) {
                    if let Some(v) = gen(m, member.shape, rng, depth + 1, member.required) {
                        out = out.with(member.name.clone(), v);
                        any = true;
                    }
                }
            }
            if !any && force && depth > 0 {
                for member in &st.members {
                    if let Some(v) = gen(m, member.shape, rng, depth + 1, true) {
                        return Some(out.with(member.name.clone(), v));
                    }
                }
            }
            (any || depth == 0).then_some(out)
        }
        ShapeKind::List(l) => {
            if depth >= 7 && !force {
                return None;
            }
            let n = 1 + rng.below(3);
            let items: Vec<Value> = (0..n)
                .filter_map(|_| gen(m, l.member, rng, depth + 1, true))
                .collect();
            (!items.is_empty()).then_some(Value::List(items))
        }
        ShapeKind::String { enum_values } => Some(Value::String(if enum_values.is_empty() {
            let mut t = format!(
                "{}{}",
                WORDS[rng.below(WORDS.len() as u64) as usize],
                rng.below(1000)
            );
            // Within the shape's length bounds (e.g. LaunchTemplateName: 3 to 128).
            while s.min.is_some_and(|lo| (t.chars().count() as i64) < lo) {
                t.push('x');
            }
            if let Some(hi) = s.max {
                t = t.chars().take(hi.max(0) as usize).collect();
            }
            t
        } else {
            enum_values[rng.below(enum_values.len() as u64) as usize].clone()
        })),
        ShapeKind::Blob => Some(Value::String("aGVsbG8=".to_string())),
        ShapeKind::Integer | ShapeKind::Long => {
            let lo = s.min.unwrap_or(-5);
            let hi = s.max.unwrap_or(70_000);
            Some(Value::Integer(lo + rng.below((hi - lo + 1) as u64) as i64))
        }
        ShapeKind::Double | ShapeKind::Float => {
            Some(Value::Double((rng.below(20_000) as f64 - 10_000.0) / 8.0))
        }
        ShapeKind::Boolean => Some(Value::Boolean(rng.chance(50))),
        ShapeKind::Timestamp => Some(Value::Timestamp(Timestamp {
            secs: 1_700_000_000 + rng.below(100_000_000) as i64,
            nanos: (rng.below(1000) * 1_000_000) as u32,
        })),
    }
}
