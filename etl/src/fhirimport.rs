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

use crate::import::{load_unit, ImportContext, Unit, UnitOutcome};
use crate::ledger::{FileIdentity, Ledger, Replace, UnitCounts, UnitKind};
use crate::mapping::check::Compiled;
use crate::mapping::Format;
use crate::sources::{FileError, RowResult, RowSource, SourceRow};
use anyhow::{bail, Context, Result};
use registrar_anonymizer::pseudonym::Pseudonymiser;
use registrar_fhir::client::Client;
use registrar_fhir::ndjson::{Limits as NdjsonLimits, Line, NdjsonError, NdjsonReader};
use registrar_fhir::path::Path as FhirPath;
use registrar_fhir::resource::{from_value, parse_resource, Resource, ResourceError};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The bearer token from a file (which must not be readable by others) or a variable.
pub fn read_token(file: Option<&std::path::Path>, var: Option<&str>) -> Result<Option<String>> {
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
    patient_systems: Vec<String>,
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
            patient_systems: f
                .patient_identifiers
                .iter()
                .map(|p| p.system.clone())
                .collect(),
        })
    }

    /// The row of one resource (or the reason it has none).
    fn row(
        &self,
        number: u64,
        parsed: std::result::Result<Resource, ResourceError>,
        patients: &mut dyn PatientLookup,
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
        let mut fields: Vec<String> = self
            .paths
            .iter()
            .map(|p| p.first(&r.json).unwrap_or_default())
            .collect();
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
        for system in &self.patient_systems {
            fields.push(
                ids.iter()
                    .find(|(s, _)| s == system)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default(),
            );
        }
        RowResult::Row(SourceRow {
            number,
            line: number,
            fields,
            cell_errors: Vec::new(),
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

/// (system, value) of a Patient's identifiers.
fn patient_identifiers(patient: &Value) -> Vec<(String, String)> {
    patient
        .get("identifier")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|i| {
            Some((
                i.get("system")?.as_str()?.to_string(),
                i.get("value")?.as_str()?.to_string(),
            ))
        })
        .collect()
}

/// Where the identifiers of a referenced Patient come from.
trait PatientLookup {
    /// `Ok(None)`: no such patient.
    fn identifiers(
        &mut self,
        id: &str,
    ) -> std::result::Result<Option<Vec<(String, String)>>, String>;
}

/// The Patients of a bulk export, read first (identifiers kept in memory only).
#[derive(Default)]
struct ExportPatients(HashMap<String, Vec<(String, String)>>);

impl PatientLookup for ExportPatients {
    fn identifiers(
        &mut self,
        id: &str,
    ) -> std::result::Result<Option<Vec<(String, String)>>, String> {
        Ok(self.0.get(id).cloned())
    }
}

/// The identifiers of an endpoint's Patients, for one run: filled from the Patient pages
/// pulled, and by reading a Patient when a resource refers to one not seen yet. In memory
/// only; one cache serves every mapping of the run.
#[derive(Default)]
pub struct PatientCache {
    cache: HashMap<String, Option<Vec<(String, String)>>>,
}

struct EndpointPatients<'a> {
    client: &'a Client,
    cache: &'a mut PatientCache,
}

impl PatientLookup for EndpointPatients<'_> {
    fn identifiers(
        &mut self,
        id: &str,
    ) -> std::result::Result<Option<Vec<(String, String)>>, String> {
        if let Some(v) = self.cache.cache.get(id) {
            return Ok(v.clone());
        }
        let v = self
            .client
            .read("Patient", id)
            .map_err(|e| e.to_string())?
            .map(|p| patient_identifiers(&p));
        self.cache.cache.insert(id.to_string(), v.clone());
        Ok(v)
    }
}

/// A page fetched and checked by the fetcher thread.
struct FetchedPage {
    url: String,
    bytes: u64,
    entries: Vec<std::result::Result<Value, String>>,
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
    server: &'a str,
    number: u64,
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
            .row(self.number, parsed, self.patients, self.server);
        if let RowResult::Bad { line, .. } = &mut row {
            *line = line_no;
        }
        Ok(Some(row))
    }
}

/// What one mapping's pull or bulk import did.
#[derive(Debug, Clone, Default, serde::Serialize)]
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

