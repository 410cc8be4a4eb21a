//! `registrar.toml`: what a nightly run imports, with which key, into which registry, and
//! where it writes its report. Relative paths are relative to the configuration file.
//!
//! ```toml
//! [registry]
//! database_url = "postgres://registrar@db.example/registry"   # optional: DATABASE_URL, else embedded
//! key_file = "/etc/registrar/registry.key"
//! domain = "registry"
//! report_dir = "/var/lib/registrar/reports"
//!
//! [dates]
//! keep_true_dates = false
//! shift_min_days = -365
//! shift_max_days = -30
//!
//! [[source]]
//! name = "his-lab"
//! kind = "csv"                      # csv | xlsx
//! folder = "/data/drop/his"
//! pattern = "measurements*.csv"     # * within a folder level, **/ any folders below
//! mapping = "mappings/hospital/measurements.toml"
//! # A file is its source plus its path relative to `folder`: sites/a/lab.csv and
//! # sites/b/lab.csv are two files.
//! max_cell_bytes = "1MiB"           # optional: a row with a larger cell is rejected
//!
//! [[source]]
//! name = "his-fhir"
//! kind = "fhir"                     # a FHIR R4 endpoint, pulled incrementally
//! endpoint = "https://fhir.hospital.example/r4"
//! token_file = "/etc/registrar/fhir.token"   # or token_env = "VAR"; optional
//! mappings = ["mappings/fhir/patient.toml", "mappings/fhir/observation.toml"]
//! id_sweep_days = 7                 # optional: servers without type-level _history
//! # Instead of a token: SMART Backend Services (a signed JWT assertion per token)
//! # [source.smart]
//! # client_id = "registrar-nightly"
//! # key_file = "/etc/registrar/smart.pem"          # RSA (RS384) or EC P-384 (ES384), mode 0600
//! # scope = "system/*.read"                        # optional
//! # token_url = "https://auth.hospital.example/token"  # optional: from .well-known/smart-configuration
//!
//! [[source]]
//! name = "fhir-exports"
//! kind = "fhir-bulk"                # Bulk Data export folders: the folder, or each subfolder
//! folder = "/data/drop/fhir"
//! mappings = ["mappings/fhir/patient.toml", "mappings/fhir/observation.toml"]
//! max_line_bytes = "64MiB"          # optional: a longer line (resource) is rejected
//! max_decompressed_bytes = "16GiB"  # optional: a file expanding to more is rejected
//!
//! [[source]]
//! name = "rt-dicom"
//! kind = "dicom"                    # pseudonymised into `output`, then indexed
//! folder = "/data/drop/dicom"
//! output = "/data/registry/dicom"
//! quarantine = "/data/keyholder/dicom-quarantine"  # optional: default `<output>.quarantine`
//! profile = "dicom-profile.toml"    # optional
//! ```
//!
//! Each kind takes only its own fields (a `mapping` on a FHIR source is an error), and
//! source names are letters, digits, `-`, `_` and `.`: they are part of every file's identity.

use anyhow::{bail, Context, Result};
use registrar_anonymizer::dateshift::{DatePolicy, ShiftWindow};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Days between id sweeps of FHIR types whose deletions the server cannot list.
pub const DEFAULT_SWEEP_DAYS: u32 = 7;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub registry: RegistryConfig,
    #[serde(default)]
    pub dates: DatesConfig,
    #[serde(default, rename = "source")]
    pub sources: Vec<SourceConfig>,
    #[serde(skip)]
    pub path: PathBuf,
}

fn default_domain() -> String {
    crate::privacy::keys::DEFAULT_DOMAIN.to_string()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    pub database_url: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub key_file: PathBuf,
    #[serde(default)]
    pub previous_key_files: Vec<PathBuf>,
    #[serde(default = "default_domain")]
    pub domain: String,
    pub report_dir: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatesConfig {
    #[serde(default)]
    pub keep_true_dates: bool,
    #[serde(default = "min_days")]
    pub shift_min_days: i32,
    #[serde(default = "max_days")]
    pub shift_max_days: i32,
}

fn min_days() -> i32 {
    -365
}
fn max_days() -> i32 {
    -30
}

impl Default for DatesConfig {
    fn default() -> Self {
        Self {
            keep_true_dates: false,
            shift_min_days: min_days(),
            shift_max_days: max_days(),
        }
    }
}

/// One `[[source]]` of a nightly run: its `kind` says which fields it takes, and a field
/// another kind takes is an error.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum SourceConfig {
    /// Delimited text exports through one mapping.
    Csv(FilesConfig),
    /// Spreadsheets through one mapping.
    Xlsx(FilesConfig),
    /// A FHIR R4 endpoint, pulled incrementally.
    Fhir(FhirConfig),
    /// FHIR Bulk Data export folders: the folder, or each of its subfolders.
    FhirBulk(BulkConfig),
    /// A DICOM drop folder, pseudonymised into `output`, then indexed.
    Dicom(DicomConfig),
}

