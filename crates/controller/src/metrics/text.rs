//! The Prometheus text format (0.0.4), derived from the OpenMetrics text the registry encodes.
//!
//! Prometheus asks for OpenMetrics and gets it; `curl`, older scrapers and `promtool check
//! metrics` read the classic format, where a counter's family is named with its `_total` suffix
//! and there are no `# UNIT` or `# EOF` lines. The samples are the same in both, so the
//! conversion only renames counter descriptors and drops those lines.

use std::fmt::Write as _;

/// The content type of OpenMetrics text.
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of the Prometheus text format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether an `Accept` header asks for OpenMetrics (what Prometheus sends).
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|accept| accept.contains("application/openmetrics-text"))
}

/// `openmetrics` in the Prometheus text format.
pub fn to_prometheus(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    // HELP comes before TYPE; a counter's HELP needs the name TYPE gives it.
    let mut help: Option<(&str, &str)> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            help = Some((name, text));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (family, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "info" => (format!("{name}_info"), "gauge"),
                "unknown" => (name.to_owned(), "untyped"),
                other => (name.to_owned(), other),
            };
            if let Some((help_name, text)) = help.take()
                && help_name == name
            {
                let _ = writeln!(out, "# HELP {family} {text}");
            }
            let _ = writeln!(out, "# TYPE {family} {kind}");
            continue;
        }
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_take_their_total_name_and_units_and_eof_go() {
        let openmetrics = "# HELP karpenter_nodes_created Number of nodes.\n\
                           # TYPE karpenter_nodes_created counter\n\
                           karpenter_nodes_created_total{nodepool=\"default\"} 3\n\
                           # HELP d_seconds Time.\n\
                           # TYPE d_seconds histogram\n\
                           # UNIT d_seconds seconds\n\
                           d_seconds_sum 1.5\n\
                           d_seconds_count 2\n\
                           d_seconds_bucket{le=\"+Inf\"} 2\n\
                           # EOF\n";
        let text = to_prometheus(openmetrics);
        assert_eq!(
            text,
            "# HELP karpenter_nodes_created_total Number of nodes.\n\
             # TYPE karpenter_nodes_created_total counter\n\
             karpenter_nodes_created_total{nodepool=\"default\"} 3\n\
             # HELP d_seconds Time.\n\
             # TYPE d_seconds histogram\n\
             d_seconds_sum 1.5\n\
             d_seconds_count 2\n\
             d_seconds_bucket{le=\"+Inf\"} 2\n"
        );
    }

    #[test]
    fn prometheus_asks_for_openmetrics_and_curl_does_not() {
        assert!(wants_openmetrics(Some(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        )));
        assert!(!wants_openmetrics(Some("*/*")));
        assert!(!wants_openmetrics(None));
    }
}
