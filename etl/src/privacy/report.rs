//! `registrar audit report`: the audit log for a privacy officer, as text, CSV, JSON or a
//! self-contained HTML page.
//!
//! Entries record, per action, a `rules` object of counts (what each de-identification rule
//! removed or replaced); the report lists the entries and sums those counts per action and
//! key.

use anyhow::Result;
use chrono::{DateTime, Utc};
use registrar_anonymizer::audit::StoredEntry;
use serde::Serialize;
use std::collections::BTreeMap;

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    pub seq: i64,
    pub time: DateTime<Utc>,
    pub os_user: String,
    pub db_role: String,
    pub action: String,
    pub key_id: Option<String>,
    pub run_id: Option<i64>,
    pub source: Option<String>,
    pub summary: String,
    pub detail: serde_json::Value,
}

/// The report: lines and totals.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub since: Option<DateTime<Utc>>,
    pub generated_at: DateTime<Utc>,
    pub entries: usize,
    pub per_action: BTreeMap<String, u64>,
    pub keys_used: BTreeMap<String, u64>,
    /// action -> rule -> total count
    pub rule_totals: BTreeMap<String, BTreeMap<String, i64>>,
    pub lines: Vec<Line>,
    /// The head of the whole log when the report was made (seq, entry hash): keep it outside
    /// the database; a later log that lacks it was cut.
    pub head: Option<(i64, String)>,
}

fn summarise(action: &str, d: &serde_json::Value) -> String {
    let mut parts = Vec::new();
    if let Some(rules) = d.get("rules").and_then(|r| r.as_object()) {
        for (k, v) in rules {
            if let Some(n) = v.as_i64() {
                if n != 0 {
                    parts.push(format!("{}: {n}", k.replace('_', " ")));
                }
            }
        }
    }
    for k in [
        "why",
        "dates",
        "reason",
        "file",
        "person_id",
        "found",
        "old_key_id",
        "new_key_id",
        "checkpoint_seq",
    ] {
        if let Some(v) = d.get(k) {
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            parts.push(format!("{}: {v}", k.replace('_', " ")));
        }
    }
    if parts.is_empty() {
        action.to_string()
    } else {
        parts.join("; ")
    }
}

/// Collect the report from a stream of entries.
pub fn build(
    entries: impl IntoIterator<Item = StoredEntry>,
    since: Option<DateTime<Utc>>,
) -> Result<Report> {
    let mut r = Report {
        since,
        generated_at: Utc::now(),
        entries: 0,
        per_action: BTreeMap::new(),
        keys_used: BTreeMap::new(),
        rule_totals: BTreeMap::new(),
        lines: Vec::new(),
        head: None,
    };
    for s in entries {
        let e = s.entry;
        let detail: serde_json::Value =
            serde_json::from_str(&e.detail).unwrap_or(serde_json::Value::String(e.detail.clone()));
        r.entries += 1;
        *r.per_action.entry(e.action.clone()).or_default() += 1;
        if let Some(k) = &e.key_id {
            *r.keys_used.entry(k.clone()).or_default() += 1;
        }
        if let Some(rules) = detail.get("rules").and_then(|x| x.as_object()) {
            let totals = r.rule_totals.entry(e.action.clone()).or_default();
            for (k, v) in rules {
                if let Some(n) = v.as_i64() {
                    *totals.entry(k.clone()).or_default() += n;
                }
            }
        }
        r.lines.push(Line {
            seq: e.seq,
            time: e.logged_at,
            os_user: e.actor_os_user,
            db_role: e.actor_db_role,
            summary: summarise(&e.action, &detail),
            action: e.action,
            key_id: e.key_id,
            run_id: e.run_id,
            source: e.locator_hash.map(|h| h.chars().take(12).collect()),
            detail,
        });
    }
    Ok(r)
}

