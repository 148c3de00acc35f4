//! `PutFlowLogRecords`: the records agents made, appended to each flow log's destination.
//!
//! An agent formats the records of its host's ENIs (it got each ENI's flow logs through the
//! mapping service) and sends them in batches, one per flow log and ENI. The server writes a
//! batch only if the ENI is placed on the calling host and the flow log covers it (its own, its
//! subnet's or its VPC's), and only lines that look like records (printable ASCII, no newline,
//! at most [`MAX_LINE`] bytes): a host can write only its own ENIs' records, into flow logs that
//! exist, and cannot forge other lines of the file.
//!
//! Each flow log has one growing file, `<flow-log-dir>/<its directory>/<fl-id>.log`, one
//! record per line, appended with one `write` per batch (`O_APPEND`, so batches of several
//! hosts never interleave within a line).

use std::io::Write;
use std::path::Path;

use softvpc_proto::pb;

use softvpc_model::instance::placed_host;
use softvpc_model::State;

/// The longest record line accepted.
pub const MAX_LINE: usize = 4096;

/// What one request did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Lines appended.
    pub written: u64,
    /// Lines refused or not written.
    pub refused: u64,
}

/// Whether `line` may be written as a record.
pub fn valid_line(line: &str) -> bool {
    !line.is_empty() && line.len() <= MAX_LINE && line.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

/// The file flow log `fl` is written to, under `base`.
pub fn destination_file(base: &Path, dir: &str, flow_log_id: &str) -> std::path::PathBuf {
    base.join(dir).join(format!("{flow_log_id}.log"))
}

/// Appends the batches of host `host_name` that it may write; see the [module docs](self).
pub fn append(
    state: &State,
    base: &Path,
    host_name: &str,
    req: &pb::PutFlowLogRecordsRequest,
) -> Outcome {
    let mut out = Outcome::default();
    let host_id = state
        .hosts
        .values()
        .find(|h| h.name == host_name)
        .map(|h| h.id.clone());
    for batch in &req.batches {
        let n = batch.lines.len() as u64;
        let allowed = host_id.as_deref().and_then(|host| {
            let f = state.flow_logs.get(&batch.flow_log_id)?;
            let e = state.enis.get(&batch.eni_id)?;
            let covers = [&e.id, &e.subnet_id, &e.vpc_id].contains(&&f.resource_id);
            (covers && placed_host(state, e) == Some(host)).then_some(f)
        });
        let Some(f) = allowed else {
            tracing::warn!(host = host_name, flow_log = %batch.flow_log_id, eni = %batch.eni_id,
                lines = n, "flow log records refused: the ENI is not on this host or the flow log does not cover it");
            out.refused += n;
            continue;
        };
        let mut text = String::new();
        for line in &batch.lines {
            if valid_line(line) {
                text.push_str(line);
                text.push('\n');
                out.written += 1;
            } else {
                out.refused += 1;
            }
        }
        if text.is_empty() {
            continue;
        }
        let path = destination_file(base, &f.dir, &f.id);
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
            })
            .and_then(|mut file| file.write_all(text.as_bytes()));
        if let Err(e) = written {
            let lines = text.lines().count() as u64;
            tracing::warn!(flow_log = %f.id, path = %path.display(), error = %e, lines,
                "cannot write flow log records");
            out.written -= lines;
            out.refused += lines;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn record_lines_are_printable_ascii_without_newlines() {
        assert!(valid_line(
            "2 123456789012 eni-1 10.0.0.1 10.0.0.2 0 0 1 5 420 1 2 ACCEPT OK"
        ));
        assert!(!valid_line(""));
        assert!(!valid_line("a\nb"));
        assert!(!valid_line("a\rb"));
        assert!(!valid_line("a\u{7f}"));
        assert!(!valid_line("é"));
        assert!(!valid_line(&"a".repeat(MAX_LINE + 1)));
    }

    proptest! {
        /// Whatever an agent sends, an accepted line adds exactly one line to the file.
        #[test]
        fn an_accepted_line_is_one_line(s in "\\PC{0,64}|[ -~\n\r\t]{0,64}") {
            if valid_line(&s) {
                prop_assert_eq!(format!("{s}\n").lines().count(), 1);
                prop_assert!(!s.contains('\n') && !s.contains('\r'));
            }
        }
    }
}
