//! `registrar key`, `registrar pseudonym` and `registrar audit`.

use super::GlobalOpts;
use crate::db;
use crate::privacy::{audit, persons, report};
use anyhow::{bail, Context, Result};
use chrono::{NaiveDate, TimeZone, Utc};
use clap::{Subcommand, ValueEnum};
use registrar_anonymizer::key::Key;
use registrar_anonymizer::pseudonym::IdentifierType;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Write a new random 256-bit key to FILE (mode 0600) and print its key id.
    ///
    /// Keep the key off the database host and out of its backups; whoever holds it can
    /// recompute pseudonyms. The key id (derived from the key) is what the registry records.
    New {
        /// Where to write the key (must not exist).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Record a key rotation (from --previous-key-file to --key-file) in the audit log.
    ///
    /// Procedure: (1) `registrar key new --out new.key`; (2) `registrar key rotate --key-file
    /// new.key --previous-key-file old.key`; (3) run imports with both options until `registrar
    /// key status` shows every person reached under the new key: each import pseudonymises
    /// the source identifiers with both keys and bridges the new pseudonyms to the existing
    /// person_id; (4) retire the old key. person_ids never change.
    Rotate,
    /// Show the person map per key, domain and identifier type, and rotation progress.
    Status,
    /// Print the key id of --key-file.
    Id,
}

