//! Federated cohorts: aggregate-only answers that leave a node, and the coordinator that
//! asks every node the same question and pools the answers.
//!
//! Node side, answers are **released, then served**: `registrar federation publish` (module
//! [`release`]) computes every askable cohort's tables and statistics together, chooses the
//! suppressions for the whole release and verifies them against the integer programme an
//! attacker would solve (module [`protection`]), and stores the release with its audit-log
//! entry in one transaction. The SECURITY DEFINER function `federation.cohort_summary(name)`
//! (migration `federation_release`) returns the latest release's answer and computes nothing,
//! so no caller can bypass the policy, and a caller's rollback cannot hide an answer: the
//! release it reads was audited when it was published. This module also configures the
//! policy, exports an answer as a hashed file for nodes that cannot open a port, and, on the
//! coordinator, connects to the nodes (libpq, so TLS is the usual `sslmode` / `sslrootcert`),
//! checks their schema version, and pools:
//!
//! - counts are summed; a cell suppressed at some node is pooled from the other nodes and
//!   marked incomplete (a lower bound), never estimated;
//! - means are pooled weighted by their counts where every node published them (each node's
//!   mean is a band midpoint, so the pooled mean is within half a band);
//! - quartiles cannot be pooled from quartiles: they are reported per node.
//!
//! A node that is down, answers with another schema version, or (for files) whose hash does
//! not match is reported by name and left out of the totals, never silently.

pub mod protection;
pub mod release;

use crate::privacy::audit::{self, Record};
use anyhow::{bail, Context, Result};
use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};
use registrar_anonymizer::audit::canonical_json;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `format` of a node's summary (made by `registrar federation publish`).
pub const SUMMARY_FORMAT: &str = "registrar-federation-summary-v1";
/// `format` of an exported summary file.
pub const EXPORT_FORMAT: &str = "registrar-federation-export-v1";

/// The node's disclosure policy, as stored in `federation.policy`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Policy {
    pub node_id: String,
    pub min_cell: i32,
}

/// Read the policy.
pub fn policy(client: &mut postgres::Client) -> Result<Policy> {
    let r = client.query_one("SELECT node_id, min_cell FROM federation.policy", &[])?;
    Ok(Policy {
        node_id: r.get(0),
        min_cell: r.get(1),
    })
}

/// Change the node id and/or minimum cell size; the change is written to the audit log in
/// the same transaction. Returns the policy in force afterwards.
pub fn configure(
    client: &mut postgres::Client,
    node_id: Option<&str>,
    min_cell: Option<i32>,
) -> Result<Policy> {
    if let Some(id) = node_id {
        if id.is_empty()
            || id.len() > 64
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            bail!("node id `{id}`: use 1 to 64 letters, digits, '.', '_' or '-'");
        }
    }
    if let Some(k) = min_cell {
        if !(1..=1000).contains(&k) {
            bail!("minimum cell size {k}: use 1 to 1000 (5 or more is usual)");
        }
    }
    let before = policy(client)?;
    let mut tx = client.transaction()?;
    tx.execute(
        "UPDATE federation.policy SET node_id = coalesce($1, node_id), min_cell = coalesce($2, min_cell)",
        &[&node_id, &min_cell],
    )?;
    let r = tx.query_one("SELECT node_id, min_cell FROM federation.policy", &[])?;
    let after = Policy {
        node_id: r.get(0),
        min_cell: r.get(1),
    };
    if after != before {
        audit::append(
            &mut tx,
            &Record {
                action: audit::action::CONFIGURATION,
                run_id: None,
                locator_hash: None,
                key_id: None,
                detail: serde_json::json!({
                    "setting": "federation disclosure policy",
                    "before": before,
                    "after": after,
                }),
            },
        )?;
    }
    tx.commit()?;
    Ok(after)
}

