//! FHIR imports: endpoint pulls (paged, incremental, authenticated) and Bulk Data folders,
//! through FHIR mapping files (`format = "fhir"`) and the one load path every source shares
//! ([`crate::import::load_unit`], with an [`ImportContext`]).
//!
//! A resource becomes one source row: its `[fhir.columns]` paths, plus the identifiers of the
//! Patient it is about (read from the Patient resource, in memory only), which the mapping's
//! `[person]` section pseudonymises like any other column, so a FHIR resource and a CSV row of
//! the same person share one `person_id` and one date shift. Each row carries the keyed hash
//! of `server | mapping | Type/id`: a resource that comes back updated replaces the rows it
//! produced before, one that was deleted has them removed.
//!
//! Endpoint pulls: one transaction per search page; the watermark (`registry.fhir_watermark`)
//! advances after the last page has committed, to the server's clock at the start of the pull
//! (less two seconds), so nothing updated during a pull is missed and a pull that dies is
//! simply repeated. Deletions come from the type's `_history` since the watermark.

use crate::import::{load_unit, record_key, ImportContext, Unit, UnitOutcome};
use crate::ledger::{FileIdentity, Ledger, RecordKey, Replace, UnitCounts, UnitKind};
use crate::mapping::check::Compiled;
use crate::mapping::Format;
use crate::sources::{FileError, RowResult, RowSource, SourceRow};
use anyhow::{bail, Context, Result};
use registrar_anonymizer::pseudonym::Pseudonymiser;
use registrar_fhir::client::{Capabilities, Client, Support};
use registrar_fhir::ndjson::{Limits as NdjsonLimits, Line, NdjsonError, NdjsonReader};
use registrar_fhir::path::{Path as FhirPath, Resolver};
use registrar_fhir::resource::{from_value, parse_resource, Resource, ResourceError};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How an endpoint source authenticates, as configured (`token_file`, `token_env` or a
/// `smart` table; at most one).
#[derive(Debug, Clone, Default)]
pub struct AuthSpec {
    pub token_file: Option<std::path::PathBuf>,
    pub token_env: Option<String>,
    pub smart: Option<SmartSpec>,
}

/// SMART Backend Services settings of an endpoint source.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmartSpec {
    /// The client id the server registered.
    pub client_id: String,
    /// The private key (PEM, PKCS#8 or PKCS#1; RSA signs RS384, EC P-384 signs ES384), mode 0600.
    pub key_file: std::path::PathBuf,
    /// Scopes requested (default `system/*.read`).
    pub scope: Option<String>,
    /// The token endpoint (default: from the server's `.well-known/smart-configuration`).
    pub token_url: Option<String>,
    /// The key id the server registered (default: the key's RFC 7638 thumbprint, which
    /// `registrar smart-key jwks` prints).
    pub kid: Option<String>,
}

impl AuthSpec {
    /// The client's authentication: tokens and keys are read here (and checked: mode 0600,
    /// usable key), so a misconfigured source fails before the run starts.
    pub fn resolve(&self) -> Result<registrar_fhir::client::Auth> {
        use registrar_fhir::client::Auth;
        let given = [
            self.token_file.is_some(),
            self.token_env.is_some(),
            self.smart.is_some(),
        ];
        if given.iter().filter(|g| **g).count() > 1 {
            bail!("give one of a token file, a token variable or SMART settings, not several");
        }
        if let Some(s) = &self.smart {
            let mut key = registrar_fhir::smart::SigningKey::load(&s.key_file)?;
            if let Some(kid) = &s.kid {
                key = key.with_kid(kid.clone());
            }
            let auth =
                registrar_fhir::smart::SmartAuth::new(registrar_fhir::smart::SmartOptions {
                    client_id: s.client_id.clone(),
                    key,
                    scope: s
                        .scope
                        .clone()
                        .unwrap_or_else(|| registrar_fhir::smart::DEFAULT_SCOPE.to_string()),
                    token_url: s.token_url.clone(),
                })?;
            return Ok(Auth::Smart(std::sync::Arc::new(auth)));
        }
        Ok(
            match read_token(self.token_file.as_deref(), self.token_env.as_deref())? {
                Some(t) => Auth::Bearer(t),
                None => Auth::None,
            },
        )
    }
}

/// The bearer token from a file (which must not be readable by others) or a variable.
fn read_token(file: Option<&std::path::Path>, var: Option<&str>) -> Result<Option<String>> {
    if let Some(f) = file {
        use std::os::unix::fs::PermissionsExt;
        let meta =
            std::fs::metadata(f).map_err(|e| anyhow::anyhow!("token file {}: {e}", f.display()))?;
        if !meta.is_file() {
            bail!("token file {} is not a regular file", f.display());
        }
        if meta.permissions().mode() & 0o077 != 0 {
            bail!(
                "token file {} is readable by other users; run `chmod 600 {}`",
                f.display(),
                f.display()
            );
        }
        let t = std::fs::read_to_string(f)
            .map_err(|e| anyhow::anyhow!("token file {}: {e}", f.display()))?;
        let t = t.trim();
        if t.is_empty() {
            bail!("token file {} is empty", f.display());
        }
        return Ok(Some(t.to_string()));
    }
    if let Some(v) = var {
        let t =
            std::env::var(v).map_err(|_| anyhow::anyhow!("environment variable {v} is not set"))?;
        if t.trim().is_empty() {
            bail!("environment variable {v} is empty");
        }
        return Ok(Some(t.trim().to_string()));
    }
    Ok(None)
}

/// A FHIR mapping's columns, compiled.
pub struct FhirColumns {
    pub resource_type: String,
    mapping_name: String,
    header: Vec<String>,
    paths: Vec<FhirPath>,
    subject: FhirPath,
    patient_ids: Vec<IdentifierSelector>,
}

/// How a mapping picks one identifier of a Patient: by its system, or by a code of its type.
#[derive(Debug, Clone)]
enum IdentifierSelector {
    System(String),
    /// (the type coding's system, if given; its code)
    Type(Option<String>, String),
}

impl IdentifierSelector {
    fn matches(&self, id: &PatientId) -> bool {
        match self {
            IdentifierSelector::System(s) => id.system.as_deref() == Some(s.as_str()),
            IdentifierSelector::Type(sys, code) => id.types.iter().any(|(s, c)| {
                c == code
                    && sys
                        .as_ref()
                        .is_none_or(|want| s.as_deref() == Some(want.as_str()))
            }),
        }
    }
}