/// `kind = "csv"` or `"xlsx"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesConfig {
    pub name: String,
    /// The drop folder; file identities are relative to it.
    pub folder: PathBuf,
    /// Which files: `*` matches within a folder level, `**/` any folders below.
    #[serde(default = "any")]
    pub pattern: String,
    pub mapping: PathBuf,
    /// The largest cell, in bytes or e.g. `"1MiB"` (default 1 MiB): a row with a larger one
    /// is rejected (`cell_too_large`), the rest of the file loads.
    #[serde(default, deserialize_with = "crate::sources::deserialize_size")]
    pub max_cell_bytes: Option<u64>,
}

/// `kind = "fhir"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FhirConfig {
    pub name: String,
    /// The endpoint's base URL.
    pub endpoint: String,
    /// FHIR mappings, one per resource type.
    pub mappings: Vec<PathBuf>,
    /// The bearer token, in a file (mode 0600) or an environment variable.
    pub token_file: Option<PathBuf>,
    pub token_env: Option<String>,
    /// SMART Backend Services (`[source.smart]`): tokens through a signed assertion.
    pub smart: Option<crate::fhirimport::SmartSpec>,
    /// Resources per page.
    pub count: Option<u32>,
    /// Days between id sweeps of a type whose deletions the server cannot list (no
    /// type-level `_history`, as on Medplum): default 7, 0 every night.
    pub id_sweep_days: Option<u32>,
}

impl FhirConfig {
    pub fn auth(&self) -> crate::fhirimport::AuthSpec {
        crate::fhirimport::AuthSpec {
            token_file: self.token_file.clone(),
            token_env: self.token_env.clone(),
            smart: self.smart.clone(),
        }
    }
}

/// `kind = "fhir-bulk"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkConfig {
    pub name: String,
    pub folder: PathBuf,
    pub mappings: Vec<PathBuf>,
    /// The longest line (one resource), default 64 MiB: a longer one is rejected
    /// (`line_too_long`), the rest of the file loads.
    #[serde(default, deserialize_with = "crate::sources::deserialize_size")]
    pub max_line_bytes: Option<u64>,
    /// The most content of one ndjson file after decompression, default 16 GiB: a file that
    /// expands to more is rejected whole (`file_too_large`), reading stops at the limit.
    #[serde(default, deserialize_with = "crate::sources::deserialize_size")]
    pub max_decompressed_bytes: Option<u64>,
}

/// `kind = "dicom"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DicomConfig {
    pub name: String,
    pub folder: PathBuf,
    /// Where the pseudonymised tree goes (then indexed).
    pub output: PathBuf,
    /// Where quarantined originals go: outside `output` (default `<output>.quarantine`, its
    /// sibling), folders mode 0700, files 0600.
    pub quarantine: Option<PathBuf>,
    /// A profile file (default: the Basic Profile with the registry's options).
    pub profile: Option<PathBuf>,
    /// Accept files with burned-in annotation instead of quarantining them.
    #[serde(default)]
    pub accept_burned_in: bool,
}

fn any() -> String {
    "*".into()
}

impl SourceConfig {
    pub fn name(&self) -> &str {
        match self {
            SourceConfig::Csv(f) | SourceConfig::Xlsx(f) => &f.name,
            SourceConfig::Fhir(f) => &f.name,
            SourceConfig::FhirBulk(b) => &b.name,
            SourceConfig::Dicom(d) => &d.name,
        }
    }

    /// The folder the source reads, if it has one.
    pub fn folder(&self) -> Option<&Path> {
        match self {
            SourceConfig::Csv(f) | SourceConfig::Xlsx(f) => Some(&f.folder),
            SourceConfig::Fhir(_) => None,
            SourceConfig::FhirBulk(b) => Some(&b.folder),
            SourceConfig::Dicom(d) => Some(&d.folder),
        }
    }