/// The summary of one cohort, as this node answers the coordinator: the latest published
/// release's answer (its release is in the audit log).
pub fn summary(client: &mut postgres::Client, cohort: &str) -> Result<Value> {
    let row = client
        .query_one("SELECT federation.cohort_summary($1)::text", &[&cohort])
        .map_err(|e| anyhow::anyhow!("{}", crate::db::pg_message(&e)))
        .with_context(|| format!("cohort `{cohort}`"))?;
    let text: String = row.get(0);
    Ok(serde_json::from_str(&text)?)
}

/// The askable cohorts of this node.
pub fn cohorts(client: &mut postgres::Client) -> Result<Vec<(String, String)>> {
    Ok(client
        .query("SELECT name, description FROM federation.cohorts()", &[])?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// An exported summary file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportFile {
    pub format: String,
    pub node_id: String,
    pub exported_at: String,
    pub schema_version: String,
    pub cohort: String,
    pub summary: Value,
    /// SHA-256 (hex) of the canonical JSON of every other field.
    pub sha256: String,
}

fn export_hash(v: &Value) -> String {
    let mut v = v.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("sha256");
    }
    hex::encode(Sha256::digest(canonical_json(&v).as_bytes()))
}

/// Write the summary of `cohort` to `out` with node id, time, schema version and hash; the
/// hash is also written to the node's audit log, so an altered file can be proved altered
/// against the node's own tamper-evident record. Written atomically.
pub fn export(client: &mut postgres::Client, cohort: &str, out: &Path) -> Result<ExportFile> {
    let summary = summary(client, cohort)?;
    let field = |k: &str| {
        summary
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let mut file = ExportFile {
        format: EXPORT_FORMAT.into(),
        node_id: field("node_id"),
        exported_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        schema_version: field("schema_version"),
        cohort: cohort.to_string(),
        summary,
        sha256: String::new(),
    };
    file.sha256 = export_hash(&serde_json::to_value(&file)?);
    let text = serde_json::to_string_pretty(&file)? + "\n";
    audit::append_now(
        client,
        &Record {
            action: "federation export",
            run_id: None,
            locator_hash: None,
            key_id: None,
            detail: serde_json::json!({
                "cohort": cohort,
                "node_id": file.node_id,
                "schema_version": file.schema_version,
                "sha256": file.sha256,
            }),
        },
    )?;
    crate::files::write_atomically(out, text.as_bytes())?;
    Ok(file)
}

/// Read and check an exported file: format and hash.
pub fn read_export(path: &Path) -> Result<ExportFile> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let v: Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a JSON export file", path.display()))?;
    let file: ExportFile = serde_json::from_value(v.clone())
        .with_context(|| format!("{}: not a registrar federation export", path.display()))?;
    if file.format != EXPORT_FORMAT {
        bail!(
            "{}: format `{}`, expected `{EXPORT_FORMAT}`",
            path.display(),
            file.format
        );
    }
    let computed = export_hash(&v);
    if computed != file.sha256 {
        bail!(
            "{}: altered: its content does not match its sha256 (stored {}, computed {computed})",
            path.display(),
            file.sha256
        );
    }
    Ok(file)
}

// ---------------------------------------------------------------------------------------
// Coordinator
// ---------------------------------------------------------------------------------------

/// `nodes.toml`: the nodes a coordinator asks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodesFile {
    #[serde(rename = "node", default)]
    pub nodes: Vec<NodeConfig>,
}

/// One node of `nodes.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// How the node is named in results.
    pub id: String,
    /// postgres:// URL, normally as the node's `registrar_federation` role. Passwords belong
    /// in a pgpass file (`?passfile=...`), not here.
    pub url: String,
    /// libpq sslmode: disable, prefer, require, verify-ca, verify-full.
    #[serde(default)]
    pub sslmode: Option<String>,
    /// CA certificate file for verify-ca / verify-full.
    #[serde(default)]
    pub sslrootcert: Option<PathBuf>,
    /// Seconds to wait for the connection (default 10).
    #[serde(default)]
    pub connect_timeout: Option<u32>,
}

