//! EC2 Query responses: XML written with quick-xml (text escaped), `xmlns` of the 2016-11-15
//! API, lowerCamel element names, lists as `xxxSet` of `item`s; timestamps in ISO 8601.

use std::fmt::Display;

use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use quick_xml::Writer;

use crate::model::Tags;

/// The namespace of every EC2 response.
pub const XMLNS: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";

/// An XML document being written. Writing into a `Vec` cannot fail, so the I/O results of
/// quick-xml are ignored.
pub struct Xml {
    w: Writer<Vec<u8>>,
}

impl Default for Xml {
    fn default() -> Self {
        Self::new()
    }
}

impl Xml {
    /// A document with the XML declaration.
    pub fn new() -> Self {
        let mut w = Writer::new(Vec::with_capacity(1024));
        let _ = w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)));
        Xml { w }
    }

    /// Opens the response root `<{name} xmlns="...">`.
    pub fn open_root(&mut self, name: &str) {
        let start = BytesStart::new(name).with_attributes([("xmlns", XMLNS)]);
        let _ = self.w.write_event(Event::Start(start));
    }

    /// Opens `<name>`.
    pub fn open(&mut self, name: &str) {
        let _ = self.w.write_event(Event::Start(BytesStart::new(name)));
    }

    /// Closes `</name>`.
    pub fn close(&mut self, name: &str) {
        let _ = self.w.write_event(Event::End(BytesEnd::new(name)));
    }

    /// `<name>value</name>`, escaped.
    pub fn elem(&mut self, name: &str, value: impl Display) {
        self.open(name);
        let text = value.to_string();
        // Only `<`, `>` and `&` need escaping in text; quotes stay readable.
        let escaped = quick_xml::escape::partial_escape(&text);
        let _ = self
            .w
            .write_event(Event::Text(BytesText::from_escaped(escaped)));
        self.close(name);
    }

    /// `<name>` wrapping whatever `body` writes.
    pub fn nest(&mut self, name: &str, body: impl FnOnce(&mut Xml)) {
        self.open(name);
        body(self);
        self.close(name);
    }

    /// `<name><item>..</item>...</name>`, one item per element of `items`.
    pub fn set<I: IntoIterator>(
        &mut self,
        name: &str,
        items: I,
        mut each: impl FnMut(&mut Xml, I::Item),
    ) {
        self.open(name);
        for item in items {
            self.open("item");
            each(self, item);
            self.close("item");
        }
        self.close(name);
    }

    /// `tagSet`, omitted when there are no tags (as AWS does).
    pub fn tags(&mut self, tags: &Tags) {
        if tags.is_empty() {
            return;
        }
        self.set("tagSet", tags, |x, (k, v)| {
            x.elem("key", k);
            x.elem("value", v);
        });
    }

    /// The document as a string.
    pub fn finish(self) -> String {
        String::from_utf8(self.w.into_inner()).unwrap_or_default()
    }
}

/// ISO 8601 UTC with milliseconds, as EC2 prints timestamps: `2026-11-22T00:05:16.000Z`.
pub fn iso8601(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.000Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso8601(1_795_305_916), "2026-11-22T00:05:16.000Z");
    }

    #[test]
    fn text_is_escaped() {
        let mut x = Xml::new();
        x.open_root("R");
        x.elem("v", "<a&b>");
        x.close("R");
        let s = x.finish();
        assert!(s.contains("<v>&lt;a&amp;b&gt;</v>"), "{s}");
        assert!(s.contains(r#"<R xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">"#));
    }
}
