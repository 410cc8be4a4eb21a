//! A small path language over resource JSON, for mapping files.
//!
//! A path is dot-separated element names; an element that is a list is searched element by
//! element. A step may carry one filter in brackets:
//!
//! - `[N]`: the N-th item (0-based) of a list;
//! - `[name=value]`: only the items whose `name` is `value` (compared as text; the value
//!   may contain dots and slashes, e.g. `coding[system=http://loinc.org]`).
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
    Equals(String, String),
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
                    Some((k, v)) if valid_name(k.trim()) => {
                        Filter::Equals(k.trim().to_string(), v.trim().to_string())
                    }
                    Some(_) => return Err(err(format!("`[{inner}]`: expected [name=value]"))),
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
            .filter(|x| x.get(k).and_then(scalar).as_deref() == Some(want.as_str()))
            .find_map(|x| walk(steps, x, i + 1)),
        None => items.into_iter().find_map(|x| walk(steps, x, i + 1)),
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