impl NodesFile {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let f: NodesFile =
            toml::from_str(&text).with_context(|| format!("{}: invalid", path.display()))?;
        if f.nodes.is_empty() {
            bail!("{}: no [[node]] entries", path.display());
        }
        let mut seen = std::collections::BTreeSet::new();
        for n in &f.nodes {
            if !seen.insert(n.id.as_str()) {
                bail!("{}: node id `{}` appears twice", path.display(), n.id);
            }
            if let Some(m) = &n.sslmode {
                if ![
                    "disable",
                    "allow",
                    "prefer",
                    "require",
                    "verify-ca",
                    "verify-full",
                ]
                .contains(&m.as_str())
                {
                    bail!("{}: node `{}`: unknown sslmode `{m}`", path.display(), n.id);
                }
            }
        }
        Ok(f)
    }
}

impl NodeConfig {
    /// The libpq connection URL with the TLS and timeout options applied.
    fn conninfo(&self) -> Result<String> {
        let mut u = url::Url::parse(&self.url)
            .with_context(|| format!("node `{}`: invalid url", self.id))?;
        let existing: Vec<String> = u.query_pairs().map(|(k, _)| k.into_owned()).collect();
        {
            let mut q = u.query_pairs_mut();
            if let Some(m) = &self.sslmode {
                q.append_pair("sslmode", m);
            }
            if let Some(c) = &self.sslrootcert {
                q.append_pair("sslrootcert", &c.display().to_string());
            }
            if !existing.iter().any(|k| k == "connect_timeout") {
                q.append_pair(
                    "connect_timeout",
                    &self.connect_timeout.unwrap_or(10).to_string(),
                );
            }
        }
        Ok(u.to_string())
    }

    fn redacted(&self) -> String {
        match url::Url::parse(&self.url) {
            Ok(mut u) => {
                if u.password().is_some() {
                    let _ = u.set_password(Some("***"));
                }
                u.to_string()
            }
            Err(_) => "(invalid url)".into(),
        }
    }
}

#[derive(QueryableByName)]
struct TextRow {
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    v: Option<String>,
}

fn query_text(conn: &mut PgConnection, sql: &str, arg: Option<&str>) -> Result<Option<String>> {
    let rows: Vec<TextRow> = match arg {
        Some(a) => diesel::sql_query(sql)
            .bind::<diesel::sql_types::Text, _>(a)
            .load(conn)?,
        None => diesel::sql_query(sql).load(conn)?,
    };
    Ok(rows.into_iter().next().and_then(|r| r.v))
}

/// What happened when a node was asked (or a file read).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum NodeOutcome {
    Answered { summary: Value },
    Unavailable { error: String },
    SchemaMismatch { found: String, expected: String },
    Altered { error: String },
    Failed { error: String },
}

/// One node's answer.
#[derive(Debug, Clone, Serialize)]
pub struct NodeAnswer {
    pub node: String,
    /// Where it came from (redacted URL or file).
    pub source: String,
    #[serde(flatten)]
    pub outcome: NodeOutcome,
}

impl NodeAnswer {
    fn summary(&self) -> Option<&Value> {
        match &self.outcome {
            NodeOutcome::Answered { summary } => Some(summary),
            _ => None,
        }
    }
}

/// The schema version this build of registrar pools.
pub fn expected_schema_version() -> Result<String> {
    crate::db::latest_migration_version()
}

fn connect(node: &NodeConfig) -> std::result::Result<PgConnection, NodeOutcome> {
    let info = node.conninfo().map_err(|e| NodeOutcome::Failed {
        error: format!("{e:#}"),
    })?;
    let mut conn = PgConnection::establish(&info).map_err(|e| NodeOutcome::Unavailable {
        error: e.to_string().trim().to_string(),
    })?;
    // Read-only: the node serves answers it has already published and audited.
    conn.batch_execute("SET statement_timeout = '10min'")
        .map_err(|e| NodeOutcome::Failed {
            error: e.to_string(),
        })?;
    Ok(conn)
}