#[derive(Debug, Subcommand)]
pub enum PseudonymCommand {
    /// Recompute the pseudonym of an identifier and find its person_id.
    ///
    /// Needs the key, a reason, and writes an audit entry. There is no table of original
    /// identifiers: this is the only way back from a person to the registry.
    Lookup {
        /// The identifier (use `-` to read it from standard input, keeping it out of the
        /// process list and shell history).
        #[arg(long)]
        identifier: String,
        /// Identifier type: `niss`, `mrn`, `study-subject`, or a type the registry declared
        /// (`registrar identifiers declare`; `registrar identifiers list` shows them).
        #[arg(long = "type")]
        id_type: String,
        /// Why the lookup is needed (recorded in the audit log; no identifying values).
        #[arg(long)]
        why: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Text,
    Csv,
    Json,
    Html,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Make the privacy officer's checkpoint signing key: writes the signer key to FILE (mode
    /// 0600; keep it with the privacy officer, never on the ETL host) and prints the verifier
    /// key (public: give it to whoever verifies the log).
    Keygen {
        /// A name for the key, e.g. privacy-officer.ghent (no spaces or '+').
        #[arg(long)]
        name: String,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Append a checkpoint entry, then write a signed checkpoint of the head of the audit log
    /// (C2SP tlog-checkpoint: origin, number of entries, head hash, signed with Ed25519) to
    /// FILE, for the privacy officer to keep outside the database. The checkpoint covers its
    /// own entry.
    Checkpoint {
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// The signer key file made by `audit keygen`.
        #[arg(long, value_name = "FILE")]
        signing_key: PathBuf,
    },
    /// Recompute the hash chain and check it against every kept checkpoint.
    ///
    /// Catches edited, deleted, inserted and truncated entries, and a rewrite that recomputed
    /// every hash (through the checkpoints: located at or before the first checkpoint it
    /// contradicts). Each checkpoint's signature must verify with a --verifier-key, and it
    /// must be of this registry's log. Names the first bad entry. Exit code 0 when the log is
    /// intact, 1 when it is not.
    Verify {
        /// Checkpoint files written earlier by `audit checkpoint`.
        #[arg(long, value_name = "FILE")]
        checkpoint: Vec<PathBuf>,
        /// The verifier key printed by `audit keygen` (or a file holding it); required with
        /// --checkpoint.
        #[arg(long, value_name = "KEY")]
        verifier_key: Vec<String>,
    },
    /// What was pseudonymised, when, with which key, how many values each rule removed,
    /// rejects and lookups.
    Report {
        /// First day to include (YYYY-MM-DD, UTC).
        #[arg(long)]
        since: Option<NaiveDate>,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// Write to FILE instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

pub fn key_command(g: &GlobalOpts, cmd: KeyCommand) -> Result<ExitCode> {
    match cmd {
        KeyCommand::New { out } => {
            let key = Key::write_new(&out).context("cannot create the key file")?;
            if g.json {
                println!(
                    "{}",
                    serde_json::json!({ "key_id": key.key_id().as_str(), "file": out })
                );
            } else {
                println!("wrote a new key to {} (mode 0600)", out.display());
                println!("key id: {}", key.key_id());
            }
            Ok(ExitCode::SUCCESS)
        }
        KeyCommand::Id => {
            let keys = g.keys.load()?;
            println!("{}", keys.current.key_id());
            Ok(ExitCode::SUCCESS)
        }
        KeyCommand::Rotate => {
            let keys = g.keys.load()?;
            if keys.previous.is_empty() {
                bail!("name the key being replaced with --previous-key-file OLD (and the new one with --key-file)");
            }
            let target = g.db().resolve()?;
            db::migrate(&mut target.diesel()?)?;
            let mut client = target.client()?;
            let old: Vec<&str> = keys.previous.iter().map(|p| p.key_id().as_str()).collect();
            // The key being replaced must be the registry's current key.
            let known = crate::ledger::Ledger::registry_keys(&mut client)?;
            if let Some((cur, cur_domain, _)) = known.iter().find(|k| k.2) {
                let domain = keys.current.domain();
                if cur_domain != domain {
                    bail!("the registry's pseudonyms are in domain `{cur_domain}`, not `{domain}`");
                }
                if cur == keys.current.key_id().as_str() {
                    bail!("{cur} is already the registry's current key");
                }
                if !old.contains(&cur.as_str()) {
                    bail!(
                        "the registry's current key is {cur}: name its file with --previous-key-file"
                    );
                }
            }
            let mut tx = client.transaction()?;
            crate::ledger::Ledger::set_registry_key(
                &mut tx,
                keys.current.key_id().as_str(),
                keys.current.domain(),
            )?;
            let (seq, _) = audit::append(
                &mut tx,
                &audit::Record {
                    action: audit::action::KEY_ROTATION,
                    run_id: None,
                    locator_hash: None,
                    key_id: Some(keys.current.key_id().as_str()),
                    detail: serde_json::json!({
                        "old_key_id": old.join(","),
                        "new_key_id": keys.current.key_id().as_str(),
                        "domain": keys.current.domain(),
                    }),
                },
            )?;
            tx.commit()?;
            println!(
                "recorded the rotation from {} to {} (audit entry #{seq}).\n\
                 Run imports with --key-file (new) and --previous-key-file (old) until \
                 `registrar key status` shows every person under the new key.",
                old.join(", "),
                keys.current.key_id()
            );
            Ok(ExitCode::SUCCESS)
        }
        KeyCommand::Status => {
            let target = g.db().resolve()?;
            let mut c = target.client()?;
            let rows = crate::ledger::Ledger::person_map_by_key(&mut c)?;
            let (persons, _) = crate::ledger::Ledger::persons_under_key(&mut c, "")?;
            println!("{persons} persons in the person map");
            println!(
                "{:<22} {:<16} {:<14} {:>12} {:>10}",
                "key id", "domain", "type", "pseudonyms", "persons"
            );
            for u in &rows {
                println!(
                    "{:<22} {:<16} {:<14} {:>12} {:>10}",
                    u.key_id, u.domain, u.identifier_type, u.pseudonyms, u.persons
                );
            }
            if let Ok(keys) = g.keys.load() {
                let (_, reached) = crate::ledger::Ledger::persons_under_key(
                    &mut c,
                    keys.current.key_id().as_str(),
                )?;
                println!(
                    "under the current key {}: {reached} of {persons} persons",
                    keys.current.key_id()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub fn pseudonym_command(g: &GlobalOpts, cmd: PseudonymCommand) -> Result<ExitCode> {
    let PseudonymCommand::Lookup {
        identifier,
        id_type,
        why,
    } = cmd;
    if why.trim().len() < 5 {
        bail!(
            "--why must say why this re-identification is needed (it is recorded in the audit log)"
        );
    }
    let keys = g.keys.load()?;
    let identifier = if identifier == "-" {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        line.trim_end_matches(['\n', '\r']).to_string()
    } else {
        identifier
    };
    let target = g.db().resolve()?;
    let mut c = target.client()?;
    let mut tx = c.transaction()?;
    // The registry's declared types, beside the built-in ones.
    let declared = crate::privacy::identifiers::load(&mut tx)?;
    let Ok(ty) = id_type.parse::<IdentifierType>() else {
        let names: Vec<&str> = IdentifierType::ALL
            .iter()
            .chain(&declared)
            .map(|t| t.as_str())
            .collect();
        bail!(
            "unknown identifier type `{id_type}` (the registry knows {}; declare another with `registrar identifiers declare`)",
            names.join(", ")
        );
    };
    let (pseudonym, person_id) = persons::lookup_person(&mut tx, &keys, ty, &identifier)?;
    audit::append(
        &mut tx,
        &audit::Record {
            action: audit::action::LOOKUP,
            run_id: None,
            locator_hash: None,
            key_id: Some(keys.current.key_id().as_str()),
            detail: serde_json::json!({
                "why": why.trim(),
                "identifier_type": ty.as_str(),
                "domain": keys.current.domain(),
                "found": person_id.is_some(),
                "person_id": person_id,
            }),
        },
    )?;
    tx.commit()?;
    if g.json {
        println!(
            "{}",
            serde_json::json!({ "pseudonym": pseudonym.as_str(), "person_id": person_id })
        );
    } else {
        println!("pseudonym: {pseudonym}");
        match person_id {
            Some(id) => println!("person_id: {id}"),
            None => println!("person_id: none (this person is not in the registry)"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn audit_command(g: &GlobalOpts, cmd: AuditCommand) -> Result<ExitCode> {
    let target = g.db().resolve()?;
    let mut c = target.client()?;
    match cmd {
        AuditCommand::Keygen { name, out } => {
            let k = registrar_anonymizer::note::SignerKey::generate(&name)?;
            crate::privacy::keys::write_secret_file(&out, "signing key", &k.to_text())?;
            let v = k.verifier().to_text();
            if g.json {
                println!("{}", serde_json::json!({ "verifier_key": v, "file": out }));
            } else {
                println!(
                    "signer key written to {} (keep it off the ETL host)",
                    out.display()
                );
                println!("verifier key: {v}");
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Checkpoint { out, signing_key } => {
            let signer = audit::signer_key(&signing_key)?;
            let cp = audit::checkpoint(&mut c, &signer)?;
            audit::write_checkpoint(&out, &cp)?;
            if g.json {
                println!(
                    "{}",
                    serde_json::json!({ "seq": cp.seq, "entry_hash": cp.entry_hash, "file": out })
                );
            } else {
                println!(
                    "checkpoint of entry #{} ({}) written to {}; keep it outside the database",
                    cp.seq,
                    cp.entry_hash,
                    out.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Verify {
            checkpoint,
            verifier_key,
        } => {
            if !checkpoint.is_empty() && verifier_key.is_empty() {
                bail!(
                    "a checkpoint proves nothing without its signature: give --verifier-key \
                     (the key `audit keygen` printed)"
                );
            }
            let keys = verifier_key
                .iter()
                .map(|k| audit::verifier_key(k))
                .collect::<Result<Vec<_>>>()?;
            let origin = audit::origin(&mut c)?;
            let cps = checkpoint
                .iter()
                .map(|p| audit::read_checkpoint(p, &keys, &origin))
                .collect::<Result<Vec<_>>>()?;
            let r = audit::verify(&mut c, cps)?;
            if g.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else if r.is_ok() {
                match &r.head {
                    Some((seq, hash)) => println!(
                        "audit log intact: {} entries, head #{seq} {hash}; {} checkpoint(s) verified",
                        r.entries,
                        checkpoint.len()
                    ),
                    None => println!("audit log is empty"),
                }
            } else {
                let first = r.first_problem().expect("a problem");
                println!(
                    "AUDIT LOG ALTERED: first bad entry #{}: {}",
                    first.seq, first.message
                );
                for p in r.problems.iter().skip(1) {
                    println!("  also #{}: {}", p.seq, p.message);
                }
            }
            Ok(if r.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        AuditCommand::Report { since, format, out } => {
            let since = since.map(|d| Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).unwrap()));
            let mut entries = Vec::new();
            audit::for_each_entry(&mut c, since, |e| {
                entries.push(e);
                Ok(())
            })?;
            let mut r = report::build(entries, since)?;
            r.head = audit::head(&mut c)?;
            let text = match format {
                Format::Text => report::text(&r),
                Format::Csv => report::csv(&r),
                Format::Json => serde_json::to_string_pretty(&r)? + "\n",
                Format::Html => report::html(&r),
            };
            match out {
                Some(p) => {
                    crate::files::write_atomically(&p, text.as_bytes())?;
                    println!("wrote {}", p.display());
                }
                None => print!("{text}"),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
