//! Diesel definitions of the `registry` schema (see `migrations/*_registry/up.sql`).

diesel::table! {
    registry.import_run (run_id) {
        run_id -> Int8,
        command -> Text,
        started_at -> Timestamptz,
        finished_at -> Nullable<Timestamptz>,
        status -> Text,
        actor_os_user -> Text,
        actor_db_role -> Text,
        key_id -> Nullable<Text>,
        registrar_version -> Text,
        rows_in -> Int8,
        rows_loaded -> Int8,
        rows_rejected -> Int8,
        rows_skipped -> Int8,
        message -> Nullable<Text>,
        rows_unchanged -> Int8,
        cells_nulled -> Int8,
        reported_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    registry.source_file (source_file_id) {
        source_file_id -> Int8,
        source_kind -> Text,
        locator_hash -> Text,
        content_sha256 -> Text,
        byte_size -> Int8,
        mapping_name -> Nullable<Text>,
        run_id -> Int8,
        status -> Text,
        rows_in -> Int8,
        rows_loaded -> Int8,
        rows_rejected -> Int8,
        rows_skipped -> Int8,
        reason -> Nullable<Text>,
        seen_at -> Timestamptz,
        source_name -> Text,
        mapping_sha256 -> Nullable<Text>,
        series_hash -> Nullable<Text>,
        version_key -> Nullable<Text>,
        reason_code -> Nullable<Text>,
        rows_unchanged -> Int8,
        cells_nulled -> Int8,
        records_added -> Int8,
        records_updated -> Int8,
        records_unchanged -> Int8,
        records_deleted -> Int8,
    }
}

diesel::table! {
    registry.reject (reject_id) {
        reject_id -> Int8,
        run_id -> Int8,
        source_file_id -> Nullable<Int8>,
        row_number -> Nullable<Int8>,
        column_name -> Nullable<Text>,
        reason_code -> Text,
        reason -> Text,
        created_at -> Timestamptz,
        outcome -> Text,
        field -> Nullable<Text>,
        mapping_file -> Nullable<Text>,
        mapping_line -> Nullable<Int4>,
    }
}

diesel::table! {
    registry.lineage (cdm_table, cdm_row_id) {
        cdm_table -> Text,
        cdm_row_id -> Int8,
        source_file_id -> Int8,
        source_row -> Nullable<Int8>,
        source_key -> Nullable<Text>,
        run_id -> Int8,
        person_id -> Nullable<Int4>,
        emit -> Nullable<Int2>,
    }
}

diesel::table! {
    registry.person_map (pseudonym) {
        pseudonym -> Text,
        person_id -> Int4,
        identifier_type -> Text,
        key_id -> Text,
        domain -> Text,
        first_run_id -> Nullable<Int8>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    registry.audit_log (seq) {
        seq -> Int8,
        logged_at -> Timestamptz,
        actor_os_user -> Text,
        actor_db_role -> Text,
        action -> Text,
        run_id -> Nullable<Int8>,
        locator_hash -> Nullable<Text>,
        key_id -> Nullable<Text>,
        detail -> Text,
        prev_hash -> Text,
        entry_hash -> Text,
    }
}

diesel::table! {
    registry.unmapped_code (mapping_name, concept_map, source_code) {
        mapping_name -> Text,
        concept_map -> Text,
        source_code -> Text,
        occurrences -> Int8,
        first_seen -> Timestamptz,
        last_seen -> Timestamptz,
        last_run_id -> Nullable<Int8>,
    }
}

diesel::table! {
    registry.fhir_watermark (endpoint_hash, resource_type, mapping_name) {
        endpoint_hash -> Text,
        resource_type -> Text,
        mapping_name -> Text,
        last_updated -> Text,
        run_id -> Int8,
        updated_at -> Timestamptz,
        swept_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    registry.nightly_source (run_id, source_name) {
        run_id -> Int8,
        source_name -> Text,
        source_kind -> Text,
        status -> Text,
        files_seen -> Int8,
        files_loaded -> Int8,
        files_skipped -> Int8,
        files_rejected -> Int8,
        rows_in -> Int8,
        rows_loaded -> Int8,
        rows_rejected -> Int8,
        rows_skipped -> Int8,
        duration_ms -> Int8,
        error -> Nullable<Text>,
        rows_unchanged -> Int8,
        cells_nulled -> Int8,
        records_deleted -> Int8,
    }
}

diesel::table! {
    registry.record_set (source_file_id) {
        source_file_id -> Int8,
        source_name -> Text,
        version_key -> Text,
        entries -> Int8,
        records -> Binary,
    }
}

diesel::table! {
    registry.registry_key (key_id, domain) {
        key_id -> Text,
        domain -> Text,
        status -> Text,
        since -> Timestamptz,
    }
}

diesel::table! {
    registry.plausibility (singleton) {
        singleton -> Bool,
        min_birth_year -> Int4,
        min_event_year -> Int4,
        max_age_years -> Int4,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    /// The origin line of the registry's signed audit checkpoints.
    registry.audit_origin (singleton) {
        singleton -> Bool,
        origin -> Text,
    }
}

diesel::table! {
    /// Persons whose cdm facts changed since the research marts were refreshed.
    registry.changed_person (person_id) {
        person_id -> Int4,
    }
}

diesel::table! {
    /// Identifier types the registry declared (`registrar identifiers declare`).
    registry.identifier_type (name) {
        name -> Text,
        normalisation -> Text,
        min_length -> Int4,
        max_length -> Int4,
        check_digit -> Nullable<Text>,
        description -> Text,
        declared_at -> Timestamptz,
    }
}

diesel::joinable!(source_file -> import_run (run_id));
diesel::joinable!(reject -> import_run (run_id));
diesel::joinable!(lineage -> source_file (source_file_id));

diesel::allow_tables_to_appear_in_same_query!(
    import_run,
    source_file,
    reject,
    lineage,
    person_map,
    audit_log,
    unmapped_code,
    nightly_source,
    fhir_watermark,
    record_set,
    plausibility,
    registry_key,
    audit_origin,
    changed_person,
    identifier_type,
);

/// Every registry column, described through its diesel type (see [`crate::introspect`]).
pub fn columns() -> Vec<crate::introspect::ColumnInfo> {
    use crate::introspect::describe;
    macro_rules! cols {
        ($table:ident: $($col:ident),+ $(,)?) => {
            vec![$(describe::<$table::$col>(stringify!($table))),+]
        };
    }
    let mut v = Vec::new();
    v.extend(
        cols!(import_run: run_id, command, started_at, finished_at, status, actor_os_user,
        actor_db_role, key_id, registrar_version, rows_in, rows_loaded, rows_rejected,
        rows_skipped, message, rows_unchanged, cells_nulled, reported_at),
    );
    v.extend(
        cols!(source_file: source_file_id, source_kind, locator_hash, content_sha256,
        byte_size, mapping_name, run_id, status, rows_in, rows_loaded, rows_rejected,
        rows_skipped, reason, seen_at, source_name, mapping_sha256, series_hash, version_key,
        reason_code, rows_unchanged, cells_nulled, records_added, records_updated,
        records_unchanged, records_deleted),
    );
    v.extend(
        cols!(reject: reject_id, run_id, source_file_id, row_number, column_name,
        reason_code, reason, created_at, outcome, field, mapping_file, mapping_line),
    );
    v.extend(
        cols!(lineage: cdm_table, cdm_row_id, source_file_id, source_row, source_key, run_id,
        person_id, emit),
    );
    v.extend(
        cols!(person_map: pseudonym, person_id, identifier_type, key_id, domain,
        first_run_id, created_at),
    );
    v.extend(
        cols!(audit_log: seq, logged_at, actor_os_user, actor_db_role, action, run_id,
        locator_hash, key_id, detail, prev_hash, entry_hash),
    );
    v.extend(
        cols!(unmapped_code: mapping_name, concept_map, source_code, occurrences,
        first_seen, last_seen, last_run_id),
    );
    v.extend(
        cols!(nightly_source: run_id, source_name, source_kind, status, files_seen,
        files_loaded, files_skipped, files_rejected, rows_in, rows_loaded, rows_rejected,
        rows_skipped, duration_ms, error, rows_unchanged, cells_nulled, records_deleted),
    );
    v.extend(
        cols!(fhir_watermark: endpoint_hash, resource_type, mapping_name, last_updated,
        run_id, updated_at, swept_at),
    );
    v.extend(cols!(record_set: source_file_id, source_name, version_key, entries, records));
    v.extend(
        cols!(plausibility: singleton, min_birth_year, min_event_year, max_age_years,
        updated_at),
    );
    v.extend(cols!(registry_key: key_id, domain, status, since));
    v.extend(cols!(audit_origin: singleton, origin));
    v.extend(cols!(changed_person: person_id));
    v.extend(
        cols!(identifier_type: name, normalisation, min_length, max_length, check_digit,
        description, declared_at),
    );
    v
}