    /// The source as a run imports it (tokens are read here).
    pub fn to_source(&self, cfg: &Config) -> Result<crate::pipeline::Source> {
        use crate::pipeline::{
            BulkSource, DicomSource, EndpointSource, FileSource, Inputs, Source, SourceKind,
        };
        let kind = match self {
            SourceConfig::Csv(f) | SourceConfig::Xlsx(f) => SourceKind::Files(FileSource {
                format: if matches!(self, SourceConfig::Csv(_)) {
                    crate::mapping::Format::Csv
                } else {
                    crate::mapping::Format::Xlsx
                },
                mapping: f.mapping.clone(),
                root: f.folder.clone(),
                inputs: Inputs::Pattern(f.pattern.clone()),
                max_cell_bytes: f
                    .max_cell_bytes
                    .unwrap_or(crate::sources::DEFAULT_MAX_CELL_BYTES),
            }),
            SourceConfig::Fhir(f) => {
                let auth = f.auth().resolve()?;
                SourceKind::FhirEndpoint(EndpointSource {
                    endpoint: f.endpoint.clone(),
                    mappings: f.mappings.clone(),
                    options: registrar_fhir::client::ClientOptions {
                        count: f.count.unwrap_or(200).clamp(1, 10_000),
                        auth,
                        ..Default::default()
                    },
                    full: false,
                    sweep_days: f.id_sweep_days.unwrap_or(DEFAULT_SWEEP_DAYS),
                })
            }
            SourceConfig::FhirBulk(b) => SourceKind::FhirBulk(BulkSource {
                folder: b.folder.clone(),
                mappings: b.mappings.clone(),
                exports_in_subfolders: true,
                limits: crate::sources::ndjson_limits(b.max_line_bytes, b.max_decompressed_bytes),
            }),
            SourceConfig::Dicom(d) => SourceKind::Dicom(DicomSource {
                input: d.folder.clone(),
                output: d.output.clone(),
                quarantine: d.quarantine.clone(),
                profile: d.profile.clone(),
                accept_burned_in: d.accept_burned_in,
                key_opts: cfg.key_opts(),
            }),
        };
        Ok(Source {
            name: self.name().to_string(),
            kind,
        })
    }
}

impl Config {
    /// Read and parse a configuration file; relative paths become relative to it.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read configuration {}", path.display()))?;
        let mut c: Config = toml::from_str(&text).map_err(|e| {
            let line = e
                .span()
                .map(|s| format!(":{}", text[..s.start].matches('\n').count() + 1))
                .unwrap_or_default();
            anyhow::anyhow!("{}{line}: {}", path.display(), e.message())
        })?;
        c.path = path.to_path_buf();
        let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let abs = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        abs(&mut c.registry.key_file);
        abs(&mut c.registry.report_dir);
        c.registry.previous_key_files.iter_mut().for_each(abs);
        if let Some(d) = c.registry.data_dir.as_mut() {
            abs(d);
        }
        for s in &mut c.sources {
            let name_ok = !s.name().is_empty()
                && s.name()
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch));
            if !name_ok {
                bail!(
                    "{}: a source name is letters, digits, `-`, `_` and `.` (it is stored in the ledger)",
                    path.display()
                );
            }
            match s {
                SourceConfig::Csv(f) | SourceConfig::Xlsx(f) => {
                    abs(&mut f.folder);
                    abs(&mut f.mapping);
                    if f.pattern.is_empty()
                        || f.pattern.starts_with('/')
                        || f.pattern.contains("..")
                    {
                        bail!(
                            "{}: source {}: `pattern` is relative to the folder, without `..`",
                            path.display(),
                            f.name
                        );
                    }
                }
                SourceConfig::Fhir(f) => {
                    f.mappings.iter_mut().for_each(abs);
                    if let Some(t) = f.token_file.as_mut() {
                        abs(t);
                    }
                    if let Some(s) = f.smart.as_mut() {
                        abs(&mut s.key_file);
                    }
                    if f.mappings.is_empty() {
                        bail!("{}: source {} needs `mappings`", path.display(), f.name);
                    }
                    let given = [
                        f.token_file.is_some(),
                        f.token_env.is_some(),
                        f.smart.is_some(),
                    ];
                    if given.iter().filter(|g| **g).count() > 1 {
                        bail!(
                            "{}: source {}: give one of token_file, token_env and [source.smart], not several",
                            path.display(),
                            f.name
                        );
                    }
                }
                SourceConfig::FhirBulk(b) => {
                    abs(&mut b.folder);
                    b.mappings.iter_mut().for_each(abs);
                    if b.mappings.is_empty() {
                        bail!("{}: source {} needs `mappings`", path.display(), b.name);
                    }
                }
                SourceConfig::Dicom(d) => {
                    abs(&mut d.folder);
                    abs(&mut d.output);
                    if let Some(q) = d.quarantine.as_mut() {
                        abs(q);
                    }
                    if let Some(p) = d.profile.as_mut() {
                        abs(p);
                    }
                }
            }
        }
        let mut names = std::collections::HashSet::new();
        for s in &c.sources {
            if !names.insert(s.name()) {
                bail!("{}: two sources are named `{}`", path.display(), s.name());
            }
        }
        Ok(c)
    }

    pub fn date_policy(&self) -> Result<DatePolicy> {
        if self.dates.keep_true_dates {
            return Ok(DatePolicy::KeepTrueDates);
        }
        Ok(DatePolicy::Shift(
            ShiftWindow::new(self.dates.shift_min_days, self.dates.shift_max_days)
                .map_err(|e| anyhow::anyhow!("{}: [dates]: {e}", self.path.display()))?,
        ))
    }

    pub fn key_opts(&self) -> crate::privacy::keys::KeyOpts {
        crate::privacy::keys::KeyOpts {
            key_file: Some(self.registry.key_file.clone()),
            domain: self.registry.domain.clone(),
            previous_key_file: self.registry.previous_key_files.clone(),
        }
    }

    pub fn db_options(
        &self,
        cli_url: Option<&str>,
        cli_data_dir: Option<&Path>,
    ) -> crate::db::DbOptions {
        crate::db::DbOptions {
            database_url: self
                .registry
                .database_url
                .clone()
                .or(cli_url.map(str::to_string)),
            data_dir: self
                .registry
                .data_dir
                .clone()
                .or(cli_data_dir.map(Path::to_path_buf)),
        }
    }
}