fn check_version(conn: &mut PgConnection, expected: &str) -> std::result::Result<(), NodeOutcome> {
    let found = query_text(conn, "SELECT federation.schema_version() AS v", None).map_err(|e| {
        NodeOutcome::Failed {
            error: format!("federation.schema_version(): {e:#}"),
        }
    })?;
    let found = found.unwrap_or_default();
    if found != expected {
        return Err(NodeOutcome::SchemaMismatch {
            found,
            expected: expected.to_string(),
        });
    }
    Ok(())
}

/// Ask one node for the summary of `cohort`.
pub fn ask(node: &NodeConfig, cohort: &str, expected: &str) -> NodeAnswer {
    let outcome = (|| {
        let mut conn = connect(node)?;
        check_version(&mut conn, expected)?;
        let text = query_text(
            &mut conn,
            "SELECT federation.cohort_summary($1)::text AS v",
            Some(cohort),
        )
        .map_err(|e| NodeOutcome::Failed {
            error: format!("{e:#}"),
        })?;
        let summary: Value =
            serde_json::from_str(text.as_deref().unwrap_or("null")).map_err(|e| {
                NodeOutcome::Failed {
                    error: format!("the node's answer is not JSON: {e}"),
                }
            })?;
        check_summary(&summary, cohort, expected)?;
        Ok::<_, NodeOutcome>(NodeOutcome::Answered { summary })
    })()
    .unwrap_or_else(|o| o);
    NodeAnswer {
        node: node.id.clone(),
        source: node.redacted(),
        outcome,
    }
}

fn check_summary(
    summary: &Value,
    cohort: &str,
    expected: &str,
) -> std::result::Result<(), NodeOutcome> {
    let get = |k: &str| summary.get(k).and_then(Value::as_str).unwrap_or("");
    if get("format") != SUMMARY_FORMAT {
        return Err(NodeOutcome::Failed {
            error: format!(
                "summary format `{}`, expected `{SUMMARY_FORMAT}`",
                get("format")
            ),
        });
    }
    if get("schema_version") != expected {
        return Err(NodeOutcome::SchemaMismatch {
            found: get("schema_version").to_string(),
            expected: expected.to_string(),
        });
    }
    if get("cohort") != cohort {
        return Err(NodeOutcome::Failed {
            error: format!("answered for cohort `{}`, not `{cohort}`", get("cohort")),
        });
    }
    Ok(())
}

/// The askable cohorts per node (the coordinator's list comes from the nodes).
pub fn list_cohorts(nodes: &NodesFile) -> Vec<(String, std::result::Result<Vec<String>, String>)> {
    nodes
        .nodes
        .iter()
        .map(|n| {
            let r = (|| {
                let mut conn = connect(n).map_err(|o| outcome_text(&o))?;
                #[derive(QueryableByName)]
                struct Name {
                    #[diesel(sql_type = diesel::sql_types::Text)]
                    name: String,
                }
                let rows: Vec<Name> = diesel::sql_query("SELECT name FROM federation.cohorts()")
                    .load(&mut conn)
                    .map_err(|e| e.to_string())?;
                Ok(rows.into_iter().map(|r| r.name).collect())
            })();
            (n.id.clone(), r)
        })
        .collect()
}

