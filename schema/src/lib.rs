//! # registrar-schema
//!
//! The database side of registrar, as Rust types:
//!
//! - [`cdm`]: diesel `table!` definitions of every OMOP CDM 5.4 table (schema `cdm`), including
//!   the oncology `episode` / `episode_event` tables and the medical-imaging extension
//!   (`image_occurrence`, `image_feature`). Generated from the CDM column list by
//!   `schema/gen/gen_cdm.py`.
//! - [`registry`]: the toolkit's own bookkeeping (schema `registry`): import runs, source files
//!   with content hashes, rejects, row lineage, the person map and the hash-chained audit log.
//! - [`models`]: insertable and queryable structs for the registry tables.
//! - [`MIGRATIONS`]: the SQL migrations in `migrations/`, embedded in the binary so a
//!   fresh database can be brought up to date without any file on disk.
//! - [`introspect`] and [`cdm_columns`]: a description of every diesel column (name, PostgreSQL
//!   type, nullability) derived from the diesel types themselves, so a test can prove the Rust
//!   definitions match the migrated catalog.
//!
//! Invariant: no table in either schema holds an identifying value. Persons are keyed
//! pseudonyms (`registry.person_map`) and integer `person_id`s; locators are keyed hashes.

pub mod cdm;
pub mod cdm_columns;
pub mod introspect;
pub mod models;
pub mod registry;

use diesel_migrations::{embed_migrations, EmbeddedMigrations};

/// Every migration in `migrations/`, embedded at compile time.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations");

/// Schemas owned by registrar (created and dropped by the migrations).
pub const SCHEMAS: &[&str] = &["cdm", "registry", "research"];