/// Check a configuration file thoroughly; returns every problem found.
pub fn check(path: &Path, cli_url: Option<&str>, cli_data_dir: Option<&Path>) -> Vec<String> {
    let cfg = match Config::load(path) {
        Ok(c) => c,
        Err(e) => return vec![format!("{e:#}")],
    };
    let mut problems = Vec::new();
    if let Err(e) = cfg.date_policy() {
        problems.push(format!("{e:#}"));
    }
    if let Err(e) = cfg.key_opts().load() {
        problems.push(format!("[registry] key_file: {e:#}"));
    }
    if cfg.sources.is_empty() {
        problems.push(format!("{}: no [[source]]", path.display()));
    }
    let client = cfg
        .db_options(cli_url, cli_data_dir)
        .resolve()
        .and_then(|t| {
            crate::db::migrate(&mut t.diesel()?)?;
            t.client()
        });
    let mut client = match client {
        Ok(c) => Some(c),
        Err(e) => {
            problems.push(format!("database: {e:#}"));
            None
        }
    };
    match client.as_mut().map(|c| crate::import::read_limits(c, chrono::Local::now().date_naive())) {
        Some(Ok(l)) => println!(
            "plausibility limits (registrar limits): births from {}, events from {}, ages up to {} years, no dates after today",
            l.min_birth_year, l.min_event_year, l.max_age_years
        ),
        Some(Err(e)) => problems.push(format!("database: {e:#}")),
        None => {}
    }
    for s in &cfg.sources {
        let name = s.name();
        if let Some(folder) = s.folder() {
            if !folder.is_dir() {
                problems.push(format!("source {name}: its folder does not exist"));
            }
        }
        let (mappings, want): (Vec<&Path>, crate::mapping::Format) = match s {
            SourceConfig::Csv(f) => (vec![&f.mapping], crate::mapping::Format::Csv),
            SourceConfig::Xlsx(f) => (vec![&f.mapping], crate::mapping::Format::Xlsx),
            SourceConfig::Fhir(f) => {
                if let Err(err) = url::Url::parse(&f.endpoint) {
                    problems.push(format!("source {name}: endpoint: {err}"));
                }
                if let Err(e) = f.auth().resolve() {
                    problems.push(format!("source {name}: {e:#}"));
                }
                (
                    f.mappings.iter().map(PathBuf::as_path).collect(),
                    crate::mapping::Format::Fhir,
                )
            }
            SourceConfig::FhirBulk(b) => (
                b.mappings.iter().map(PathBuf::as_path).collect(),
                crate::mapping::Format::Fhir,
            ),
            SourceConfig::Dicom(d) => {
                if let Err(e) = crate::dicomrun::load_profile(d.profile.as_deref(), false) {
                    problems.push(format!("source {name}: {e:#}"));
                }
                continue;
            }
        };
        for m in mappings {
            match crate::mapping::Mapping::load(m) {
                Err(e) => problems.push(format!("source {name}: {e:#}")),
                Ok(m) if m.spec.source.format != want => problems.push(format!(
                    "source {name}: {} reads {:?}, but the source is {want:?}",
                    m.path.display(),
                    m.spec.source.format
                )),
                Ok(m) => {
                    if let Some(c) = client.as_mut() {
                        if let Err(errs) = crate::mapping::check::compile(m, c) {
                            problems
                                .extend(errs.into_iter().map(|e| format!("source {name}: {e}")));
                        }
                    }
                }
            }
        }
    }
    problems
}
