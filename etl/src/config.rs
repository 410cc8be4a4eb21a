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
//! pattern = "measurements*.csv"     # * matches any run of characters
//! mapping = "mappings/hospital/measurements.toml"
//!
//! [[source]]
//! name = "his-fhir"
//! kind = "fhir"                     # a FHIR R4 endpoint, pulled incrementally
//! endpoint = "https://fhir.hospital.example/r4"
//! token_file = "/etc/registrar/fhir.token"   # or token_env = "VAR"; optional
//! mappings = ["mappings/fhir/patient.toml", "mappings/fhir/observation.toml"]
//!
//! [[source]]
//! name = "fhir-exports"
//! kind = "fhir-bulk"                # Bulk Data export folders: the folder, or each subfolder
//! folder = "/data/drop/fhir"
//! mappings = ["mappings/fhir/patient.toml", "mappings/fhir/observation.toml"]
//!
//! [[source]]
//! name = "rt-dicom"
//! kind = "dicom"                    # pseudonymised into `output`, then indexed
//! folder = "/data/drop/dicom"
//! output = "/data/registry/dicom"
//! profile = "dicom-profile.toml"    # optional
//! ```

use anyhow::{bail, Context, Result};
use registrar_anonymizer::dateshift::{DatePolicy, ShiftWindow};
use serde::Deserialize;
use std::path::{Path, PathBuf};

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

/// Source kinds a nightly run reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Csv,
    Xlsx,
    Fhir,
    #[serde(rename = "fhir-bulk")]
    FhirBulk,
    Dicom,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub name: String,
    pub kind: SourceKind,
    /// csv, xlsx, fhir-bulk, dicom: the drop folder.
    #[serde(default)]
    pub folder: PathBuf,
    #[serde(default = "any")]
    pub pattern: String,
    /// csv, xlsx: the mapping file.
    #[serde(default)]
    pub mapping: PathBuf,
    /// fhir, fhir-bulk: the FHIR mappings, one per resource type.
    #[serde(default)]
    pub mappings: Vec<PathBuf>,
    /// fhir: the endpoint's base URL.
    pub endpoint: Option<String>,
    /// fhir: the bearer token, in a file (mode 0600) or an environment variable.
    pub token_file: Option<PathBuf>,
    pub token_env: Option<String>,
    /// fhir: resources per page.
    pub count: Option<u32>,
    /// dicom: where the pseudonymised tree goes (then indexed).
    pub output: Option<PathBuf>,
    /// dicom: a profile file (default: the Basic Profile with the registry's options).
    pub profile: Option<PathBuf>,
    /// dicom: accept files with burned-in annotation instead of quarantining them.
    #[serde(default)]
    pub accept_burned_in: bool,
}

