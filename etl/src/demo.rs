//! `registrar demo`: the main job on sample data, in the embedded registry by default.
//!
//! Migrates the registry, creates a demo key next to the embedded cluster (once), imports the
//! bundled GBSG2 trial spreadsheet through its mapping (a second run finds it unchanged and
//! skips it), verifies the audit chain, and prints the registry's status.

use crate::db::{self, DbOptions};
use crate::import::{import_file, ImportOptions};
use crate::mapping::{check::compile, Mapping};
use crate::privacy::keys::{KeyOpts, DEFAULT_DOMAIN};
use crate::{privacy, progress, runs, status};
use anyhow::{Context, Result};
use registrar_anonymizer::key::Key;
use std::path::PathBuf;
use std::process::ExitCode;

const GBSG2_MAPPING: &str = include_str!("../../mappings/gbsg2/gbsg2.toml");
const GBSG2_DATA: &str = include_str!("../../tests/data/gbsg2.csv");

fn demo_dir(opts: &DbOptions) -> PathBuf {
    let data = opts
        .data_dir
        .clone()
        .unwrap_or_else(db::embedded::default_data_dir);
    data.parent()
        .map(|p| p.join("demo"))
        .unwrap_or_else(|| PathBuf::from("registrar-demo"))
}

/// Run the demo.
pub fn run(opts: &DbOptions, json: bool) -> Result<ExitCode> {
    let target = opts.resolve()?;
    let mut conn = target.diesel()?;
    let applied = db::migrate(&mut conn)?;

    // Sample sources and a demo key, kept between runs so the second run is incremental.
    let dir = demo_dir(opts);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let key_path = dir.join("demo.key");
    if !key_path.exists() {
        Key::write_new(&key_path).context("cannot create the demo key")?;
    }
    let mapping_path = dir.join("gbsg2.toml");
    let data_path = dir.join("gbsg2.csv");
    std::fs::write(&mapping_path, GBSG2_MAPPING)?;
    if std::fs::read_to_string(&data_path).ok().as_deref() != Some(GBSG2_DATA) {
        std::fs::write(&data_path, GBSG2_DATA)?;
    }
    let keys = KeyOpts {
        key_file: Some(key_path.clone()),
        domain: DEFAULT_DOMAIN.into(),
        previous_key_file: vec![],
    }
    .load()?;
    let mut client = target.client()?;
    let compiled = compile(Mapping::load(&mapping_path)?, &mut client)
        .map_err(|e| anyhow::anyhow!("bundled mapping: {}", e.join("; ")))?;
    privacy::audit::record_configuration(
        &mut client,
        keys.current.key_id().as_str(),
        keys.current.domain(),
        &crate::import::date_policy_text(&ImportOptions::default().policy),
    )?;
    let run_id = runs::start(&mut conn, "demo", Some(keys.current.key_id().as_str()))?;
    let bar = progress::count_bar(None, "gbsg2", "rows");
    let mut seq = target.client()?;
    let outcome = import_file(
        &mut client,
        &mut seq,
        &compiled,
        &keys,
        run_id,
        &data_path,
        &ImportOptions::default(),
        &bar,
    )?;
    bar.finish_and_clear();
    runs::finish(
        &mut conn,
        run_id,
        "succeeded",
        runs::Counts {
            rows_in: outcome.rows_in,
            rows_loaded: outcome.rows_loaded,
            rows_rejected: outcome.rows_rejected,
            rows_skipped: outcome.rows_skipped,
        },
        None,
    )?;
    let verified = privacy::audit::verify(&mut client, Vec::new())?;
    let s = status::collect(&target)?;
    if json {
        println!(
            "{}",
            serde_json::json!({ "applied_migrations": applied, "import": outcome, "audit_intact": verified.is_ok(), "status": s })
        );
    } else {
        if !applied.is_empty() {
            println!("applied {} migrations", applied.len());
        }
        match outcome.status.as_str() {
            "loaded" => println!(
                "imported the GBSG2 trial spreadsheet: {} patients, pseudonymised with key {} ({} rejected)",
                outcome.rows_loaded,
                keys.current.key_id(),
                outcome.rows_rejected
            ),
            _ => println!(
                "GBSG2 trial spreadsheet: {} ({})",
                outcome.status,
                outcome.reason.as_deref().unwrap_or("")
            ),
        }
        println!(
            "audit log: {} ({} entries)",
            if verified.is_ok() {
                "intact"
            } else {
                "ALTERED"
            },
            verified.entries
        );
        println!();
        print!("{}", status::render(&s));
        println!("\nsample sources and the demo key: {}", dir.display());
        println!("connect with: psql \"{}\"", target.conninfo());
    }
    Ok(ExitCode::SUCCESS)
}