/// One identifier of a Patient (in memory only).
#[derive(Debug, Clone)]
struct PatientId {
    system: Option<String>,
    /// `type.coding` (system, code).
    types: Vec<(Option<String>, String)>,
    value: String,
}

impl FhirColumns {
    pub fn new(c: &Compiled) -> Result<Self> {
        let spec = &c.mapping.spec;
        if spec.source.format != Format::Fhir {
            bail!(
                "{} is not a FHIR mapping (format = \"fhir\")",
                c.mapping.path.display()
            );
        }
        let f = spec
            .fhir
            .as_ref()
            .context("a FHIR mapping needs [fhir]")?
            .get_ref();
        let paths = f
            .columns
            .values()
            .map(|p| FhirPath::parse(p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            resource_type: f.resource.clone(),
            mapping_name: spec.source.name.clone(),
            header: f.header(),
            paths,
            subject: FhirPath::parse(&f.subject)?,
            patient_ids: f
                .patient_identifiers
                .iter()
                .map(|p| match (&p.system, &p.id_type) {
                    (Some(s), _) => IdentifierSelector::System(s.clone()),
                    (None, Some(t)) => match t.split_once('|') {
                        Some((sys, code)) => IdentifierSelector::Type(
                            (!sys.is_empty()).then(|| sys.to_string()),
                            code.to_string(),
                        ),
                        None => IdentifierSelector::Type(None, t.clone()),
                    },
                    (None, None) => IdentifierSelector::System(String::new()),
                })
                .collect(),
        })
    }

    /// The row of one resource (or the reason it has none).
    fn row(
        &self,
        number: u64,
        parsed: std::result::Result<Resource, ResourceError>,
        patients: &mut dyn PatientLookup,
        refs: &dyn Resolver,
        server: &str,
    ) -> RowResult {
        let r = match parsed {
            Ok(r) => r,
            Err(e) => {
                return RowResult::Bad {
                    number,
                    line: number,
                    code: "invalid_resource",
                    reason: e.to_string(),
                }
            }
        };
        // Never the resource's id (it can be the MRN) nor the reference: the type.
        let what = r.resource_type.clone();
        let mut cell_errors = Vec::new();
        let mut fields: Vec<String> = Vec::with_capacity(self.header.len());
        for (i, p) in self.paths.iter().enumerate() {
            let e = p.eval(&r.json, refs);
            if let Some(t) = &e.unresolved {
                // Never the reference itself (it can carry an identifier): its type.
                cell_errors.push((
                    i,
                    if t == "#" {
                        "the contained resource the reference names is missing".to_string()
                    } else {
                        format!(
                            "the referenced {t} could not be resolved (not contained, not \
                             included, not readable from the server or export)"
                        )
                    },
                ));
            }
            fields.push(e.value.unwrap_or_default());
        }
        let ids = if r.resource_type == "Patient" {
            Ok(Some(patient_identifiers(&r.json)))
        } else {
            match self.subject.first(&r.json) {
                None => Err(format!("{what}: no subject ({})", self.subject)),
                Some(reference) => match patient_id(&reference) {
                    None => Err(format!(
                        "{what}: the subject reference does not name a Patient"
                    )),
                    Some(pid) => patients.identifiers(pid).map_err(|_| {
                        format!("{what}: its subject Patient could not be read from the server")
                    }),
                },
            }
        };
        let ids = match ids {
            Ok(Some(ids)) => ids,
            Ok(None) => {
                return RowResult::Bad {
                    number,
                    line: number,
                    code: "unresolved_subject",
                    reason: format!("{what}: its Patient is not known to the server or export"),
                }
            }
            Err(reason) => {
                return RowResult::Bad {
                    number,
                    line: number,
                    code: "unresolved_subject",
                    reason,
                }
            }
        };
        for sel in &self.patient_ids {
            fields.push(
                ids.iter()
                    .find(|id| sel.matches(id))
                    .map(|id| id.value.clone())
                    .unwrap_or_default(),
            );
        }
        RowResult::Row(SourceRow {
            number,
            line: number,
            fields,
            cell_errors,
            typed_dates: Vec::new(),
            key: Some(self.row_key(server, &r.resource_type, &r.id)),
        })
    }

    /// The logical identity of a resource for this mapping (hashed before it is stored).
    fn row_key(&self, server: &str, resource_type: &str, id: &str) -> String {
        format!("{server}|{}|{resource_type}/{id}", self.mapping_name)
    }
}

/// `Patient/123`, `https://h/fhir/Patient/123` or `Patient/123/_history/2` -> `123`.
fn patient_id(reference: &str) -> Option<&str> {
    let r = reference.split("/_history/").next()?;
    let (ty, id) = r.trim_end_matches('/').rsplit_once('/')?;
    let ty = ty.rsplit('/').next()?;
    (ty == "Patient" && !id.is_empty()).then_some(id)
}

/// A Patient's identifiers (system, type codings, value).
fn patient_identifiers(patient: &Value) -> Vec<PatientId> {
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    patient
        .get("identifier")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|i| {
            Some(PatientId {
                system: text(i, "system"),
                types: i
                    .get("type")
                    .and_then(|t| t.get("coding"))
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|c| Some((text(c, "system"), text(c, "code")?)))
                    .collect(),
                value: text(i, "value")?,
            })
        })
        .collect()
}

/// Where the identifiers of a referenced Patient come from.
trait PatientLookup {
    /// `Ok(None)`: no such patient.
    fn identifiers(&mut self, id: &str) -> std::result::Result<Option<Vec<PatientId>>, String>;
}

/// The Patients of a bulk export, read first (identifiers kept in memory only).
#[derive(Default)]
struct ExportPatients(HashMap<String, Vec<PatientId>>);

impl PatientLookup for ExportPatients {
    fn identifiers(&mut self, id: &str) -> std::result::Result<Option<Vec<PatientId>>, String> {
        Ok(self.0.get(id).cloned())
    }
}

/// The identifiers of an endpoint's Patients, for one run: filled from the Patient pages
/// pulled, and by reading a Patient when a resource refers to one not seen yet. In memory
/// only; one cache serves every mapping of the run.
#[derive(Default)]
pub struct PatientCache {
    patients: HashMap<String, Option<Vec<PatientId>>>,
    /// Resources references led to (`Type/id`), included by the server or read.
    references: HashMap<String, Option<Arc<Value>>>,
}

