//! A small path language over resource JSON, for mapping files.
//!
//! A path is dot-separated element names; an element that is a list is searched element by
//! element. A step may carry one filter in brackets:
//!
//! - `[N]`: the N-th item (0-based) of a list;
//! - `[name=value]`: only the items whose `name` is `value` (compared as text; the value
//!   may contain dots and slashes, e.g. `coding[system=http://loinc.org]`). The name may be a
//!   path itself, searched through lists like the path: `component[code.coding.code=85337-4]`
//!   is the component whose code has the coding 85337-4.
//!
//! The result is the first scalar reached (text, number or boolean, as text), or nothing.
//! Alternatives separated by ` | ` are tried in order (`effectivePeriod.start |
//! effectiveDateTime`: FHIR choice elements).
//! Examples: `code.coding[system=http://loinc.org].code`, `valueQuantity.value`,
//! `extension[url=https://example.org/fhir/StructureDefinition/regimen].valueString`,
//! `component[0].valueQuantity.value`, `subject.reference`.

use serde_json::Value;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Filter {
    Index(usize),
    /// (the dot-separated path of the tested element, the value)
    Equals(Vec<String>, String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Step {
    name: String,
    filter: Option<Filter>,
}

/// A compiled path (one or more alternatives).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    text: String,
    alternatives: Vec<Vec<Step>>,
}

/// A path that does not parse, with the reason.
#[derive(Debug, Clone, thiserror::Error)]
#[error("path `{path}`: {reason}")]
pub struct PathError {
    pub path: String,
    pub reason: String,
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn valid_name(n: &str) -> bool {
    !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl Path {
    pub fn parse(text: &str) -> Result<Path, PathError> {
        let alternatives = text
            .split(" | ")
            .map(|alt| Self::parse_steps(text, alt))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Path {
            text: text.trim().to_string(),
            alternatives,
        })
    }

    fn parse_steps(whole: &str, text: &str) -> Result<Vec<Step>, PathError> {
        let err = |reason: String| PathError {
            path: whole.to_string(),
            reason,
        };
        let mut steps = Vec::new();
        let mut rest = text.trim();
        if rest.is_empty() {
            return Err(err("empty".into()));
        }
        loop {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            let name = &rest[..end];
            if !valid_name(name) {
                return Err(err(format!("`{name}` is not an element name")));
            }
            rest = &rest[end..];
            let mut filter = None;
            if let Some(r) = rest.strip_prefix('[') {
                let close = r.find(']').ok_or_else(|| err("a `[` without `]`".into()))?;
                let inner = &r[..close];
                filter = Some(match inner.split_once('=') {
                    Some((k, v)) if k.trim().split('.').all(valid_name) => Filter::Equals(
                        k.trim().split('.').map(str::to_string).collect(),
                        v.trim().to_string(),
                    ),
                    Some(_) => {
                        return Err(err(format!(
                            "`[{inner}]`: expected [name=value] (the name may be a dotted path)"
                        )))
                    }
                    None => Filter::Index(inner.trim().parse().map_err(|_| {
                        err(format!("`[{inner}]`: expected an index or [name=value]"))
                    })?),
                });
                rest = &r[close + 1..];
            }
            steps.push(Step {
                name: name.to_string(),
                filter,
            });
            if rest.is_empty() {
                break;
            }
            rest = rest
                .strip_prefix('.')
                .ok_or_else(|| err(format!("unexpected `{rest}`")))?;
        }
        Ok(steps)
    }

    /// The first scalar the path reaches in `v`, as text.
    pub fn first(&self, v: &Value) -> Option<String> {
        self.alternatives.iter().find_map(|steps| walk(steps, v, 0))
    }
}

fn walk(steps: &[Step], v: &Value, i: usize) -> Option<String> {
    let Some(step) = steps.get(i) else {
        return scalar(v);
    };
    let child = v.get(&step.name)?;
    let items: Vec<&Value> = match child {
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    match &step.filter {
        Some(Filter::Index(n)) => items.get(*n).and_then(|x| walk(steps, x, i + 1)),
        Some(Filter::Equals(k, want)) => items
            .into_iter()
            .filter(|x| reaches(x, k, want))
            .find_map(|x| walk(steps, x, i + 1)),
        None => items.into_iter().find_map(|x| walk(steps, x, i + 1)),
    }
}

/// Whether some scalar reached from `v` along `keys` (searching lists) is `want`.
fn reaches(v: &Value, keys: &[String], want: &str) -> bool {
    match v {
        Value::Array(a) => a.iter().any(|x| reaches(x, keys, want)),
        _ => match keys.split_first() {
            None => scalar(v).as_deref() == Some(want),
            Some((k, rest)) => v.get(k).is_some_and(|c| reaches(c, rest, want)),
        },
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn get(path: &str, v: &Value) -> Option<String> {
        Path::parse(path).unwrap().first(v)
    }

    #[test]
    fn paths_reach_codes_values_and_extensions() {
        let obs = json!({
            "code": {"coding": [
                {"system": "https://h.example/fhir/CodeSystem/lab", "code": "ER_PCT"},
                {"system": "http://loinc.org", "code": "85337-4"}]},
            "component": [{"valueQuantity": {"value": 50}}, {"valueQuantity": {"value": 7.5}}],
            "extension": [{"url": "https://h.example/x/regimen", "valueString": "EC-P"}],
            "valueBoolean": false,
            "subject": {"reference": "Patient/p1"}
        });
        assert_eq!(
            get("code.coding[system=http://loinc.org].code", &obs).as_deref(),
            Some("85337-4")
        );
        assert_eq!(get("code.coding.code", &obs).as_deref(), Some("ER_PCT"));
        assert_eq!(
            get("component[1].valueQuantity.value", &obs).as_deref(),
            Some("7.5")
        );
        assert_eq!(
            get("component.valueQuantity.value", &obs).as_deref(),
            Some("50")
        );
        assert_eq!(
            get(
                "extension[url=https://h.example/x/regimen].valueString",
                &obs
            )
            .as_deref(),
            Some("EC-P")
        );
        assert_eq!(get("valueBoolean", &obs).as_deref(), Some("false"));
        assert_eq!(
            get("subject.reference", &obs).as_deref(),
            Some("Patient/p1")
        );
        assert_eq!(
            get("code.coding[system=http://snomed.info/sct].code", &obs),
            None
        );
        assert_eq!(get("code", &obs), None, "an object is not a value");
        assert_eq!(get("component[5].valueQuantity.value", &obs), None);
    }

    #[test]
    fn a_component_is_chosen_by_its_code() {
        // The shape of the FHIR specification's blood-pressure example (observation-example-
        // bloodpressure): the value of each component is found by the component's code, not
        // by its position.
        let bp = json!({
            "resourceType": "Observation",
            "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
            "component": [
                {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"},
                                     {"system": "http://snomed.info/sct", "code": "271649006"}]},
                 "valueQuantity": {"value": 107, "unit": "mmHg"}},
                {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
                 "valueQuantity": {"value": 60, "unit": "mmHg"}}
            ]
        });
        let at = |code: &str| {
            get(
                &format!("component[code.coding.code={code}].valueQuantity.value"),
                &bp,
            )
        };
        assert_eq!(at("8462-4").as_deref(), Some("60"));
        assert_eq!(at("8480-6").as_deref(), Some("107"));
        // any coding of the component's code counts
        assert_eq!(at("271649006").as_deref(), Some("107"));
        assert_eq!(at("9999-9"), None);
        assert!(Path::parse("component[code..code=1].value").is_err());
    }

    #[test]
    fn bad_paths_are_refused_with_the_reason() {
        for (p, why) in [
            ("", "empty"),
            ("code..x", "not an element name"),
            ("coding[system=x", "without `]`"),
            ("coding[two]", "expected an index"),
            ("coding[0]x", "unexpected"),
        ] {
            let e = Path::parse(p).unwrap_err().to_string();
            assert!(e.contains(why), "{p}: {e}");
        }
    }
}
