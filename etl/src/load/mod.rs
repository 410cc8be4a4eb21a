//! Loading into PostgreSQL: the one path every source shares.

pub mod copy;
