//! One FHIR resource: parsed as JSON, checked against the R4B models, with the facts the
//! importer needs (type, logical id, last update).

use serde_json::Value;

/// A resource that passed the model check.
#[derive(Debug, Clone)]
pub struct Resource {
    pub resource_type: String,
    pub id: String,
    /// `meta.lastUpdated` as sent (an instant, e.g. `2024-05-01T12:00:00.123Z`).
    pub last_updated: Option<String>,
    pub json: Value,
}

/// Why a resource was not usable. `Display` names the type and id when known.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{what}: {reason}")]
pub struct ResourceError {
    /// The resource type, or `resource`: never its id (the id can be the patient's MRN).
    pub what: String,
    pub reason: String,
    /// The logical id, when it could be read (so an update that fails still supersedes).
    pub resource_type: Option<String>,
    pub id: Option<String>,
}

fn describe(ty: Option<&str>, id: Option<&str>) -> String {
    match (ty, id) {
        (Some(t), Some(_)) => t.to_string(),
        (Some(t), None) => format!("{t} (no id)"),
        _ => "resource".into(),
    }
}

/// A parser's message without the values it quotes (`unknown variant `femme``: the value
/// can be anything a source holds, a name included).
pub fn redact(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut quote: Option<char> = None;
    for c in msg.chars() {
        match quote {
            Some(q) if c == q => {
                out.push('…');
                out.push(c);
                quote = None;
            }
            Some(_) => {}
            None if c == '`' || c == '"' => {
                out.push(c);
                quote = Some(c);
            }
            None => out.push(c),
        }
    }
    if quote.is_some() {
        out.push('…');
    }
    out
}

/// Parse one resource. `expected_type` (when given) must match `resourceType`.
pub fn parse_resource(
    bytes: &[u8],
    expected_type: Option<&str>,
) -> Result<Resource, ResourceError> {
    let json: Value = serde_json::from_slice(bytes).map_err(|e| ResourceError {
        what: "resource".into(),
        reason: format!("not JSON: {}", redact(&e.to_string())),
        resource_type: None,
        id: None,
    })?;
    from_value(json, expected_type)
}

/// Check an already parsed JSON value (e.g. a Bundle entry's `resource`).
pub fn from_value(json: Value, expected_type: Option<&str>) -> Result<Resource, ResourceError> {
    let ty = json
        .get("resourceType")
        .and_then(Value::as_str)
        .map(str::to_string);
    let id = json.get("id").and_then(Value::as_str).map(str::to_string);
    let err = |reason: String| ResourceError {
        what: describe(ty.as_deref(), id.as_deref()),
        reason,
        resource_type: ty.clone(),
        id: id.clone(),
    };
    let Some(t) = ty.as_deref() else {
        return Err(err("no resourceType".into()));
    };
    if let Some(want) = expected_type {
        if t != want {
            return Err(err(format!("a {t} where a {want} was expected")));
        }
    }
    let Some(i) = id.as_deref() else {
        return Err(err("no id".into()));
    };
    if i.is_empty()
        || i.len() > 64
        || !i
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err(err("the id is not a valid FHIR id".into()));
    }
    // The model check: every element with its type and every code from a required binding.
    // (Deserialised from a borrow: no copy of the resource.)
    let model = match <fhir_sdk::r4b::resources::Resource as serde::Deserialize>::deserialize(&json)
    {
        Ok(m) => m,
        Err(e) => {
            return Err(err(format!(
                "not a valid R4 {t}: {}",
                redact(&e.to_string())
            )))
        }
    };
    // The models ignore elements they do not know (STU3's `Procedure.context`, a misspelt
    // element, an element of another version): what the model writes back must hold every
    // element that was sent.
    let back = serde_json::to_value(&model).map_err(|e| err(format!("not a valid R4 {t}: {e}")))?;
    drop(model);
    let mut path = vec![t.to_string()];
    if let Some(unknown) = unknown_element(&json, &back, &mut path) {
        return Err(err(format!(
            "not a valid R4 {t}: `{unknown}` is not an element of R4 (another FHIR version, or misspelt)"
        )));
    }
    let last_updated = json
        .get("meta")
        .and_then(|m| m.get("lastUpdated"))
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok(Resource {
        resource_type: t.to_string(),
        id: i.to_string(),
        last_updated,
        json,
    })
}