/// Plain text for the terminal.
pub fn text(r: &Report) -> String {
    let mut o = String::new();
    o.push_str(&format!(
        "Audit report{} - {} entries\n\n",
        r.since
            .map(|s| format!(" since {}", s.format("%Y-%m-%d")))
            .unwrap_or_default(),
        r.entries
    ));
    if let Some((seq, hash)) = &r.head {
        o.push_str(&format!(
            "Head of the log: entry #{seq}, hash {hash} (keep this line outside the database)\n\n"
        ));
    }
    o.push_str("Actions:\n");
    for (a, n) in &r.per_action {
        o.push_str(&format!("  {a:<30} {n:>8}\n"));
    }
    o.push_str("Keys used:\n");
    for (k, n) in &r.keys_used {
        o.push_str(&format!("  {k:<30} {n:>8} entries\n"));
    }
    if !r.rule_totals.is_empty() {
        o.push_str("Values removed or replaced, per rule:\n");
        for (a, rules) in &r.rule_totals {
            o.push_str(&format!("  {a}\n"));
            for (k, n) in rules {
                o.push_str(&format!("    {:<36} {n:>10}\n", k.replace('_', " ")));
            }
        }
    }
    o.push_str("\nEntries:\n");
    for l in &r.lines {
        o.push_str(&format!(
            "  #{:<6} {}  {:<28} key {:<20} by {}/{}  {}\n",
            l.seq,
            l.time.format("%Y-%m-%d %H:%M:%S"),
            l.action,
            l.key_id.as_deref().unwrap_or("-"),
            l.os_user,
            l.db_role,
            l.summary
        ));
    }
    o
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// CSV, one row per entry.
pub fn csv(r: &Report) -> String {
    let mut o =
        String::from("seq,time_utc,os_user,db_role,action,key_id,run_id,source_hash,summary\n");
    for l in &r.lines {
        let fields = [
            l.seq.to_string(),
            l.time.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
            l.os_user.clone(),
            l.db_role.clone(),
            l.action.clone(),
            l.key_id.clone().unwrap_or_default(),
            l.run_id.map(|x| x.to_string()).unwrap_or_default(),
            l.source.clone().unwrap_or_default(),
            l.summary.clone(),
        ];
        let row: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        o.push_str(&row.join(","));
        o.push('\n');
    }
    o
}

/// Escape text for HTML.
pub fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A self-contained HTML page (no external assets).
pub fn html(r: &Report) -> String {
    let mut o = String::new();
    o.push_str("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>registrar audit report</title><style>\
body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}\
td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left;font-size:.9em}th{background:#f0f0f0}\
td.n{text-align:right}h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.5em}</style></head><body>");
    o.push_str(&format!(
        "<h1>Audit report{}</h1><p>{} entries; generated {} UTC.</p>",
        r.since
            .map(|s| format!(" since {}", s.format("%Y-%m-%d")))
            .unwrap_or_default(),
        r.entries,
        r.generated_at.format("%Y-%m-%d %H:%M")
    ));
    if let Some((seq, hash)) = &r.head {
        o.push_str(&format!(
            "<p>Head of the log: entry #{seq}, hash <code>{}</code> (keep this line outside the database).</p>",
            html_escape(hash)
        ));
    }
    o.push_str("<h2>Actions</h2><table><tr><th>action</th><th>entries</th></tr>");
    for (a, n) in &r.per_action {
        o.push_str(&format!(
            "<tr><td>{}</td><td class=n>{n}</td></tr>",
            html_escape(a)
        ));
    }
    o.push_str("</table><h2>Keys used</h2><table><tr><th>key id</th><th>entries</th></tr>");
    for (k, n) in &r.keys_used {
        o.push_str(&format!(
            "<tr><td>{}</td><td class=n>{n}</td></tr>",
            html_escape(k)
        ));
    }
    o.push_str("</table><h2>Values removed or replaced, per rule</h2><table><tr><th>action</th><th>rule</th><th>count</th></tr>");
    for (a, rules) in &r.rule_totals {
        for (k, n) in rules {
            o.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td class=n>{n}</td></tr>",
                html_escape(a),
                html_escape(&k.replace('_', " "))
            ));
        }
    }
    o.push_str("</table><h2>Entries</h2><table><tr><th>#</th><th>time (UTC)</th><th>action</th><th>key</th><th>by</th><th>source</th><th>what</th></tr>");
    for l in &r.lines {
        o.push_str(&format!(
            "<tr><td class=n>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}/{}</td><td>{}</td><td>{}</td></tr>",
            l.seq,
            l.time.format("%Y-%m-%d %H:%M:%S"),
            html_escape(&l.action),
            html_escape(l.key_id.as_deref().unwrap_or("-")),
            html_escape(&l.os_user),
            html_escape(&l.db_role),
            html_escape(l.source.as_deref().unwrap_or("-")),
            html_escape(&l.summary)
        ));
    }
    o.push_str("</table></body></html>\n");
    o
}
