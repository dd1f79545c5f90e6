//! `report.html`: the report as one page a person can read, with no
//! scripts and nothing fetched. Every value comes from the log, so every
//! value is HTML-escaped.

use super::report_json::RunReport;
use std::fmt::Write as _;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;max-width:75em;color:#222}\
table{border-collapse:collapse;margin:.5em 0 1.5em}\
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}\
th{background:#f3f3f3}pre{background:#f7f7f7;padding:.6em;overflow-x:auto}\
.bad{color:#a00;font-weight:bold}.ok{color:#060;font-weight:bold}code{font-size:.95em}";

/// The page.
pub fn render(report: &RunReport) -> String {
    let mut page = String::new();
    let e = escape;
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Policy report: {origin}</title><style>{STYLE}</style></head><body>\n\
         <h1>Policy report for {origin}</h1>\n",
        origin = e(&report.origin)
    );
    let checked = &report.entries_checked;
    let verdict = if report.incidents.is_empty() {
        "<p class=\"ok\">No incident in the entries checked in this run.</p>".to_owned()
    } else {
        format!(
            "<p class=\"bad\">{} incidents in the entries checked in this run.</p>",
            report.incidents.len()
        )
    };
    let _ = write!(
        page,
        "{verdict}\n<p>Checked entries {} to {} ({} this run, {} in total) against the \
         checkpoint of size {} with root <code>{}</code>, under the policy with SHA-256 \
         <code>{}</code>.</p>\n<details><summary>Signed checkpoint</summary><pre>{}</pre></details>\n",
        checked.from,
        checked.from + checked.this_run,
        checked.this_run,
        checked.total,
        report.checkpoint.size,
        e(&report.checkpoint.root),
        e(&report.policy_sha256),
        e(&report.checkpoint.note),
    );

    page.push_str("<h2>Incidents in this run</h2>\n");
    if report.incidents.is_empty() {
        page.push_str("<p>None.</p>\n");
    } else {
        page.push_str(
            "<table><tr><th>Entry</th><th>Rule</th><th>Reason</th><th>Event</th>\
             <th>Evidence</th></tr>\n",
        );
        for i in &report.incidents {
            let _ = writeln!(
                page,
                "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td>\
                 <td><a href=\"{bundle}\"><code>{bundle}</code></a></td></tr>",
                i.index,
                e(&i.rule),
                e(&i.reason),
                e(&i.event),
                bundle = e(&i.bundle),
            );
        }
        page.push_str(
            "</table>\n<p>Re-check any incident offline with \
             <code>verifier verify-bundle &lt;file&gt; --vkey &lt;log key&gt;</code>.</p>\n",
        );
    }

    let totals = &report.summary.totals;
    let _ = writeln!(
        page,
        "<h2>Summary over every run</h2>\n<p>{} entries checked: {} data flows, {} releases \
         ({} approved); {} incidents.</p>",
        totals.entries,
        totals.data_flows,
        totals.releases,
        totals.releases_approved,
        totals.incidents()
    );
    page.push_str("<h3>Incidents by rule</h3>\n");
    counts_table(
        &mut page,
        &["Rule", "This run", "All runs"],
        totals.incidents_by_rule.iter().map(|(rule, all)| {
            let now = report
                .summary
                .incidents_this_run_by_rule
                .get(rule)
                .copied()
                .unwrap_or(0);
            vec![
                format!("<code>{}</code>", e(rule)),
                now.to_string(),
                all.to_string(),
            ]
        }),
    );
    page.push_str("<h3>Data flows by category and destination region</h3>\n");
    counts_table(
        &mut page,
        &["Category", "Region", "Flows"],
        totals.flows.iter().flat_map(|(category, regions)| {
            regions
                .iter()
                .map(move |(region, n)| vec![e(category), e(region), n.to_string()])
        }),
    );
    page.push_str("<h3>Releases checked in this run</h3>\n");
    counts_table(
        &mut page,
        &[
            "Entry",
            "Artifact",
            "Version",
            "Digest",
            "Channel",
            "Reviewers",
            "Status",
        ],
        report.summary.releases_this_run.iter().map(|r| {
            let status = if r.approved {
                "<span class=\"ok\">approved</span>".to_owned()
            } else {
                let reasons: Vec<_> = r.reasons.iter().map(|x| e(x)).collect();
                format!(
                    "<span class=\"bad\">not approved</span>: {}",
                    reasons.join("<br>")
                )
            };
            let reviewers: Vec<_> = r.reviewers.iter().map(|x| e(x)).collect();
            vec![
                r.index.to_string(),
                e(&r.artifact),
                e(&r.version),
                format!("<code>{}</code>", e(&r.digest)),
                e(&r.channel),
                reviewers.join("<br>"),
                status,
            ]
        }),
    );
    page.push_str("</body></html>\n");
    page
}

/// A table of already-escaped cells, or "None." when there are no rows.
fn counts_table(page: &mut String, header: &[&str], rows: impl Iterator<Item = Vec<String>>) {
    let mut body = String::new();
    for row in rows {
        body.push_str("<tr>");
        for cell in row {
            let _ = write!(body, "<td>{cell}</td>");
        }
        body.push_str("</tr>\n");
    }
    if body.is_empty() {
        page.push_str("<p>None.</p>\n");
        return;
    }
    page.push_str("<table><tr>");
    for h in header {
        let _ = write!(page, "<th>{h}</th>");
    }
    page.push_str("</tr>\n");
    page.push_str(&body);
    page.push_str("</table>\n");
}

/// Escapes text for HTML content and double-quoted attributes.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::report_json::{Checked, CheckpointInfo, IncidentInfo, Summary};
    use super::super::summary::Totals;
    use super::*;

    #[test]
    fn every_value_from_the_log_is_escaped() {
        let evil = "<script>alert(\"x\")</script>&'";
        let mut totals = Totals::default();
        totals.count_incident(evil);
        totals.count_flow(evil, "US");
        let report = RunReport {
            origin: evil.into(),
            checkpoint: CheckpointInfo {
                size: 1,
                root: "r".into(),
                note: evil.into(),
            },
            policy_sha256: "00".into(),
            entries_checked: Checked {
                from: 0,
                this_run: 1,
                total: 1,
            },
            incidents: vec![IncidentInfo {
                index: 0,
                rule: evil.into(),
                reason: evil.into(),
                event: evil.into(),
                bundle: format!("incidents/0-{evil}"),
            }],
            summary: Summary {
                totals,
                incidents_this_run_by_rule: [(evil.to_owned(), 1)].into(),
                releases_this_run: vec![],
            },
        };
        let page = render(&report);
        assert!(!page.contains("<script"), "{page}");
        assert!(!page.contains("\"x\""), "{page}");
        assert!(page.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;"));
        assert!(page.contains("1 incidents in the entries checked"));
    }
}