struct EndpointPatients<'a> {
    client: &'a Client,
    cache: &'a mut HashMap<String, Option<Vec<PatientId>>>,
}

impl PatientLookup for EndpointPatients<'_> {
    fn identifiers(&mut self, id: &str) -> std::result::Result<Option<Vec<PatientId>>, String> {
        if let Some(v) = self.cache.get(id) {
            return Ok(v.clone());
        }
        let v = self
            .client
            .read("Patient", id)
            .map_err(|e| e.to_string())?
            .map(|p| patient_identifiers(&p));
        self.cache.insert(id.to_string(), v.clone());
        Ok(v)
    }
}

/// Rows prepared in memory (a search page, a list of deletions).
struct VecSource {
    header: Vec<String>,
    rows: std::vec::IntoIter<RowResult>,
}

impl RowSource for VecSource {
    fn header(&self) -> &[String] {
        &self.header
    }
    fn next_row(&mut self) -> std::result::Result<Option<RowResult>, FileError> {
        Ok(self.rows.next())
    }
}

/// The resources of one ndjson file, streamed.
struct NdjsonSource<'a> {
    cols: &'a FhirColumns,
    reader: NdjsonReader,
    patients: &'a mut ExportPatients,
    refs: &'a ExportRefs<'a>,
    server: &'a str,
    number: u64,
}

/// The resources of an export that references lead to, by type: a type's files are read
/// (into memory) the first time a reference to it is resolved.
struct ExportRefs<'a> {
    dir: &'a Path,
    source: &'a str,
    limits: NdjsonLimits,
    types: std::sync::Mutex<HashMap<String, HashMap<String, Arc<Value>>>>,
}

impl ExportRefs<'_> {
    fn read_type(&self, resource_type: &str) -> HashMap<String, Arc<Value>> {
        let mut m = HashMap::new();
        for f in export_files(self.dir, self.source, resource_type).unwrap_or_default() {
            let Ok(mut r) = NdjsonReader::open_with(&f, self.limits) else {
                continue;
            };
            while let Ok(Some(line)) = r.next_line() {
                if let Line::Text(_, bytes) = line {
                    if let Ok(res) = parse_resource(bytes, Some(resource_type)) {
                        m.insert(res.id, Arc::new(res.json));
                    }
                }
            }
        }
        m
    }
}

impl Resolver for ExportRefs<'_> {
    fn resolve(&self, resource_type: &str, id: &str) -> Option<Arc<Value>> {
        if !resource_type.bytes().all(|b| b.is_ascii_alphabetic()) {
            return None;
        }
        let mut types = self.types.lock().unwrap_or_else(|p| p.into_inner());
        if !types.contains_key(resource_type) {
            let m = self.read_type(resource_type);
            types.insert(resource_type.to_string(), m);
        }
        types.get(resource_type)?.get(id).cloned()
    }
}

impl RowSource for NdjsonSource<'_> {
    fn header(&self) -> &[String] {
        &self.cols.header
    }
    fn next_row(&mut self) -> std::result::Result<Option<RowResult>, FileError> {
        let line = self.reader.next_line().map_err(|e| match e {
            NdjsonError::TooLarge { .. } => FileError {
                code: "file_too_large",
                reason: format!("{e} (max_decompressed_bytes); nothing of the file was loaded"),
            },
            NdjsonError::Io(e) => {
                FileError::new(format!("reading failed after line {}: {e}", self.number))
            }
        })?;
        let (line_no, bytes) = match line {
            None => return Ok(None),
            Some(Line::Text(n, b)) => (n, b),
            Some(Line::TooLong { number, limit }) => {
                self.number += 1;
                return Ok(Some(RowResult::Bad {
                    number: self.number,
                    line: number,
                    code: "line_too_long",
                    reason: format!(
                        "line {number}: longer than the limit of {limit} bytes (max_line_bytes); \
                         the resource was not read"
                    ),
                }));
            }
        };
        self.number += 1;
        let parsed = parse_resource(bytes, Some(&self.cols.resource_type));
        let mut row = self
            .cols
            .row(self.number, parsed, self.patients, self.refs, self.server);
        if let RowResult::Bad { line, .. } = &mut row {
            *line = line_no;
        }
        Ok(Some(row))
    }
}

/// What one mapping's pull or bulk import did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FhirOutcome {
    pub mapping: String,
    pub resource_type: String,
    /// Search pages or ndjson files.
    pub units: Vec<UnitOutcome>,
    pub resources: i64,
    pub deleted: i64,
    pub watermark_before: Option<String>,
    pub watermark_after: Option<String>,
    pub retries: u64,
    pub bytes: u64,
    /// `Bundle.total` of the search, when the server gave one.
    pub announced: Option<u64>,
    /// Resources announced but never received (the type failed and kept its watermark).
    pub missing: Option<u64>,
    /// Whether the server's CapabilityStatement lists type-level `_history`.
    pub history_type: Support,
    /// How deletions were found.
    pub deletions: Deletions,
    /// What the pull adapted to (a capability the server lacks).
    pub notes: Vec<String>,
}

impl Default for FhirOutcome {
    fn default() -> Self {
        FhirOutcome {
            mapping: String::new(),
            resource_type: String::new(),
            units: Vec::new(),
            resources: 0,
            deleted: 0,
            watermark_before: None,
            watermark_after: None,
            retries: 0,
            bytes: 0,
            announced: None,
            missing: None,
            history_type: Support::Unknown,
            deletions: Deletions::NotChecked,
            notes: Vec::new(),
        }
    }
}

impl FhirOutcome {
    pub fn totals(&self) -> UnitCounts {
        let mut c = UnitCounts::default();
        for u in &self.units {
            c.add(&u.counts);
        }
        c
    }
}

fn sha_hex(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    hex::encode(h.finalize())
}

/// The watermark to store after a pull: the server's clock at the start (HTTP `Date`), less
/// two seconds, as a UTC instant with milliseconds; else the newest `lastUpdated` seen.
fn next_watermark(server_date: Option<&str>, newest_seen: Option<&str>) -> Option<String> {
    if let Some(d) = server_date.and_then(|d| chrono::DateTime::parse_from_rfc2822(d).ok()) {
        let t = d.with_timezone(&chrono::Utc) - chrono::Duration::seconds(2);
        return Some(t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string());
    }
    newest_seen.map(str::to_string)
}

