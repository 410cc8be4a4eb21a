//! Declared identifier types (`registrar identifiers`): the registry's own kinds of person
//! identifier beside the built-in NISS, MRN and study-subject ids, kept in
//! `registry.identifier_type` (never changed once declared: the rules decide the
//! pseudonyms) and made known to the pseudonymiser ([`registrar_anonymizer::pseudonym::declare`])
//! before a mapping is compiled, so that `type = "us-ssn"` in a mapping works everywhere a
//! built-in type does, each type a pseudonym domain of its own.

use anyhow::{bail, Context, Result};
use postgres::GenericClient;
use registrar_anonymizer::pseudonym::{
    declare, CheckDigit, DeclaredType, IdentifierType, Normalisation,
};

/// A declared type as stored, with its description.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Declared {
    pub name: String,
    pub normalisation: &'static str,
    pub min_length: i32,
    pub max_length: i32,
    pub check_digit: Option<&'static str>,
    pub description: String,
}

fn rules(d: &Declared) -> Result<DeclaredType> {
    let normalisation = Normalisation::ALL
        .iter()
        .find(|(n, _)| *n == d.normalisation)
        .map(|(_, n)| *n)
        .context("unknown normalisation")?;
    let check = match d.check_digit {
        None => None,
        Some(c) => Some(
            CheckDigit::ALL
                .iter()
                .find(|(n, _)| *n == c)
                .map(|(_, k)| *k)
                .context("unknown check digit")?,
        ),
    };
    Ok(DeclaredType {
        name: d.name.clone(),
        normalisation,
        min_len: u16::try_from(d.min_length).context("length")?,
        max_len: u16::try_from(d.max_length).context("length")?,
        check,
    })
}

fn known(all: &[(&'static str, impl Copy)], s: &str, what: &str) -> Result<&'static str> {
    match all.iter().find(|(n, _)| *n == s) {
        Some((n, _)) => Ok(n),
        None => bail!(
            "unknown {what} `{s}` (one of {})",
            all.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// The declared types of the registry.
pub fn list(db: &mut impl GenericClient) -> Result<Vec<Declared>> {
    let rows = db
        .query(
            "SELECT name, normalisation, min_length, max_length, check_digit, description
               FROM registry.identifier_type ORDER BY name",
            &[],
        )
        .context("cannot read registry.identifier_type")?;
    rows.iter()
        .map(|r| {
            Ok(Declared {
                name: r.get(0),
                normalisation: known(&Normalisation::ALL, r.get(1), "normalisation")?,
                min_length: r.get(2),
                max_length: r.get(3),
                check_digit: r
                    .get::<_, Option<&str>>(4)
                    .map(|c| known(&CheckDigit::ALL, c, "check digit"))
                    .transpose()?,
                description: r.get(5),
            })
        })
        .collect()
}

/// Make the registry's declared types known to this process; returns them.
pub fn load(db: &mut impl GenericClient) -> Result<Vec<IdentifierType>> {
    list(db)?
        .iter()
        .map(|d| declare(rules(d)?).with_context(|| format!("identifier type `{}`", d.name)))
        .collect()
}

/// What `registrar identifiers declare` asks for.
#[derive(Debug, Clone)]
pub struct Declaration {
    pub name: String,
    pub normalisation: String,
    pub min_length: i32,
    pub max_length: i32,
    pub check_digit: Option<String>,
    pub description: String,
}

/// Declare a type (in the caller's transaction, audited). The same declaration again is a
/// no-op; other rules under a declared name are refused. Returns whether it was new.
pub fn add(db: &mut impl GenericClient, d: &Declaration) -> Result<bool> {
    let declared = Declared {
        name: d.name.clone(),
        normalisation: known(&Normalisation::ALL, &d.normalisation, "normalisation")?,
        min_length: d.min_length,
        max_length: d.max_length,
        check_digit: d
            .check_digit
            .as_deref()
            .map(|c| known(&CheckDigit::ALL, c, "check digit"))
            .transpose()?,
        description: d.description.clone(),
    };
    load(db)?;
    declare(rules(&declared)?)?;
    let n = db
        .execute(
            "INSERT INTO registry.identifier_type
                    (name, normalisation, min_length, max_length, check_digit, description)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO NOTHING",
            &[
                &declared.name,
                &declared.normalisation,
                &declared.min_length,
                &declared.max_length,
                &declared.check_digit,
                &declared.description,
            ],
        )
        .map_err(|e| anyhow::anyhow!("{}", crate::db::pg_message(&e)))?;
    if n == 1 {
        crate::privacy::audit::append(
            db,
            &crate::privacy::audit::Record {
                action: crate::privacy::audit::action::CONFIGURATION,
                run_id: None,
                locator_hash: None,
                key_id: None,
                detail: serde_json::json!({ "identifier_type_declared": declared }),
            },
        )?;
    }
    Ok(n == 1)
}
