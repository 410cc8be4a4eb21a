//! End-to-end tests against a real PostgreSQL: `DATABASE_URL` when set, else an embedded
//! cluster in the system temp directory. Every test gets its own fresh database, so the
//! tests run in parallel.

mod support;

mod citus_sql;
mod cli;
mod dicom;
mod embedded;
mod eras;
mod faults;
mod federation;
mod fhir;
mod fhir_medplum;
mod hospital;
mod identity;
mod imaging;
mod import;
mod limits;
mod mapping_language;
mod medplum;
mod nightly;
mod omop;
mod privacy;
mod quality;
mod research;
mod roles;
mod schema_conformance;
mod smart;
mod synth;
mod synth_dicom;
mod vocab;
