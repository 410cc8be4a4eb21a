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
//! - `[name=system|code]`: a FHIR token, for CodeableConcept and Coding elements: only the
//!   items whose `name` has a coding with that system and code (`|code`: a coding without
//!   a system). `component[code=http://loinc.org|85319-2].valueCodeableConcept.coding.code`
//!   is the value of the component coded LOINC 85319-2, wherever it stands in the list.
//!
//! A step `resolve()` follows the Reference reached so far (FHIRPath's `resolve()`): to a
//! resource contained in the same resource (`#med1`), or through a [`Resolver`] to a
//! resource of the server or export (`Medication/123`), and goes on in that resource:
//! `medicationReference.resolve().code.coding[system=http://www.nlm.nih.gov/research/umls/rxnorm].code`.
//! A reference that cannot be resolved is reported ([`Path::eval`]), never taken as empty.
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
    /// (the path of a CodeableConcept or Coding, the system (`None`: none), the code)
    Token(Vec<String>, Option<String>, String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Element {
        name: String,
        filter: Option<Filter>,
    },
    /// `resolve()`: follow the Reference reached so far.
    Resolve,
}

/// Resources a `resolve()` step can reach besides the contained ones (a search page's
/// included resources, the server, an export's files).
pub trait Resolver {
    /// The resource `resource_type/id`, if it can be had.
    fn resolve(&self, resource_type: &str, id: &str) -> Option<std::sync::Arc<Value>>;
}

/// Resolves nothing but contained resources.
pub struct ContainedOnly;

impl Resolver for ContainedOnly {
    fn resolve(&self, _: &str, _: &str) -> Option<std::sync::Arc<Value>> {
        None
    }
}

/// What a path gives for one resource.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Evaluated {
    /// The first scalar reached.
    pub value: Option<String>,
    /// A `resolve()` step met a reference it could not resolve (and no alternative gave a
    /// value): the resource type of that reference (`#` for a missing contained one).
    pub unresolved: Option<String>,
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
            if let Some(r) = rest.strip_prefix("resolve()") {
                if steps.is_empty() {
                    return Err(err("`resolve()` needs a Reference before it".into()));
                }
                steps.push(Step::Resolve);
                rest = r;
                if rest.is_empty() {
                    return Err(err("a path cannot end with `resolve()`".into()));
                }
                rest = rest
                    .strip_prefix('.')
                    .ok_or_else(|| err(format!("unexpected `{rest}`")))?;
                continue;
            }
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
                    Some((k, v)) if k.trim().split('.').all(valid_name) && v.contains('|') => {
                        let (system, code) = v.trim().split_once('|').expect("has |");
                        if code.is_empty() || code.contains('|') {
                            return Err(err(format!(
                                "`[{inner}]`: a token is system|code (or |code for no system)"
                            )));
                        }
                        Filter::Token(
                            k.trim().split('.').map(str::to_string).collect(),
                            (!system.is_empty()).then(|| system.to_string()),
                            code.to_string(),
                        )
                    }
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
            steps.push(Step::Element {
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

    /// The first scalar the path reaches in `v`, as text (contained resources only for
    /// `resolve()`).
    pub fn first(&self, v: &Value) -> Option<String> {
        self.eval(v, &ContainedOnly).value
    }

    /// Whether the path has a `resolve()` step.
    pub fn resolves(&self) -> bool {
        self.alternatives
            .iter()
            .any(|a| a.iter().any(|s| matches!(s, Step::Resolve)))
    }

    /// The elements whose references `resolve()` follows (`medicationReference`), for
    /// `_include` parameters.
    pub fn resolved_elements(&self) -> Vec<&str> {
        let mut out = Vec::new();
        for a in &self.alternatives {
            for w in a.windows(2) {
                if let (Step::Element { name, .. }, Step::Resolve) = (&w[0], &w[1]) {
                    out.push(name.as_str());
                }
            }
        }
        out
    }

    /// The first scalar the path reaches in `resource`, following references through
    /// `resolver`; and whether a reference could not be resolved.
    pub fn eval(&self, resource: &Value, resolver: &dyn Resolver) -> Evaluated {
        let mut unresolved = None;
        for steps in &self.alternatives {
            let mut w = Walk {
                root: resource,
                resolver,
                unresolved: None,
            };
            if let Some(v) = w.walk(steps, resource, 0) {
                return Evaluated {
                    value: Some(v),
                    unresolved: None,
                };
            }
            if unresolved.is_none() {
                unresolved = w.unresolved;
            }
        }
        Evaluated {
            value: None,
            unresolved,
        }
    }
}

struct Walk<'r> {
    root: &'r Value,
    resolver: &'r dyn Resolver,
    unresolved: Option<String>,
}