/// Read exported files as node answers (hash and schema version checked).
pub fn answers_from_files(
    files: &[PathBuf],
    cohort: Option<&str>,
    expected: &str,
) -> Vec<NodeAnswer> {
    let mut out: Vec<NodeAnswer> = Vec::new();
    for f in files {
        let source = f.display().to_string();
        let answer = match read_export(f) {
            Err(e) => {
                let msg = format!("{e:#}");
                let outcome = if msg.contains("altered") {
                    NodeOutcome::Altered { error: msg }
                } else {
                    NodeOutcome::Failed { error: msg }
                };
                NodeAnswer {
                    node: f
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    source,
                    outcome,
                }
            }
            Ok(file) => {
                let want = cohort.unwrap_or(&file.cohort).to_string();
                let outcome = match check_summary(&file.summary, &want, expected) {
                    Err(o) => o,
                    Ok(())
                        if out
                            .iter()
                            .any(|a| a.node == file.node_id && a.summary().is_some()) =>
                    {
                        NodeOutcome::Failed {
                            error: format!(
                                "a second file from node `{}`; only the first is pooled",
                                file.node_id
                            ),
                        }
                    }
                    Ok(()) => NodeOutcome::Answered {
                        summary: file.summary,
                    },
                };
                NodeAnswer {
                    node: file.node_id,
                    source,
                    outcome,
                }
            }
        };
        out.push(answer);
    }
    out
}

/// One pooled cell.
#[derive(Debug, Clone, Serialize)]
pub struct PooledCell {
    pub key: Map<String, Value>,
    /// Per node (in node order): the published count, or None when suppressed there or when
    /// the node did not answer.
    pub per_node: Vec<Option<i64>>,
    /// Sum of the published counts.
    pub n: i64,
    /// False when some answering node suppressed this cell: `n` is then a lower bound.
    pub complete: bool,
    pub suppressed_at: Vec<String>,
}

/// One pooled table.
#[derive(Debug, Clone, Serialize)]
pub struct PooledTable {
    pub name: String,
    pub dimensions: Vec<String>,
    pub cells: Vec<PooledCell>,
}

/// One statistic, per node and pooled where valid.
#[derive(Debug, Clone, Serialize)]
pub struct PooledStat {
    pub variable: String,
    pub stratum: Map<String, Value>,
    /// Per node (in node order): the node's published statistic, or None.
    pub per_node: Vec<Option<Value>>,
    /// Count-weighted mean when every answering node published this statistic.
    pub pooled_mean: Option<f64>,
    pub pooled_n: Option<i64>,
}

/// The coordinator's result.
#[derive(Debug, Clone, Serialize)]
pub struct Pooled {
    pub cohort: String,
    pub schema_version: String,
    pub nodes: Vec<NodeAnswer>,
    /// Ids of the nodes whose answers are pooled, in column order.
    pub pooled_nodes: Vec<String>,
    pub tables: Vec<PooledTable>,
    pub statistics: Vec<PooledStat>,
}

impl Pooled {
    /// Whether every node answered.
    pub fn all_answered(&self) -> bool {
        self.nodes.iter().all(|a| a.summary().is_some())
    }
}

fn key_text(k: &Map<String, Value>) -> String {
    canonical_json(&Value::Object(k.clone()))
}