/// Rows prepared in memory (a search page, a list of deletions): one unit of an endpoint
/// pull.
struct UnitRows<'s> {
    source: &'s str,
    locator: &'s str,
    sha: String,
    size: u64,
    label: String,
    header: Vec<String>,
    rows: Vec<RowResult>,
}

fn load_rows(ctx: &mut ImportContext<'_>, c: &Compiled, u: UnitRows<'_>) -> Result<UnitOutcome> {
    let unit = Unit {
        ident: FileIdentity {
            kind: UnitKind::Fhir,
            source: u.source.to_string(),
            mapping: Some(c.name().to_string()),
            locator_hash: u.locator.to_string(),
            legacy_locator: None,
            content_sha256: u.sha,
            size: u.size,
            mapping_sha256: Some(c.fingerprint.clone()),
            series: None,
        },
        label: u.label,
        replace: Replace::Records,
        version: None,
    };
    let rows = VecSource {
        header: u.header,
        rows: u.rows.into_iter(),
    };
    load_unit(ctx, c, &unit, Box::new(rows))
}

/// How a pull runs.
pub struct Pull<'a> {
    pub fhir: &'a Client,
    /// The source name (the nightly source's, or the mapping's).
    pub source: &'a str,
    /// Ignore the watermark.
    pub full: bool,
    /// The server's clock when the run's first type started: every type of the run gets the
    /// watermark of the run's start (earlier is safe: at worst a resource is read again).
    pub run_start: std::cell::RefCell<Option<String>>,
    /// What the server's CapabilityStatement says (read once per run).
    pub capabilities: &'a Capabilities,
    /// Days between id sweeps of a type whose deletions the server cannot list (no
    /// type-level `_history`); 0: every run.
    pub sweep_days: u32,
}

/// How a pull learnt what the server deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Deletions {
    /// Nothing was compared (the pull failed before).
    #[default]
    NotChecked,
    /// The type's `_history` since the watermark.
    History,
    /// A full pull: every id received compared with the registry's records.
    FullPull,
    /// The ids the server holds (`_elements=id`) compared with the registry's records.
    Sweep,
    /// The server cannot list deletions and the type's last sweep is recent.
    SweepNotDue { next_due: String },
}

/// Sweeps that would remove more than this share of a type's records (and more than
/// [`SWEEP_GUARD_MIN`] records) are refused: a server answering with an empty or partial
/// list by mistake must not empty the registry.
const SWEEP_GUARD_SHARE: f64 = 0.5;
const SWEEP_GUARD_MIN: usize = 10;

/// `_include` parameters for the references a mapping resolves (`medicationReference` ->
/// `MedicationRequest:medication`), unless the server says it does not support them.
fn include_params(cols: &FhirColumns, caps: &Capabilities) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in &cols.paths {
        for el in p.resolved_elements() {
            let param = el.strip_suffix("Reference").unwrap_or(el);
            let inc = format!("{}:{param}", cols.resource_type);
            if caps.include(&cols.resource_type, &inc) != Support::No && !out.contains(&inc) {
                out.push(inc);
            }
        }
    }
    out
}

/// The resources references lead to during a pull: a page's `_include`d ones, then the run's
/// cache, then a read from the server (cached, also when absent).
struct EndpointRefs<'a> {
    client: &'a Client,
    cache: &'a std::cell::RefCell<HashMap<String, Option<Arc<Value>>>>,
}

impl Resolver for EndpointRefs<'_> {
    fn resolve(&self, resource_type: &str, id: &str) -> Option<Arc<Value>> {
        let key = format!("{resource_type}/{id}");
        if let Some(v) = self.cache.borrow().get(&key) {
            return v.clone();
        }
        let v = self
            .client
            .read(resource_type, id)
            .ok()
            .flatten()
            .map(Arc::new);
        self.cache.borrow_mut().insert(key, v.clone());
        v
    }
}

/// What the fetching thread hands back after a type's last page.
#[derive(Default)]
pub struct SearchEnd {
    server_date: Option<String>,
    announced: Option<u64>,
    /// Every id received (kept for full pulls: they are the sweep).
    ids: Option<std::collections::HashSet<String>>,
    /// Retries of the search's requests.
    retries: u64,
}

/// What one type's search asks, decided before any page of the pull is fetched.
#[derive(Debug, Clone)]
pub struct SearchPlan {
    resource_type: String,
    since: Option<String>,
    includes: Vec<String>,
    keep_ids: bool,
}

/// A message of the fetcher about the type with that index: a page, or the search's end.
pub enum Fetched {
    Page(Result<registrar_fhir::client::Page, registrar_fhir::client::FetchError>),
    End(SearchEnd),
}

/// How far the fetcher may run ahead of the loader: response bytes fetched and not yet
/// taken (a page larger than this still goes, alone), and pages.
const AHEAD_BYTES: u64 = 64 << 20;
const AHEAD_PAGES: usize = 32;

/// The bytes fetched and not yet taken by the loader, and whether the loader is gone.
#[derive(Default)]
struct Ahead {
    state: std::sync::Mutex<(u64, bool)>,
    taken: std::sync::Condvar,
}

impl Ahead {
    /// Wait until `bytes` more fit (false: the loader is gone).
    fn reserve(&self, bytes: u64) -> bool {
        let mut s = self.state.lock().expect("ahead lock");
        while !s.1 && s.0 > 0 && s.0 + bytes > AHEAD_BYTES {
            s = self.taken.wait(s).expect("ahead lock");
        }
        s.0 += bytes;
        !s.1
    }

    fn release(&self, bytes: u64) {
        let mut s = self.state.lock().expect("ahead lock");
        s.0 = s.0.saturating_sub(bytes);
        self.taken.notify_all();
    }

    fn close(&self) {
        self.state.lock().expect("ahead lock").1 = true;
        self.taken.notify_all();
    }
}

/// The pages of every type of an endpoint pull. One thread ([`fetch_all`]) fetches them in
/// the order the types load, ahead of the loader by up to 64 MiB of responses, so the
/// server is never kept waiting by a page that loads slowly, nor by a type's last pages.
pub struct PageStream {
    rx: std::sync::mpsc::Receiver<(usize, Fetched)>,
    ahead: std::sync::Arc<Ahead>,
}

