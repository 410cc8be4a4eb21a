//! # registrar-fhir
//!
//! What registrar needs of FHIR R4, without a database and without the registry's mapping
//! language:
//!
//! - [`resource`]: one resource from JSON, checked against fhir-sdk's R4B models (which read
//!   R4 JSON), with its type, logical id and `meta.lastUpdated`. A resource that does not
//!   parse yields an error naming the type, id and the reason, never a panic, so one bad
//!   resource cannot sink its page.
//! - [`path`]: a small, predictable path language to pull values out of a resource
//!   (`code.coding[system=http://loinc.org].code`), for mapping files.
//! - [`ndjson`]: the files of a Bulk Data `$export` (one per type, plain or gzip), streamed
//!   line by line.
//! - [`client`]: a FHIR search client that follows Bundle `next` links with `_count` and
//!   `_lastUpdated`, bearer-token auth, timeouts, retries with `Retry-After` and exponential
//!   backoff on 429 and 5xx and on dropped connections, and refuses next links that loop or
//!   leave the server's origin (the token is never sent elsewhere, never logged).
//! - [`smart`]: SMART Backend Services, access tokens for a client id through assertions
//!   signed with its RS384 or ES384 key, kept and renewed before they expire.
//!
//! fhir-sdk's generated models take long to compile; keeping them in this crate means they
//! are compiled once, not on every change to the importer.

pub mod client;
pub mod ndjson;
pub mod path;
pub mod resource;
pub mod smart;

pub use resource::{parse_resource, Resource, ResourceError};