fn any() -> String {
    "*".into()
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
            let needs = |what: &str, missing: bool| -> Result<()> {
                if missing {
                    bail!(
                        "{}: source {} (kind {:?}) needs `{what}`",
                        path.display(),
                        s.name,
                        s.kind
                    );
                }
                Ok(())
            };
            match s.kind {
                SourceKind::Csv | SourceKind::Xlsx => {
                    needs("folder", s.folder.as_os_str().is_empty())?;
                    needs("mapping", s.mapping.as_os_str().is_empty())?;
                }
                SourceKind::Fhir => {
                    needs("endpoint", s.endpoint.is_none())?;
                    needs("mappings", s.mappings.is_empty())?;
                }
                SourceKind::FhirBulk => {
                    needs("folder", s.folder.as_os_str().is_empty())?;
                    needs("mappings", s.mappings.is_empty())?;
                }
                SourceKind::Dicom => {
                    needs("folder", s.folder.as_os_str().is_empty())?;
                    needs("output", s.output.is_none())?;
                }
            }
            if !s.folder.as_os_str().is_empty() {
                abs(&mut s.folder);
            }
            if !s.mapping.as_os_str().is_empty() {
                abs(&mut s.mapping);
            }
            s.mappings.iter_mut().for_each(abs);
            for p in [&mut s.token_file, &mut s.output, &mut s.profile]
                .into_iter()
                .flatten()
            {
                abs(p);
            }
        }
        let mut names = std::collections::HashSet::new();
        for s in &c.sources {
            if !names.insert(s.name.as_str()) {
                bail!("{}: two sources are named `{}`", path.display(), s.name);
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

/// Whether a file name matches a pattern where `*` matches any run of characters.
pub fn matches(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || !name.ends_with(last) || name.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// The files of a source, sorted by name.
pub fn source_files(s: &SourceConfig) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for e in std::fs::read_dir(&s.folder).with_context(|| {
        format!(
            "source {}: cannot read folder {}",
            s.name,
            s.folder.display()
        )
    })? {
        let e = e?;
        if e.file_type()?.is_file() && matches(&s.pattern, &e.file_name().to_string_lossy()) {
            files.push(e.path());
        }
    }
    files.sort();
    Ok(files)
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
    for s in &cfg.sources {
        if s.kind != SourceKind::Fhir && !s.folder.is_dir() {
            problems.push(format!(
                "source {}: folder {} does not exist",
                s.name,
                s.folder.display()
            ));
        }
        match s.kind {
            SourceKind::Csv | SourceKind::Xlsx => {}
            SourceKind::Fhir | SourceKind::FhirBulk => {
                if let Some(e) = &s.endpoint {
                    if let Err(err) = url::Url::parse(e) {
                        problems.push(format!("source {}: endpoint `{e}`: {err}", s.name));
                    }
                }
                for m in &s.mappings {
                    match crate::mapping::Mapping::load(m) {
                        Err(e) => problems.push(format!("source {}: {e:#}", s.name)),
                        Ok(m) if m.spec.source.format != crate::mapping::Format::Fhir => problems
                            .push(format!(
                                "source {}: {} is not a FHIR mapping",
                                s.name,
                                m.path.display()
                            )),
                        Ok(m) => {
                            if let Some(c) = client.as_mut() {
                                if let Err(errs) = crate::mapping::check::compile(m, c) {
                                    problems.extend(
                                        errs.into_iter().map(|e| format!("source {}: {e}", s.name)),
                                    );
                                }
                            }
                        }
                    }
                }
                continue;
            }
            SourceKind::Dicom => {
                if let Err(e) = crate::dicomrun::load_profile(s.profile.as_deref(), false) {
                    problems.push(format!("source {}: {e:#}", s.name));
                }
                continue;
            }
        }
        match crate::mapping::Mapping::load(&s.mapping) {
            Err(e) => problems.push(format!("source {}: {e:#}", s.name)),
            Ok(m) => {
                let fmt_ok = matches!(
                    (s.kind, m.spec.source.format),
                    (SourceKind::Csv, crate::mapping::Format::Csv)
                        | (SourceKind::Xlsx, crate::mapping::Format::Xlsx)
                );
                if !fmt_ok {
                    problems.push(format!(
                        "source {}: kind {:?} but the mapping reads another format",
                        s.name, s.kind
                    ));
                }
                if let Some(c) = client.as_mut() {
                    if let Err(errs) = crate::mapping::check::compile(m, c) {
                        problems
                            .extend(errs.into_iter().map(|e| format!("source {}: {e}", s.name)));
                    }
                }
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn patterns() {
        assert!(matches("*", "x.csv"));
        assert!(matches("*.csv", "lab.csv"));
        assert!(!matches("*.csv", "lab.csv.bak"));
        assert!(matches("measurements*.csv", "measurements_2026-11-26.csv"));
        assert!(matches("a*b*c", "a-x-b-y-c"));
        assert!(!matches("a*b*c", "a-x-c"));
        assert!(matches("exact.csv", "exact.csv"));
        assert!(!matches("exact.csv", "other.csv"));
    }
}
