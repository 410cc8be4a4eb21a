//! `registrar demo`: the main job on sample data, in the embedded registry by default.

use crate::db::{self, DbOptions};
use crate::status;
use anyhow::Result;
use std::process::ExitCode;

/// Migrate the registry and print its status.
pub fn run(opts: &DbOptions, json: bool) -> Result<ExitCode> {
    let target = opts.resolve()?;
    let mut conn = target.diesel()?;
    let applied = db::migrate(&mut conn)?;
    let s = status::collect(&target)?;
    if json {
        println!(
            "{}",
            serde_json::json!({ "applied_migrations": applied, "status": s })
        );
    } else {
        if !applied.is_empty() {
            println!("applied {} migrations", applied.len());
        }
        print!("{}", status::render(&s));
        println!("\nconnect with: psql \"{}\"", target.conninfo());
    }
    Ok(ExitCode::SUCCESS)
}