/// Pool the answers of the nodes.
pub fn pool(cohort: &str, schema_version: &str, nodes: Vec<NodeAnswer>) -> Pooled {
    let answered: Vec<(&str, &Value)> = nodes
        .iter()
        .filter_map(|a| a.summary().map(|s| (a.node.as_str(), s)))
        .collect();
    let width = answered.len();
    let mut tables: Vec<PooledTable> = Vec::new();
    let mut index: BTreeMap<(String, String), (usize, usize)> = BTreeMap::new();
    let mut stats: Vec<PooledStat> = Vec::new();
    let mut stat_index: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (col, (node, s)) in answered.iter().enumerate() {
        for t in s
            .get("tables")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = t
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let ti = match tables.iter().position(|x| x.name == name) {
                Some(i) => i,
                None => {
                    tables.push(PooledTable {
                        name: name.clone(),
                        dimensions: t
                            .get("dimensions")
                            .and_then(Value::as_array)
                            .map(|d| {
                                d.iter()
                                    .filter_map(|x| x.as_str().map(String::from))
                                    .collect()
                            })
                            .unwrap_or_default(),
                        cells: Vec::new(),
                    });
                    tables.len() - 1
                }
            };
            for c in t
                .get("cells")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let key = c
                    .get("key")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                let kt = key_text(&key);
                let ci = *index.entry((name.clone(), kt)).or_insert_with(|| {
                    tables[ti].cells.push(PooledCell {
                        key: key.clone(),
                        per_node: vec![Some(0); width],
                        n: 0,
                        complete: true,
                        suppressed_at: vec![],
                    });
                    (ti, tables[ti].cells.len() - 1)
                });
                let cell = &mut tables[ci.0].cells[ci.1];
                let suppressed = c
                    .get("suppressed")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                match c.get("n").and_then(Value::as_i64) {
                    Some(n) if !suppressed => {
                        cell.per_node[col] = Some(n);
                        cell.n += n;
                    }
                    _ => {
                        cell.per_node[col] = None;
                        cell.complete = false;
                        cell.suppressed_at.push(node.to_string());
                    }
                }
            }
        }
        for st in s
            .get("statistics")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let variable = st
                .get("variable")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let stratum = st
                .get("stratum")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let k = (variable.clone(), key_text(&stratum));
            let si = *stat_index.entry(k).or_insert_with(|| {
                stats.push(PooledStat {
                    variable,
                    stratum,
                    per_node: vec![None; width],
                    pooled_mean: None,
                    pooled_n: None,
                });
                stats.len() - 1
            });
            if !st
                .get("suppressed")
                .and_then(Value::as_bool)
                .unwrap_or(false)
            {
                stats[si].per_node[col] = Some(st.clone());
            }
        }
    }
    for t in &mut tables {
        if t.dimensions.first().map(String::as_str) == Some("diagnosis_year") {
            t.cells.sort_by_key(|c| key_text(&c.key));
        }
    }
    for s in &mut stats {
        let published: Option<Vec<(f64, i64)>> = s
            .per_node
            .iter()
            .map(|v| {
                let v = v.as_ref()?;
                Some((v.get("mean")?.as_f64()?, v.get("n")?.as_i64()?))
            })
            .collect();
        if let Some(p) = published.filter(|p| !p.is_empty()) {
            let n: i64 = p.iter().map(|x| x.1).sum();
            if n > 0 {
                let m = p.iter().map(|(m, k)| m * *k as f64).sum::<f64>() / n as f64;
                s.pooled_mean = Some((m * 10.0).round() / 10.0);
                s.pooled_n = Some(n);
            }
        }
    }
    Pooled {
        cohort: cohort.to_string(),
        schema_version: schema_version.to_string(),
        pooled_nodes: answered.iter().map(|(n, _)| n.to_string()).collect(),
        nodes,
        tables,
        statistics: stats,
    }
}

fn outcome_text(o: &NodeOutcome) -> String {
    match o {
        NodeOutcome::Answered { summary } => format!(
            "answered (n = {})",
            summary
                .get("n")
                .and_then(Value::as_i64)
                .map(|n| n.to_string())
                .unwrap_or_else(|| "suppressed".into())
        ),
        NodeOutcome::Unavailable { error } => format!("UNAVAILABLE: {error}"),
        NodeOutcome::SchemaMismatch { found, expected } => {
            format!("NOT POOLED: schema version {found}, this coordinator pools {expected}")
        }
        NodeOutcome::Altered { error } => format!("NOT POOLED: {error}"),
        NodeOutcome::Failed { error } => format!("FAILED: {error}"),
    }
}

/// A cell's categories in the order of its table's dimensions ("all" for the total).
fn key_label(k: &Map<String, Value>, dims: &[String]) -> String {
    if k.is_empty() {
        return "all".into();
    }
    let text = |v: &Value| {
        v.as_str()
            .map(String::from)
            .unwrap_or_else(|| v.to_string())
    };
    let mut parts: Vec<String> = dims.iter().filter_map(|d| k.get(d).map(text)).collect();
    if parts.len() != k.len() {
        parts = k.values().map(text).collect();
    }
    parts.join(" / ")
}

