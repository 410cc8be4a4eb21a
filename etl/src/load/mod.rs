//! Loading into PostgreSQL: the one path every source shares.

pub mod batch;
pub mod copy;