/// The first element of `sent` that `kept` (the model's rewrite) lacks, as a dotted path of
/// element names (never values). Empty values (`null`, `[]`, `{}`) are not elements.
fn unknown_element(sent: &Value, kept: &Value, path: &mut Vec<String>) -> Option<String> {
    match (sent, kept) {
        (Value::Object(s), Value::Object(k)) => {
            for (name, v) in s {
                let empty = match v {
                    Value::Null => true,
                    Value::Array(a) => a.is_empty(),
                    Value::Object(o) => o.is_empty(),
                    _ => false,
                };
                if empty {
                    continue;
                }
                // Element names only ([A-Za-z0-9_]): anything else is not echoed.
                let shown = if name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    && name.len() <= 64
                {
                    name.clone()
                } else {
                    "(an element with an invalid name)".to_string()
                };
                path.push(shown);
                let found = match k.get(name) {
                    None => Some(path.join(".")),
                    Some(kv) => unknown_element(v, kv, path),
                };
                path.pop();
                if found.is_some() {
                    return found;
                }
            }
            None
        }
        (Value::Array(s), Value::Array(k)) => {
            for (i, v) in s.iter().enumerate() {
                if let Some(kv) = k.get(i) {
                    if let Some(f) = unknown_element(v, kv, path) {
                        return Some(f);
                    }
                }
            }
            None
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_do_not_quote_values() {
        assert_eq!(
            redact("unknown variant `femme`, expected one of `male`, `female`"),
            "unknown variant `…`, expected one of `…`, `…`"
        );
        assert_eq!(
            redact("invalid type: string \"Jansen\""),
            "invalid type: string \"…\""
        );
        assert_eq!(redact("no quotes"), "no quotes");
    }

    #[test]
    fn a_valid_observation_parses() {
        let r = parse_resource(
            br#"{"resourceType":"Observation","id":"o1","status":"final","meta":{"lastUpdated":"2024-01-02T03:04:05Z"},
                 "code":{"coding":[{"system":"http://loinc.org","code":"85337-4"}]},
                 "subject":{"reference":"Patient/p1"},"valueQuantity":{"value":50,"unit":"%"}}"#,
            Some("Observation"),
        )
        .unwrap();
        assert_eq!(
            (r.resource_type.as_str(), r.id.as_str()),
            ("Observation", "o1")
        );
        assert_eq!(r.last_updated.as_deref(), Some("2024-01-02T03:04:05Z"));
    }

    #[test]
    fn elements_that_are_not_r4_are_refused() {
        // STU3's Procedure.context (R4 calls it encounter).
        let e = parse_resource(
            br#"{"resourceType":"Procedure","id":"x1","status":"completed","subject":{"reference":"Patient/p"},
                 "context":{"reference":"Encounter/e1"}}"#,
            None,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("`Procedure.context` is not an element of R4"),
            "{e}"
        );
        // Deep: a misspelt element in a coding.
        let e = parse_resource(
            br#"{"resourceType":"Observation","id":"o","status":"final",
                 "code":{"coding":[{"system":"http://loinc.org","cod":"85337-4"}]}}"#,
            None,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("`Observation.code.coding.cod`"),
            "{e}"
        );
        // Primitive extensions, contained resources and choice elements are R4.
        parse_resource(
            br#"{"resourceType":"Patient","id":"p","_birthDate":{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/data-absent-reason","valueCode":"unknown"}]},
                 "contained":[{"resourceType":"Organization","id":"o1","name":"x"}],
                 "deceasedBoolean":false,"identifier":[]}"#,
            None,
        )
        .unwrap();
    }

    #[test]
    fn bad_resources_are_errors_naming_type_and_id() {
        // An unknown code in a required binding.
        let e = parse_resource(
            br#"{"resourceType":"Observation","id":"o2","status":"almost","code":{"text":"x"}}"#,
            None,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("Observation: not a valid R4 Observation"),
            "{e}"
        );
        assert_eq!(e.id.as_deref(), Some("o2"));
        // A wrong type, no id, not JSON.
        let e = parse_resource(
            br#"{"resourceType":"Patient","id":"p"}"#,
            Some("Observation"),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("a Patient where a Observation"),
            "{e}"
        );
        let e = parse_resource(br#"{"resourceType":"Patient"}"#, None).unwrap_err();
        assert_eq!(e.to_string(), "Patient (no id): no id");
        let e = parse_resource(b"{", None).unwrap_err();
        assert!(e.to_string().starts_with("resource: not JSON"), "{e}");
    }
}
