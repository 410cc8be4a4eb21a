//! # registrar-etl
//!
//! Everything between a hospital's export and the registry: where the database is
//! ([`db`], including the private [`db::embedded`] cluster), the one load path every source
//! shares ([`load`]), reference data ([`vocab`]), bookkeeping of runs ([`runs`]) and the
//! `registrar` command line ([`cli`]).
//!
//! Data flows one way: source -> pseudonymise (the `registrar-anonymizer` crate) -> map ->
//! load. No identifying value is ever written to the registry or a log.

pub mod cli;
pub mod cohort;
pub mod config;
pub mod db;
pub mod demo;
pub mod derive;
pub mod dicomrun;
pub mod error;
pub mod failpoint;
pub mod federation;
pub mod fhirimport;
pub mod files;
pub mod imaging;
pub mod import;
pub mod ledger;
pub mod load;
pub mod mapping;
pub mod marts;
pub mod nightly;
pub mod pipeline;
pub mod privacy;
pub mod progress;
pub mod quality;
pub mod roles;
pub mod runs;
pub mod sources;
pub mod status;
pub mod vocab;

pub use error::Error;