/// Load rows prepared in memory (a search page, a list of deletions) as one unit of an
/// endpoint pull.
#[allow(clippy::too_many_arguments)]
fn load_rows(
    ctx: &mut ImportContext<'_>,
    c: &Compiled,
    source: &str,
    locator: &str,
    sha: String,
    size: u64,
    label: String,
    header: Vec<String>,
    rows: Vec<RowResult>,
) -> Result<UnitOutcome> {
    let unit = Unit {
        ident: FileIdentity {
            kind: UnitKind::Fhir,
            source: source.to_string(),
            mapping: Some(c.name().to_string()),
            locator_hash: locator.to_string(),
            legacy_locator: None,
            content_sha256: sha,
            size,
            mapping_sha256: Some(c.fingerprint.clone()),
            series: None,
        },
        label,
        replace: Replace::Records,
        version: None,
    };
    let rows = VecSource {
        header,
        rows: rows.into_iter(),
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
}

/// Pull one mapping's resource type from an endpoint into `out`, which keeps what was
/// committed also when the pull fails part-way.
pub fn pull_endpoint(
    ctx: &mut ImportContext<'_>,
    c: &Compiled,
    pull: &Pull<'_>,
    patients: &mut PatientCache,
    out: &mut FhirOutcome,
) -> Result<()> {
    let fhir = pull.fhir;
    let full = pull.full;
    let cols = FhirColumns::new(c)?;
    let server = fhir.base().as_str().to_string();
    let keys = ctx.keys;
    let k: &Pseudonymiser = &keys.current;
    let endpoint_hash = k.locator_hash(&format!("fhir:{server}"));
    let locator = k.locator_hash(&format!(
        "fhir:{server}|{}|{}",
        cols.mapping_name, cols.resource_type
    ));
    out.mapping = cols.mapping_name.clone();
    out.resource_type = cols.resource_type.clone();
    let ledger = Ledger::new(ctx.run_id());
    let stored = ledger.watermark(
        ctx.client,
        &endpoint_hash,
        &cols.resource_type,
        &cols.mapping_name,
    )?;
    out.watermark_before = stored.clone();
    let since = if full { None } else { stored.clone() };
    let retries_before = fhir.retries.load(std::sync::atomic::Ordering::Relaxed);
    let mut patients = EndpointPatients {
        client: fhir,
        cache: patients,
    };
    let mut search = fhir.search(&cols.resource_type, since.as_deref())?;
    let mut newest: Option<String> = None;
    let mut page_no = 0u64;
    // Pages commit without waiting for their WAL flush: the watermark's commit below waits,
    // and WAL is flushed in order, so if it survives a crash, so did every page before it;
    // if it does not, the pull is repeated (rows replace themselves). Reset after the pages.
    ctx.client.batch_execute("SET synchronous_commit = off")?;
    // A second thread fetches the next pages while this one loads: the pull runs at the pace
    // of the slower of the two, not of their sum.
    let server_date = std::thread::scope(|scope| -> Result<Option<String>> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<
            std::result::Result<FetchedPage, registrar_fhir::client::FetchError>,
        >(2);
        let search = &mut search;
        let fetcher = scope.spawn(move || {
            loop {
                let page = match search.next_page() {
                    Ok(Some(p)) => p,
                    Ok(None) => break,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        break;
                    }
                };
                // Only the paging here, so the server is never kept waiting; the model
                // check and everything else happen on the loading side.
                let fetched = FetchedPage {
                    url: page.url,
                    bytes: page.bytes,
                    entries: page.entries,
                };
                if tx.send(Ok(fetched)).is_err() {
                    break; // the loader stopped
                }
            }
            search.server_date.clone()
        });
        for fetched in rx {
            let page = fetched?;
            page_no += 1;
            out.bytes += page.bytes;
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
                        patients
                            .cache
                            .cache
                            .insert(r.id.clone(), Some(patient_identifiers(&r.json)));
                    }
                }
                out.resources += 1;
                rows.push(cols.row(i as u64 + 1, parsed, &mut patients, &server));
            }
            let parts: Vec<&[u8]> = digest_parts.iter().map(|s| s.as_bytes()).collect();
            let sha = sha_hex(&parts);
            let label = format!("{} page {page_no}", cols.resource_type);
            let o = load_rows(
                ctx,
                c,
                pull.source,
                &locator,
                sha,
                page.bytes,
                label,
                cols.header.clone(),
                rows,
            )?;
            out.units.push(o);
        }
        Ok(fetcher.join().expect("the FHIR fetcher panicked"))
    });
    ctx.client.batch_execute("RESET synchronous_commit")?;
    let server_date = server_date?;
    let server_date = {
        let mut first = pull.run_start.borrow_mut();
        if first.is_none() {
            *first = server_date;
        }
        first.clone()
    };
    // Deletions since the last pull.
    if let Some(since) = &since {
        let ids = fhir.deleted_since(&cols.resource_type, since)?;
        if !ids.is_empty() {
            out.deleted = ids.len() as i64;
            let rows: Vec<RowResult> = ids
                .iter()
                .enumerate()
                .map(|(i, id)| RowResult::Deleted {
                    number: i as u64 + 1,
                    key: cols.row_key(&server, &cols.resource_type, id),
                })
                .collect();
            let refs: Vec<&[u8]> = ids.iter().map(|s| s.as_bytes()).collect();
            let sha = sha_hex(&refs);
            let label = format!("{} deletions", cols.resource_type);
            let o = load_rows(
                ctx,
                c,
                pull.source,
                &locator,
                sha,
                0,
                label,
                cols.header.clone(),
                rows,
            )?;
            out.units.push(o);
        }
    }
    // Every page committed: advance the watermark.
    let after = next_watermark(server_date.as_deref(), newest.as_deref()).or(stored);
    if let Some(w) = &after {
        ledger.set_watermark(
            ctx.client,
            &endpoint_hash,
            &cols.resource_type,
            &cols.mapping_name,
            w,
        )?;
    }
    out.watermark_after = after;
    out.retries = fhir.retries.load(std::sync::atomic::Ordering::Relaxed) - retries_before;
    Ok(())
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
    for c in mappings {
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