/// The result as terminal text: node status, then every table with a column per node and the
/// pooled column (`*` suppressed at that node; `N+` a lower bound).
pub fn render_text(p: &Pooled) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "cohort {} (schema {}): {} of {} nodes pooled",
        p.cohort,
        p.schema_version,
        p.pooled_nodes.len(),
        p.nodes.len()
    );
    for a in &p.nodes {
        let _ = writeln!(s, "  {:<20} {}", a.node, outcome_text(&a.outcome));
    }
    let w = 12;
    for t in &p.tables {
        let _ = writeln!(
            s,
            "\n{} ({})",
            t.name,
            if t.dimensions.is_empty() {
                "all patients".to_string()
            } else {
                t.dimensions.join(" x ")
            }
        );
        let _ = write!(s, "  {:<34}", "");
        for n in &p.pooled_nodes {
            let _ = write!(s, "{:>w$}", truncate(n, w - 1));
        }
        let _ = writeln!(s, "{:>w$}", "pooled");
        for c in &t.cells {
            let _ = write!(
                s,
                "  {:<34}",
                truncate(&key_label(&c.key, &t.dimensions), 34)
            );
            for v in &c.per_node {
                let cell = v.map(|n| n.to_string()).unwrap_or_else(|| "*".into());
                let _ = write!(s, "{cell:>w$}");
            }
            let pooled = if c.complete {
                c.n.to_string()
            } else {
                format!("{}+", c.n)
            };
            let _ = writeln!(s, "{pooled:>w$}");
        }
    }
    if !p.statistics.is_empty() {
        let _ = writeln!(
            s,
            "\nstatistics (median [q1-q3] per node; pooled mean where every node published)"
        );
        for st in &p.statistics {
            let _ = write!(
                s,
                "  {:<18} {:<20}",
                st.variable,
                truncate(&key_label(&st.stratum, &[]), 20)
            );
            for v in &st.per_node {
                let cell = match v {
                    Some(v) => format!(
                        "{} [{}-{}]",
                        num(v.get("median")),
                        num(v.get("q1")),
                        num(v.get("q3"))
                    ),
                    None => "*".into(),
                };
                let _ = write!(s, "{cell:>22}");
            }
            match st.pooled_mean {
                Some(m) => {
                    let _ = writeln!(s, "   mean {m} (n {})", st.pooled_n.unwrap_or(0));
                }
                None => {
                    let _ = writeln!(s, "   mean not poolable");
                }
            }
        }
    }
    let _ = writeln!(
        s,
        "\n* suppressed by the node's disclosure policy; N+ pooled from the nodes that published it (a lower bound)"
    );
    s
}

fn num(v: Option<&Value>) -> String {
    v.map(|x| x.to_string()).unwrap_or_else(|| "?".into())
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n.saturating_sub(1)).collect::<String>() + "~"
    }
}

/// The result as CSV, one line per table, cell and node plus a `pooled` line.
pub fn render_csv(p: &Pooled) -> Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["table", "cell", "node", "n", "suppressed", "complete"])?;
    for t in &p.tables {
        for c in &t.cells {
            let label = key_label(&c.key, &t.dimensions);
            for (node, v) in p.pooled_nodes.iter().zip(&c.per_node) {
                let n = v.map(|n| n.to_string()).unwrap_or_default();
                w.write_record([&t.name, &label, node, &n, &v.is_none().to_string(), ""])?;
            }
            w.write_record([
                &t.name,
                &label,
                "pooled",
                &c.n.to_string(),
                "false",
                &c.complete.to_string(),
            ])?;
        }
    }
    Ok(String::from_utf8(w.into_inner()?)?)
}