/// The fetcher's end of a [`PageStream`].
pub struct PageSink {
    tx: std::sync::mpsc::SyncSender<(usize, Fetched)>,
    ahead: std::sync::Arc<Ahead>,
}

impl PageSink {
    /// Hand a message over; false when the loader is gone.
    fn send(&self, idx: usize, m: Fetched) -> bool {
        if let Fetched::Page(Ok(p)) = &m {
            if !self.ahead.reserve(p.bytes) {
                return false;
            }
        }
        self.tx.send((idx, m)).is_ok()
    }
}

/// A stream of pages and the sink its fetcher writes to.
pub fn page_stream() -> (PageSink, PageStream) {
    let (tx, rx) = std::sync::mpsc::sync_channel(AHEAD_PAGES);
    let ahead = std::sync::Arc::new(Ahead::default());
    (
        PageSink {
            tx,
            ahead: ahead.clone(),
        },
        PageStream { rx, ahead },
    )
}

impl PageStream {
    /// The next message of type `idx`; messages of earlier types (one that stopped loading
    /// on an error) are passed over. None: the fetcher is gone.
    fn next(&self, idx: usize) -> Option<Fetched> {
        loop {
            let (i, m) = self.rx.recv().ok()?;
            if let Fetched::Page(Ok(p)) = &m {
                self.ahead.release(p.bytes);
            }
            if i == idx {
                return Some(m);
            }
        }
    }
}

impl Drop for PageStream {
    fn drop(&mut self) {
        // A fetcher waiting for room stops.
        self.ahead.close();
    }
}

/// Fetch every planned type's pages, in order, into `sink` (see [`PageStream`]); a type
/// whose plan is None (it failed before) is not asked. Stops when the loader is gone.
pub fn fetch_all(fhir: &Client, plans: &[Option<SearchPlan>], sink: PageSink) {
    use registrar_fhir::client::retries_on_this_thread;
    let tx = &sink;
    for (i, plan) in plans.iter().enumerate() {
        let Some(plan) = plan else { continue };
        let r0 = retries_on_this_thread();
        let params: Vec<(&str, &str)> = plan
            .includes
            .iter()
            .map(|v| ("_include", v.as_str()))
            .collect();
        let mut search = match fhir.search_with(&plan.resource_type, plan.since.as_deref(), &params)
        {
            Ok(s) => s,
            Err(e) => {
                if !tx.send(i, Fetched::Page(Err(e)))
                    || !tx.send(i, Fetched::End(SearchEnd::default()))
                {
                    return;
                }
                continue;
            }
        };
        loop {
            // Only the paging here, so the server is never kept waiting; the model check
            // and everything else happen on the loading side.
            match search.next_page() {
                Ok(Some(p)) => {
                    if !tx.send(i, Fetched::Page(Ok(p))) {
                        return; // the loader stopped
                    }
                }
                Ok(None) => {
                    // Complete, or announced more than it gave: the type fails loudly.
                    if let Err(e) = search.finish() {
                        if !tx.send(i, Fetched::Page(Err(e))) {
                            return;
                        }
                    }
                    break;
                }
                Err(e) => {
                    if !tx.send(i, Fetched::Page(Err(e))) {
                        return;
                    }
                    break;
                }
            }
        }
        let end = SearchEnd {
            server_date: search.server_date.clone(),
            announced: search.total,
            ids: plan.keep_ids.then(|| std::mem::take(search.ids_mut())),
            retries: retries_on_this_thread() - r0,
        };
        if !tx.send(i, Fetched::End(end)) {
            return;
        }
    }
}

/// One type of an endpoint pull, prepared before the pull's pages are fetched: its columns,
/// its stored watermark and what its search asks.
pub struct PreparedType {
    cols: FhirColumns,
    /// The endpoint's keyed locator (its watermarks are kept under it).
    endpoint_hash: String,
    stored: Option<crate::ledger::Watermark>,
    since: Option<String>,
    includes: Vec<String>,
}

impl PreparedType {
    pub fn new(ctx: &mut ImportContext<'_>, c: &Compiled, pull: &Pull<'_>) -> Result<Self> {
        let cols = FhirColumns::new(c)?;
        let server = pull.fhir.base().as_str().to_string();
        let endpoint_hash = ctx.keys.current.locator_hash(&format!("fhir:{server}"));
        let stored = Ledger::new(ctx.run_id()).watermark(
            ctx.client,
            &endpoint_hash,
            &cols.resource_type,
            &cols.mapping_name,
        )?;
        let since = if pull.full {
            None
        } else {
            stored.as_ref().map(|w| w.last_updated.clone())
        };
        let includes = include_params(&cols, pull.capabilities);
        Ok(PreparedType {
            cols,
            endpoint_hash,
            stored,
            since,
            includes,
        })
    }

    pub fn plan(&self) -> SearchPlan {
        SearchPlan {
            resource_type: self.cols.resource_type.clone(),
            since: self.since.clone(),
            includes: self.includes.clone(),
            keep_ids: self.since.is_none(),
        }
    }
}

/// Whether an error is the server's (or its token endpoint's) refusal of the credentials.
pub fn is_auth_refusal(err: &anyhow::Error) -> bool {
    use registrar_fhir::client::FetchError;
    err.chain().any(|e| {
        matches!(
            e.downcast_ref::<FetchError>(),
            Some(FetchError::Unauthorized { .. } | FetchError::TokenRefused { .. })
        )
    })
}

