//! A tiny XML tree for reading EC2 Query responses (`vpcSet/item/vpcId` and the like).
//!
//! EC2 answers are small, so the lab parses the whole document into [`Element`]s with quick-xml
//! and then walks it by local element names. Namespaces are ignored: EC2 uses one default
//! namespace for everything.

use anyhow::{bail, Context};
use quick_xml::events::Event;
use quick_xml::Reader;

/// Deepest nesting accepted (EC2 answers are a handful of levels deep).
const MAX_DEPTH: usize = 64;

/// An element: its local name, its text (concatenated, trimmed) and its child elements.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    /// Parses a document and returns its root element.
    pub fn parse(doc: &str) -> anyhow::Result<Element> {
        let mut reader = Reader::from_str(doc);
        reader.config_mut().trim_text(true);
        // Stack of open elements; the root ends up as the only child of this synthetic top.
        let mut stack = vec![Element::default()];
        loop {
            let event = reader
                .read_event()
                .with_context(|| format!("malformed XML at byte {}", reader.buffer_position()))?;
            match event {
                Event::Start(e) => {
                    if stack.len() > MAX_DEPTH {
                        bail!("XML nested deeper than {MAX_DEPTH} levels");
                    }
                    let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                    stack.push(Element {
                        name,
                        ..Element::default()
                    });
                }
                Event::Empty(e) => {
                    let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                    let top = stack.last_mut().context("XML stack underflow")?;
                    top.children.push(Element {
                        name,
                        ..Element::default()
                    });
                }
                Event::End(_) => {
                    if stack.len() < 2 {
                        bail!("unbalanced XML end tag");
                    }
                    let done = stack.pop().context("XML stack underflow")?;
                    stack
                        .last_mut()
                        .context("XML stack underflow")?
                        .children
                        .push(done);
                }
                Event::Text(t) => {
                    let text = t.unescape().context("bad XML text")?;
                    stack
                        .last_mut()
                        .context("XML stack underflow")?
                        .text
                        .push_str(&text);
                }
                Event::CData(c) => {
                    let text = String::from_utf8_lossy(&c.into_inner()).into_owned();
                    stack
                        .last_mut()
                        .context("XML stack underflow")?
                        .text
                        .push_str(&text);
                }
                Event::Eof => break,
                Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
            }
        }
        if stack.len() != 1 {
            bail!("XML document ends inside an element");
        }
        let mut top = stack.pop().context("XML stack underflow")?;
        match top.children.len() {
            1 => Ok(top.children.remove(0)),
            0 => bail!("empty XML document"),
            _ => bail!("XML document has several root elements"),
        }
    }

    /// The first direct child with this name.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The text of the element at this path of direct children (`"instanceState/name"`).
    pub fn text_at(&self, path: &str) -> Option<&str> {
        let mut e = self;
        for step in path.split('/') {
            e = e.child(step)?;
        }
        Some(e.text.as_str())
    }

    /// The `item`s of a wrapped list child (`vpcSet` -> its `item`s); empty when absent.
    pub fn items<'a>(&'a self, set: &str) -> impl Iterator<Item = &'a Element> + 'a {
        self.child(set)
            .into_iter()
            .flat_map(|s| s.children.iter().filter(|c| c.name == "item"))
    }

    /// The first element with this name anywhere below (depth first, document order).
    pub fn find(&self, name: &str) -> Option<&Element> {
        for c in &self.children {
            if c.name == name {
                return Some(c);
            }
            if let Some(found) = c.find(name) {
                return Some(found);
            }
        }
        None
    }

    /// The value of the tag `key` in this element's `tagSet`.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.items("tagSet")
            .find(|t| t.text_at("key") == Some(key))
            .and_then(|t| t.text_at("value"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VPCS: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<DescribeVpcsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
  <requestId>7a62c49f-347e-4fc4-9331-6e8eEXAMPLE</requestId>
  <vpcSet>
    <item>
      <vpcId>vpc-0123456789abcdef0</vpcId>
      <cidrBlock>10.0.0.0/16</cidrBlock>
      <tagSet><item><key>Name</key><value>zigi-vpc1 &amp; co</value></item></tagSet>
    </item>
    <item><vpcId>vpc-1</vpcId><tagSet/></item>
  </vpcSet>
</DescribeVpcsResponse>"#;

    #[test]
    fn walks_an_ec2_answer() {
        let root = Element::parse(VPCS).unwrap();
        assert_eq!(root.name, "DescribeVpcsResponse");
        let vpcs: Vec<_> = root.items("vpcSet").collect();
        assert_eq!(vpcs.len(), 2);
        assert_eq!(vpcs[0].text_at("vpcId"), Some("vpc-0123456789abcdef0"));
        assert_eq!(vpcs[0].tag("Name"), Some("zigi-vpc1 & co"));
        assert_eq!(vpcs[1].tag("Name"), None);
        assert_eq!(
            root.find("cidrBlock").map(|e| e.text.as_str()),
            Some("10.0.0.0/16")
        );
        assert_eq!(root.items("nope").count(), 0);
    }

    #[test]
    fn malformed_documents_are_errors() {
        for bad in ["", "<a>", "<a></b>", "<a/><b/>", "</a>", "not xml <"] {
            assert!(Element::parse(bad).is_err(), "{bad:?}");
        }
        let deep = "<a>".repeat(100) + &"</a>".repeat(100);
        assert!(Element::parse(&deep).is_err());
    }
}