impl Walk<'_> {
    fn walk(&mut self, steps: &[Step], v: &Value, i: usize) -> Option<String> {
        let Some(step) = steps.get(i) else {
            return scalar(v);
        };
        let (name, filter) = match step {
            Step::Resolve => {
                let reference = v.get("reference").and_then(Value::as_str)?;
                if let Some(id) = reference.strip_prefix('#') {
                    let found = self
                        .root
                        .get("contained")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .find(|c| c.get("id").and_then(Value::as_str) == Some(id));
                    return match found {
                        Some(c) => self.walk(steps, c, i + 1),
                        None => {
                            self.unresolved.get_or_insert_with(|| "#".to_string());
                            None
                        }
                    };
                }
                let r = reference.split("/_history/").next().unwrap_or(reference);
                let (ty, id) = r.trim_end_matches('/').rsplit_once('/')?;
                let ty = ty.rsplit('/').next().unwrap_or(ty);
                return match self.resolver.resolve(ty, id) {
                    Some(target) => self.walk(steps, &target, i + 1),
                    None => {
                        self.unresolved.get_or_insert_with(|| ty.to_string());
                        None
                    }
                };
            }
            Step::Element { name, filter } => (name, filter),
        };
        let child = v.get(name)?;
        let items: Vec<&Value> = match child {
            Value::Array(a) => a.iter().collect(),
            other => vec![other],
        };
        match filter {
            Some(Filter::Index(n)) => items.get(*n).and_then(|x| self.walk(steps, x, i + 1)),
            Some(Filter::Equals(k, want)) => items
                .into_iter()
                .filter(|x| reaches(x, k, want))
                .find_map(|x| self.walk(steps, x, i + 1)),
            Some(Filter::Token(k, system, code)) => items
                .into_iter()
                .filter(|x| has_token(x, k, system.as_deref(), code))
                .find_map(|x| self.walk(steps, x, i + 1)),
            None => items.into_iter().find_map(|x| self.walk(steps, x, i + 1)),
        }
    }
}

/// Whether the CodeableConcept or Coding reached from `v` along `keys` has a coding with
/// `system` (`None`: no system) and `code`.
fn has_token(v: &Value, keys: &[String], system: Option<&str>, code: &str) -> bool {
    match v {
        Value::Array(a) => a.iter().any(|x| has_token(x, keys, system, code)),
        _ => match keys.split_first() {
            Some((k, rest)) => v.get(k).is_some_and(|c| has_token(c, rest, system, code)),
            None => {
                let coding_matches = |c: &Value| {
                    c.get("code").and_then(Value::as_str) == Some(code)
                        && c.get("system").and_then(Value::as_str) == system
                };
                match v.get("coding") {
                    Some(Value::Array(cs)) => cs.iter().any(coding_matches),
                    _ => coding_matches(v),
                }
            }
        },
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
    fn a_component_is_chosen_by_its_coded_token() {
        // mCODE's HER2 test shape: the interpretation components, by LOINC code.
        let obs = json!({
            "component": [
                {"code": {"coding": [{"system": "http://loinc.org", "code": "85318-4"}]},
                 "valueCodeableConcept": {"coding": [{"code": "10828004"}]}},
                {"code": {"coding": [{"system": "http://loinc.org", "code": "85319-2"}]},
                 "valueCodeableConcept": {"coding": [{"code": "3+"}]}},
                {"code": {"coding": [{"code": "local-1"}]}, "valueInteger": 4}
            ]
        });
        let p = "component[code=http://loinc.org|85319-2].valueCodeableConcept.coding.code";
        assert_eq!(get(p, &obs).as_deref(), Some("3+"));
        assert_eq!(
            get(
                "component[code=http://snomed.info/sct|85319-2].valueInteger",
                &obs
            ),
            None,
            "the system is part of the token"
        );
        assert_eq!(
            get("component[code=|local-1].valueInteger", &obs).as_deref(),
            Some("4"),
            "|code: a coding without a system"
        );
        assert_eq!(get("component[code=|85319-2].valueInteger", &obs), None);
        assert!(Path::parse("component[code=a|].x").is_err());
    }

    #[test]
    fn references_resolve_to_contained_and_given_resources() {
        struct Meds;
        impl Resolver for Meds {
            fn resolve(&self, t: &str, id: &str) -> Option<std::sync::Arc<Value>> {
                (t == "Medication" && id == "m9").then(|| {
                    std::sync::Arc::new(json!({"resourceType": "Medication", "id": "m9",
                        "code": {"coding": [{"system": "rx", "code": "224905"}]}}))
                })
            }
        }
        let p = Path::parse(
            "medicationCodeableConcept.coding[system=rx].code | medicationReference.resolve().code.coding[system=rx].code",
        )
        .unwrap();
        assert!(p.resolves());
        assert_eq!(p.resolved_elements(), vec!["medicationReference"]);
        let contained = json!({"resourceType": "MedicationRequest",
            "contained": [{"resourceType": "Medication", "id": "med1",
                           "code": {"coding": [{"system": "rx", "code": "1790099"}]}}],
            "medicationReference": {"reference": "#med1"}});
        assert_eq!(
            p.eval(&contained, &ContainedOnly).value.as_deref(),
            Some("1790099")
        );
        let separate = json!({"medicationReference": {"reference": "Medication/m9"}});
        assert_eq!(p.eval(&separate, &Meds).value.as_deref(), Some("224905"));
        let absolute = json!({"medicationReference":
            {"reference": "https://h.example/fhir/Medication/m9/_history/2"}});
        assert_eq!(p.eval(&absolute, &Meds).value.as_deref(), Some("224905"));
        let e = p.eval(&separate, &ContainedOnly);
        assert_eq!(
            (e.value, e.unresolved.as_deref()),
            (None, Some("Medication"))
        );
        let missing = json!({"medicationReference": {"reference": "#nope"}});
        assert_eq!(p.eval(&missing, &Meds).unresolved.as_deref(), Some("#"));
        let coded =
            json!({"medicationCodeableConcept": {"coding": [{"system": "rx", "code": "1"}]}});
        assert_eq!(
            p.eval(&coded, &Meds),
            Evaluated {
                value: Some("1".into()),
                unresolved: None
            }
        );
        assert!(Path::parse("resolve().code").is_err());
        assert!(Path::parse("subject.resolve()").is_err());
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