/// Pull one mapping's resource type from an endpoint into `out`, which keeps what was
/// committed also when the pull fails part-way. Its pages come from `stream` (type `idx`).
#[allow(clippy::too_many_arguments)]
pub fn pull_endpoint(
    ctx: &mut ImportContext<'_>,
    c: &Compiled,
    prepared: PreparedType,
    pull: &Pull<'_>,
    patients: &mut PatientCache,
    out: &mut FhirOutcome,
    stream: &PageStream,
    idx: usize,
) -> Result<()> {
    let fhir = pull.fhir;
    let PreparedType {
        cols,
        endpoint_hash,
        stored,
        since,
        includes,
    } = prepared;
    let server = fhir.base().as_str().to_string();
    let keys = ctx.keys;
    let k: &Pseudonymiser = &keys.current;
    let locator = k.locator_hash(&format!(
        "fhir:{server}|{}|{}",
        cols.mapping_name, cols.resource_type
    ));
    out.mapping = cols.mapping_name.clone();
    out.resource_type = cols.resource_type.clone();
    out.history_type = pull.capabilities.history_type(&cols.resource_type);
    let ledger = Ledger::new(ctx.run_id());
    out.watermark_before = stored.as_ref().map(|w| w.last_updated.clone());
    let retries_before = registrar_fhir::client::retries_on_this_thread();
    ctx.audit_fhir = Some(serde_json::json!({
        "server_software": pull.capabilities.software,
        "fhir_version": pull.capabilities.fhir_version,
        "capability_statement": pull.capabilities.unreadable.is_none(),
        "auth": fhir.auth_summary()["method"],
        "history_type": out.history_type,
        "include": includes,
        "incremental": since.is_some(),
    }));
    let mut newest: Option<String> = None;
    let mut page_no = 0u64;
    let refs_cache = std::mem::take(&mut patients.references);
    let refs_cache = std::cell::RefCell::new(refs_cache);
    let refs = EndpointRefs {
        client: fhir,
        cache: &refs_cache,
    };
    let mut patients_lookup = EndpointPatients {
        client: fhir,
        cache: &mut patients.patients,
    };
    // Pages commit without waiting for their WAL flush: the watermark's commit below waits,
    // and WAL is flushed in order, so if it survives a crash, so did every page before it;
    // if it does not, the pull is repeated (rows replace themselves). Reset after the pages.
    ctx.client.batch_execute("SET synchronous_commit = off")?;
    // The pages come from the pull's fetching thread (fetch_all): the pull runs at the pace
    // of the slower of fetching and loading, not of their sum.
    let end = (|| -> Result<SearchEnd> {
        let mut failed = None;
        let end = loop {
            let page = match stream.next(idx) {
                None => anyhow::bail!("the FHIR fetching thread stopped"),
                Some(Fetched::End(end)) => break end,
                // The search stopped; its end follows.
                Some(Fetched::Page(Err(e))) => {
                    failed = Some(e);
                    continue;
                }
                Some(Fetched::Page(Ok(p))) => p,
            };
            page_no += 1;
            out.bytes += page.bytes;
            {
                let mut cache = refs_cache.borrow_mut();
                for inc in page.included {
                    let (Some(t), Some(id)) = (
                        inc.get("resourceType").and_then(Value::as_str),
                        inc.get("id").and_then(Value::as_str),
                    ) else {
                        continue;
                    };
                    let key = format!("{t}/{id}");
                    cache.insert(key, Some(Arc::new(inc)));
                }
            }
            let mut rows = Vec::with_capacity(page.entries.len());
            let mut digest_parts: Vec<String> = vec![page.url.clone()];
            for (i, entry) in page.entries.into_iter().enumerate() {
                let parsed = match entry {
                    Ok(v) => from_value(v, Some(&cols.resource_type)),
                    Err(reason) => Err(ResourceError {
                        what: format!("entry {}", i + 1),
                        reason,
                        resource_type: None,
                        id: None,
                    }),
                };
                if let Ok(r) = &parsed {
                    digest_parts.push(format!(
                        "{}|{}",
                        r.id,
                        r.last_updated.as_deref().unwrap_or("")
                    ));
                    if let Some(lu) = &r.last_updated {
                        if newest.as_deref().is_none_or(|n| lu.as_str() > n) {
                            newest = Some(lu.clone());
                        }
                    }
                    if r.resource_type == "Patient" {
                        patients_lookup
                            .cache
                            .insert(r.id.clone(), Some(patient_identifiers(&r.json)));
                    }
                }
                out.resources += 1;
                rows.push(cols.row(i as u64 + 1, parsed, &mut patients_lookup, &refs, &server));
            }
            let parts: Vec<&[u8]> = digest_parts.iter().map(|s| s.as_bytes()).collect();
            let sha = sha_hex(&parts);
            let label = format!("{} page {page_no}", cols.resource_type);
            let o = load_rows(
                ctx,
                c,
                UnitRows {
                    source: pull.source,
                    locator: &locator,
                    sha,
                    size: page.bytes,
                    label,
                    header: cols.header.clone(),
                    rows,
                },
            )?;
            out.units.push(o);
        };
        out.announced = end.announced;
        out.retries = end.retries;
        if let Some(e) = failed {
            if let registrar_fhir::client::FetchError::Incomplete { missing, .. } = &e {
                out.missing = Some(*missing);
            }
            return Err(e.into());
        }
        Ok(end)
    })();
    ctx.client.batch_execute("RESET synchronous_commit")?;
    patients.references = refs_cache.into_inner();
    let end = end?;
    let server_date = {
        let mut first = pull.run_start.borrow_mut();
        if first.is_none() {
            *first = end.server_date.clone();
        }
        first.clone()
    };
    // Deletions: from the type's history where the server keeps one; else by comparing the
    // ids the server holds with the registry's records (every id of a full pull; a sweep
    // when one is due).
    let mut swept = false;
    let sweep_ids = match (&since, end.ids) {
        (None, Some(ids)) => {
            out.deletions = Deletions::FullPull;
            Some(ids)
        }
        (None, None) => None,
        (Some(since), _) => {
            let mut sweep = out.history_type == Support::No;
            if !sweep {
                match fhir.deleted_since(&cols.resource_type, since) {
                    Ok(ids) => {
                        out.deletions = Deletions::History;
                        out.deleted = ids.len() as i64;
                        if !ids.is_empty() {
                            let rows: Vec<RowResult> = ids
                                .iter()
                                .enumerate()
                                .map(|(i, id)| RowResult::Deleted {
                                    number: i as u64 + 1,
                                    key: cols.row_key(&server, &cols.resource_type, id),
                                })
                                .collect();
                            let refs: Vec<&[u8]> = ids.iter().map(|s| s.as_bytes()).collect();
                            let o = load_rows(
                                ctx,
                                c,
                                UnitRows {
                                    source: pull.source,
                                    locator: &locator,
                                    sha: sha_hex(&refs),
                                    size: 0,
                                    label: format!("{} deletions", cols.resource_type),
                                    header: cols.header.clone(),
                                    rows,
                                },
                            )?;
                            out.units.push(o);
                        }
                    }
                    Err(e) if e.is_unsupported() => {
                        // Not offered after all (a statement that does not say, or says
                        // wrong): never a permanent failure, the ids are swept instead.
                        out.history_type = Support::No;
                        out.notes.push(format!(
                            "type-level _history is not supported by the server ({}): deletions come from an id sweep",
                            status_of(&e)
                        ));
                        sweep = true;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            if !sweep {
                None
            } else {
                let due = stored
                    .as_ref()
                    .and_then(|w| w.swept_at)
                    .map(|t| t + chrono::Duration::days(i64::from(pull.sweep_days)));
                match due {
                    Some(d) if d > chrono::Utc::now() => {
                        out.deletions = Deletions::SweepNotDue {
                            next_due: d.format("%Y-%m-%d").to_string(),
                        };
                        None
                    }
                    _ => {
                        out.deletions = Deletions::Sweep;
                        let mut s =
                            fhir.search_with(&cols.resource_type, None, &[("_elements", "id")])?;
                        while let Some(p) = s.next_page()? {
                            out.bytes += p.bytes;
                        }
                        s.finish()?;
                        Some(std::mem::take(s.ids_mut()))
                    }
                }
            }
        }
    };
    if let Some(ids) = sweep_ids {
        swept = true;
        if let Some(a) = ctx.audit_fhir.as_mut() {
            a["deletions"] = serde_json::to_value(&out.deletions)?;
            a["history_type"] = serde_json::to_value(out.history_type)?;
        }
        let o = remove_gone(ctx, c, &cols, pull, &server, &locator, &ids, out)?;
        if let Some(o) = o {
            out.units.push(o);
        }
    }
    // Every page committed: advance the watermark.
    let after = next_watermark(server_date.as_deref(), newest.as_deref())
        .or(stored.map(|w| w.last_updated));
    if let Some(w) = &after {
        ledger.set_watermark(
            ctx.client,
            &endpoint_hash,
            &cols.resource_type,
            &cols.mapping_name,
            w,
            swept,
        )?;
    }
    out.watermark_after = after;
    out.retries += registrar_fhir::client::retries_on_this_thread() - retries_before;
    ctx.audit_fhir = None;
    Ok(())
}

fn status_of(e: &registrar_fhir::client::FetchError) -> String {
    match e {
        registrar_fhir::client::FetchError::Status { status, .. } => format!("HTTP {status}"),
        _ => "refused".into(),
    }
}

/// Remove the records of this mapping's pulls whose resource the server no longer holds
/// (`ids`: every id it holds now). Refuses to remove most of a type at once.
#[allow(clippy::too_many_arguments)]
fn remove_gone(
    ctx: &mut ImportContext<'_>,
    c: &Compiled,
    cols: &FhirColumns,
    pull: &Pull<'_>,
    server: &str,
    locator: &str,
    ids: &std::collections::HashSet<String>,
    out: &mut FhirOutcome,
) -> Result<Option<UnitOutcome>> {
    let keys = ctx.keys;
    let held: std::collections::HashSet<RecordKey> = ids
        .iter()
        .map(|id| record_key(keys, &cols.row_key(server, &cols.resource_type, id)))
        .collect();
    let units: std::collections::HashSet<i64> = Ledger::units_of_locator(ctx.client, locator)?
        .into_iter()
        .collect();
    let index = match ctx.records.take() {
        Some((s, idx)) if s == pull.source && idx.stamp == Ledger::record_stamp(ctx.seq, &s)? => {
            idx
        }
        _ => Ledger::record_index(ctx.seq, pull.source)?,
    };
    let mut live = 0usize;
    let mut gone: Vec<RecordKey> = Vec::new();
    for (k, s) in index.iter() {
        if s.deleted || !units.contains(&s.origin.0) {
            continue;
        }
        live += 1;
        if !held.contains(k) {
            gone.push(*k);
        }
    }
    if gone.len() > SWEEP_GUARD_MIN && gone.len() as f64 > SWEEP_GUARD_SHARE * live as f64 {
        bail!(
            "{}: the server lists {} {} resources, so {} of the {} loaded would be removed: refused \
             (a server answering with a partial list must not empty the registry); if the \
             deletions are real, run `registrar import fhir --full` for this endpoint",
            cols.mapping_name,
            ids.len(),
            cols.resource_type,
            gone.len(),
            live
        );
    }
    ctx.records = Some((pull.source.to_string(), index));
    out.deleted += gone.len() as i64;
    if gone.is_empty() {
        return Ok(None);
    }
    gone.sort_unstable();
    let sha = {
        let parts: Vec<&[u8]> = gone.iter().map(|k| k.as_slice()).collect();
        sha_hex(&parts)
    };
    let rows = gone
        .into_iter()
        .enumerate()
        .map(|(i, record)| RowResult::Gone {
            number: i as u64 + 1,
            record,
        })
        .collect();
    load_rows(
        ctx,
        c,
        UnitRows {
            source: pull.source,
            locator,
            sha,
            size: 0,
            label: format!("{} id sweep", cols.resource_type),
            header: cols.header.clone(),
            rows,
        },
    )
    .map(Some)
}

/// Patient mappings first (stable otherwise): a resource's person row must exist before the
/// resource loads (`person_without_row`).
pub fn patient_first(mappings: &[Compiled]) -> Vec<&Compiled> {
    let mut v: Vec<&Compiled> = mappings.iter().collect();
    v.sort_by_key(|c| {
        c.mapping
            .spec
            .fhir
            .as_ref()
            .is_none_or(|f| f.get_ref().resource != "Patient")
    });
    v
}

/// The ndjson files of one resource type in a Bulk Data export folder: `Type.ndjson`,
/// `Type.1.ndjson`, `Type.ndjson.gz`, ... (errors name the source, never the folder's path).
fn export_files(dir: &Path, source: &str, resource_type: &str) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("source {source}: an export folder cannot be read"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            let stem = name
                .strip_suffix(".ndjson")
                .or_else(|| name.strip_suffix(".ndjson.gz"));
            stem.is_some_and(|s| {
                s == resource_type
                    || s.strip_prefix(resource_type)
                        .and_then(|r| r.strip_prefix('.').or_else(|| r.strip_prefix('-')))
                        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            })
        })
        .collect();
    files.sort();
    Ok(files)
}

/// The server an export came from (its manifest's `request`, without the `$export` part), so
/// resources keep one identity across exports and endpoint pulls of that server.
fn export_server(dir: &Path) -> String {
    let manifest = std::fs::read(dir.join("manifest.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
    match manifest
        .as_ref()
        .and_then(|m| m.get("request"))
        .and_then(Value::as_str)
    {
        Some(r) => {
            let base = r.split("$export").next().unwrap_or(r);
            let base = base.trim_end_matches('/');
            let base = base
                .strip_suffix("/Patient")
                .or_else(|| base.rsplit_once("/Group/").map(|(b, _)| b))
                .unwrap_or(base);
            format!("{base}/")
        }
        None => "bulk-export:".to_string(),
    }
}

/// Import a Bulk Data export folder through FHIR mappings (one outcome per mapping, added to
/// `outcomes` as it goes, so what was committed stays counted when a file fails). Files
/// already loaded unchanged are skipped. `source` is the source name.
pub fn import_bulk(
    ctx: &mut ImportContext<'_>,
    mappings: &[Compiled],
    source: &str,
    dir: &Path,
    limits: NdjsonLimits,
    outcomes: &mut Vec<FhirOutcome>,
) -> Result<()> {
    if !dir.is_dir() {
        bail!("source {source}: its export folder does not exist or is not a folder");
    }
    let keys = ctx.keys;
    let server = export_server(dir);
    // The Patients first: their identifiers, in memory, for every reference.
    let mut patients = ExportPatients::default();
    for f in export_files(dir, source, "Patient")? {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let mut r = NdjsonReader::open_with(&f, limits)
            .with_context(|| format!("cannot read the export file {name}"))?;
        // Lines over the limit are rejected when the Patient mapping loads the file; a file
        // over the content limit stops the import here, before anything refers to it.
        while let Some(line) = r
            .next_line()
            .with_context(|| format!("source {source}: reading the export file {name}"))?
        {
            if let Line::Text(_, bytes) = line {
                if let Ok(p) = parse_resource(bytes, Some("Patient")) {
                    patients.0.insert(p.id, patient_identifiers(&p.json));
                }
            }
        }
    }
    let refs = ExportRefs {
        dir,
        source,
        limits,
        types: Default::default(),
    };
    for c in patient_first(mappings) {
        let cols = FhirColumns::new(c)?;
        outcomes.push(FhirOutcome {
            mapping: cols.mapping_name.clone(),
            resource_type: cols.resource_type.clone(),
            ..Default::default()
        });
        let out = outcomes.last_mut().expect("pushed");
        for f in export_files(dir, source, &cols.resource_type)? {
            let fname = f
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            let sn = crate::sources::csv::sniff(&f)
                .with_context(|| format!("cannot read the export file {fname}"))?;
            let locator = keys
                .current
                .locator_hash(&format!("fhir-bulk:{server}|{}/{fname}", cols.mapping_name));
            let unit = Unit {
                ident: FileIdentity {
                    kind: UnitKind::FhirBulk,
                    source: source.to_string(),
                    mapping: Some(c.name().to_string()),
                    locator_hash: locator,
                    legacy_locator: None,
                    content_sha256: sn.sha256.clone(),
                    size: sn.size,
                    mapping_sha256: Some(c.fingerprint.clone()),
                    series: None,
                },
                label: fname.clone(),
                replace: Replace::Records,
                version: None,
            };
            if let Some(skipped) = ctx.skip_if_known(&unit)? {
                out.units.push(skipped);
                continue;
            }
            out.bytes += sn.size;
            let reader = NdjsonReader::open_with(&f, limits)
                .with_context(|| format!("cannot read the export file {fname}"))?;
            let rows = NdjsonSource {
                cols: &cols,
                reader,
                patients: &mut patients,
                refs: &refs,
                server: &server,
                number: 0,
            };
            let o = load_unit(ctx, c, &unit, Box::new(rows))?;
            out.resources += o.counts.rows_in;
            out.units.push(o);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_type_that_stopped_loading_leaves_nothing_for_the_next() {
        let (tx, stream) = page_stream();
        let end = |retries| {
            Fetched::End(SearchEnd {
                retries,
                ..SearchEnd::default()
            })
        };
        // Type 0 stopped after its first message: its end and a failure are still queued.
        assert!(tx.send(
            0,
            Fetched::Page(Err(registrar_fhir::client::FetchError::Invalid("x".into())))
        ));
        assert!(tx.send(0, end(7)));
        assert!(tx.send(1, end(3)));
        drop(tx);
        match stream.next(1) {
            Some(Fetched::End(e)) => assert_eq!(e.retries, 3),
            _ => panic!("type 1's end expected"),
        }
        assert!(stream.next(2).is_none(), "the fetcher is gone");
    }

    #[test]
    fn the_fetcher_waits_for_room_and_stops_when_the_loader_is_gone() {
        let page = |bytes| {
            Fetched::Page(Ok(registrar_fhir::client::Page {
                url: String::new(),
                entries: Vec::new(),
                included: Vec::new(),
                bytes,
            }))
        };
        let (tx, stream) = page_stream();
        // A page larger than the budget goes alone; the next waits for it to be taken.
        assert!(tx.send(0, page(AHEAD_BYTES + 1)));
        let waiting = std::thread::spawn(move || tx.send(0, page(1)));
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!waiting.is_finished(), "the second page did not wait");
        assert!(matches!(stream.next(0), Some(Fetched::Page(Ok(_)))));
        assert!(waiting.join().unwrap(), "room was made");
        let (tx, stream) = page_stream();
        assert!(tx.send(0, page(AHEAD_BYTES)));
        let waiting = std::thread::spawn(move || tx.send(0, page(1)));
        std::thread::sleep(std::time::Duration::from_millis(50));
        drop(stream);
        assert!(!waiting.join().unwrap(), "the loader is gone");
    }

    #[test]
    fn patient_references_and_watermarks() {
        assert_eq!(patient_id("Patient/p1"), Some("p1"));
        assert_eq!(patient_id("https://h.example/fhir/Patient/p1"), Some("p1"));
        assert_eq!(patient_id("Patient/p1/_history/3"), Some("p1"));
        assert_eq!(patient_id("Group/g1"), None);
        assert_eq!(patient_id("p1"), None);
        assert_eq!(
            next_watermark(
                Some("Fri, 27 Nov 2026 02:21:22 GMT"),
                Some("2026-11-27T09:00:00.000Z")
            )
            .as_deref(),
            Some("2026-11-27T02:21:20.000Z")
        );
        assert_eq!(
            next_watermark(None, Some("2026-11-27T09:00:00.000Z")).as_deref(),
            Some("2026-11-27T09:00:00.000Z")
        );
    }
}
