//! Federation releases: every askable cohort's answer, computed together by registrar and
//! stored in `federation.release` / `federation.release_summary`, from where the SECURITY
//! DEFINER functions serve them (they compute nothing from the research views).
//!
//! `registrar federation publish` reads every askable cohort in one snapshot, builds the
//! counts of every table of every cohort and every statistic's `n` over one set of atoms (see
//! [`super::protection`]), chooses the suppressions for the whole release and audits them, and
//! writes the release with its audit-log entry in one transaction: an answer can only be read
//! once its release is in the audit log.
//!
//! **Statistics.** Ages and recurrence-free days are whole numbers. A statistic is published
//! only where its `n` is published (that `n` is one of the audited counts) and `n >= min_cell`.
//! - The mean is published as the midpoint of its band (1 year for ages, 7 days for
//!   recurrence-free days): `n × mean` then only says the sum lies in a range of `n` (or `7n`)
//!   values, never the exact sum.
//! - A quartile is the mean of the `w = max(min_cell, 5)` order statistics nearest its rank,
//!   published as the midpoint of its band as above, and only where `n >= 2w`. It therefore
//!   depends on at least `w` patients' values and, being a half-integer, is never a patient's
//!   value.

use super::protection::{self, Quantity};
use super::SUMMARY_FORMAT;
use crate::privacy::audit::{self, Record};
use anyhow::{bail, Context, Result};
use registrar_anonymizer::audit::canonical_json;
use serde::Serialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// `action` of a release's audit-log entry.
pub const RELEASE_ACTION: &str = "federation release";
/// The policy's name in every answer.
pub const POLICY_NAME: &str = "minimum cell size with audited secondary suppression";

pub const SUBTYPES: [&str; 7] = [
    "luminal_a",
    "luminal_b_her2neg",
    "luminal_b_her2pos",
    "luminal_unknown",
    "her2_enriched",
    "tnbc",
    "unknown",
];
const AGE_BANDS: [&str; 6] = ["<40", "40-49", "50-59", "60-69", "70+", "unknown"];
const PCR: [&str; 4] = ["pCR", "non-pCR", "unknown", "no neoadjuvant"];
const RECURRENCE: [&str; 3] = ["event", "no event", "unknown"];
/// The stratifying dimensions, in the order of [`Patient::cats`].
const DIMS: [&str; 5] = ["subtype", "age_band", "diagnosis_year", "pcr", "recurrence"];
/// The tables of an answer: name and dimensions (indexes into [`DIMS`]).
const TABLES: [(&str, &[usize]); 8] = [
    ("total", &[]),
    ("subtype", &[0]),
    ("age_band", &[1]),
    ("diagnosis_year", &[2]),
    ("pcr", &[3]),
    ("recurrence", &[4]),
    ("subtype_by_pcr", &[0, 3]),
    ("subtype_by_recurrence", &[0, 4]),
];
/// The summarised variables: name and band width.
const VARIABLES: [(&str, f64); 2] = [("age_at_diagnosis", 1.0), ("rfs_days", 7.0)];

/// The band midpoint published for a mean or a quartile (width 1 or 7: never a whole number).
pub fn band_midpoint(x: f64, width: f64) -> f64 {
    (x / width).floor() * width + width / 2.0
}

/// The number of order statistics averaged into a quartile.
pub fn quantile_window(min_cell: i32) -> usize {
    min_cell.max(5) as usize
}

/// The quartile `q` (0.25, 0.5, 0.75) of sorted `v` by the release rule (before banding), or
/// None when `v` is too short.
pub fn windowed_quantile(v: &[i32], q: f64, window: usize) -> Option<f64> {
    if window == 0 || v.len() < 2 * window {
        return None;
    }
    let pos = q * (v.len() - 1) as f64;
    let start = (pos - (window as f64 - 1.0) / 2.0).round().max(0.0) as usize;
    let start = start.min(v.len() - window);
    let s: f64 = v[start..start + window].iter().map(|x| *x as f64).sum();
    Some(s / window as f64)
}

/// One patient of the askable cohorts: categories, values and cohort membership.
struct Patient {
    cats: [String; 5],
    age: Option<i32>,
    rfs_days: Option<i32>,
    member: u64,
}

fn categories(
    subtype: Option<String>,
    age: Option<i32>,
    year: Option<i32>,
    neo: Option<bool>,
    pcr: Option<bool>,
    event: Option<bool>,
) -> [String; 5] {
    let subtype = subtype
        .filter(|s| SUBTYPES.contains(&s.as_str()))
        .unwrap_or_else(|| "unknown".into());
    let age_band = match age {
        None => "unknown",
        Some(a) if a < 40 => "<40",
        Some(a) if a < 50 => "40-49",
        Some(a) if a < 60 => "50-59",
        Some(a) if a < 70 => "60-69",
        Some(_) => "70+",
    };
    let pcr = match (neo.unwrap_or(false), pcr) {
        (false, _) => "no neoadjuvant",
        (true, Some(true)) => "pCR",
        (true, Some(false)) => "non-pCR",
        (true, None) => "unknown",
    };
    let recurrence = match event {
        Some(true) => "event",
        Some(false) => "no event",
        None => "unknown",
    };
    [
        subtype,
        age_band.into(),
        year.map(|y| y.to_string())
            .unwrap_or_else(|| "unknown".into()),
        pcr.into(),
        recurrence.into(),
    ]
}

/// The variables of the release's model (see [`compute`]), laid out table after table.
struct Blocks {
    groups: usize,
    years: usize,
}

impl Blocks {
    const S: usize = SUBTYPES.len();
    fn new(groups: usize, years: usize) -> Self {
        Self { groups, years }
    }
    fn len(&self) -> usize {
        self.gy(0, 0) + self.groups * self.years
    }
    fn sa(&self, s: usize, a: usize) -> usize {
        s * AGE_BANDS.len() + a
    }
    fn sp(&self, s: usize, p: usize) -> usize {
        Self::S * AGE_BANDS.len() + s * PCR.len() + p
    }
    fn sr(&self, s: usize, r: usize) -> usize {
        Self::S * (AGE_BANDS.len() + PCR.len()) + s * RECURRENCE.len() + r
    }
    fn sk(&self, s: usize, known: bool) -> usize {
        Self::S * (AGE_BANDS.len() + PCR.len() + RECURRENCE.len()) + s * 2 + known as usize
    }
    fn gy(&self, g: usize, y: usize) -> usize {
        Self::S * (AGE_BANDS.len() + PCR.len() + RECURRENCE.len() + 2) + g * self.years + y
    }
}

/// Which count of which cohort a quantity stands for.
enum Count {
    Cell {
        table: usize,
        key: Vec<(usize, String)>,
    },
    StatN {
        var: usize,
        subtype: Option<String>,
    },
}

/// A release, computed but not yet stored.
pub struct Computed {
    pub node_id: String,
    pub min_cell: i32,
    pub schema_version: String,
    /// Per cohort: its answer without the release's id, time and audit sequence number.
    pub answers: Vec<(String, Value)>,
    /// Per cohort: published and suppressed counts.
    pub counts: BTreeMap<String, (usize, usize)>,
    pub protection: protection::Protection,
    /// SHA-256 of the canonical JSON of the policy and every answer.
    pub content_sha256: String,
}

/// The askable cohorts: those of `federation.cohort` with a research view.
pub fn askable(client: &mut impl postgres::GenericClient) -> Result<Vec<String>> {
    Ok(client
        .query(
            "SELECT c.name FROM federation.cohort c
              WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_views v
                             WHERE v.schemaname = 'research' AND v.viewname = c.name)
              ORDER BY c.name",
            &[],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// Compute the release from the research views (in the caller's snapshot).
pub fn compute(client: &mut impl postgres::GenericClient) -> Result<Computed> {
    let r = client.query_one("SELECT node_id, min_cell FROM federation.policy", &[])?;
    let (node_id, min_cell): (String, i32) = (r.get(0), r.get(1));
    let schema_version: String = client
        .query_one(
            "SELECT max(version)::text FROM public.__diesel_schema_migrations",
            &[],
        )?
        .get(0);
    let cohorts = askable(client)?;
    if cohorts.len() > 64 {
        bail!("more than 64 askable cohorts");
    }
    // Every patient of every askable cohort, once, with the cohorts it belongs to.
    let mut patients: BTreeMap<i64, Patient> = BTreeMap::new();
    for (c, name) in cohorts.iter().enumerate() {
        let sql = format!(
            "SELECT person_id::bigint, subtype::text, age_at_diagnosis::int, diagnosis_year::int,
                    neoadjuvant, pcr, rfs_event, rfs_days::int
               FROM research.{}",
            crate::db::quote_ident(name)
        );
        let rows = client
            .query(&sql, &[])
            .with_context(|| format!("askable cohort `{name}` lacks the modeling columns"))?;
        for r in rows {
            let age: Option<i32> = r.get(2);
            let p = patients.entry(r.get(0)).or_insert_with(|| Patient {
                cats: categories(r.get(1), age, r.get(3), r.get(4), r.get(5), r.get(6)),
                age,
                rfs_days: r.get(7),
                member: 0,
            });
            p.member |= 1 << c;
        }
    }
    let years: Vec<String> = patients
        .values()
        .map(|p| p.cats[2].clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if years.len() > 128 {
        bail!("more than 128 diagnosis years");
    }
    let dim_values: [Vec<String>; 5] = [
        SUBTYPES.iter().map(|s| s.to_string()).collect(),
        AGE_BANDS.iter().map(|s| s.to_string()).collect(),
        years.clone(),
        PCR.iter().map(|s| s.to_string()).collect(),
        RECURRENCE.iter().map(|s| s.to_string()).collect(),
    ];
    let index = |d: usize, v: &str| -> usize {
        dim_values[d]
            .iter()
            .position(|x| x == v)
            .expect("a category of its dimension")
    };
    // Each cohort must be a union of whole subtypes (as the pillars are): the cohorts a
    // subtype's patients belong to, its signature, is the same for all of them.
    let mut signature: [Option<u64>; 7] = [None; 7];
    for p in patients.values() {
        let s = index(0, &p.cats[0]);
        match signature[s] {
            None => signature[s] = Some(p.member),
            Some(m) if m == p.member => {}
            Some(_) => bail!(
                "the disclosure audit needs every askable cohort to be a union of whole subtypes; one is not"
            ),
        }
    }
    let groups: Vec<u64> = signature
        .iter()
        .flatten()
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let group_of = |s: usize| signature[s].and_then(|m| groups.iter().position(|g| *g == m));
    let model = Blocks::new(groups.len(), years.len());

    // The variables: the counts of five tables, which meet only on their subtype (or group)
    // margins: subtype x age band, subtype x pCR, subtype x recurrence, subtype x whether
    // recurrence-free days are known, and cohort group x diagnosis year. Every published count
    // is a sum over one of them, and any non-negative integer tables with equal margins are
    // realised by some patients (assign each dimension's values to a margin's patients
    // independently), so this model is exact: an attacker knowing the whole design learns
    // nothing more from the counts than from these tables.
    let mut values = vec![0i64; model.len()];
    for p in patients.values() {
        let s = index(0, &p.cats[0]);
        values[model.sa(s, index(1, &p.cats[1]))] += 1;
        values[model.sp(s, index(3, &p.cats[3]))] += 1;
        values[model.sr(s, index(4, &p.cats[4]))] += 1;
        values[model.sk(s, p.rfs_days.is_some())] += 1;
        let g = group_of(s).expect("a patient's subtype has a signature");
        values[model.gy(g, index(2, &p.cats[2]))] += 1;
    }
    let mut links = Vec::new();
    for s in 0..SUBTYPES.len() {
        let margin: Vec<(usize, i64)> =
            (0..AGE_BANDS.len()).map(|a| (model.sa(s, a), -1)).collect();
        for other in [
            (0..PCR.len()).map(|p| model.sp(s, p)).collect::<Vec<_>>(),
            (0..RECURRENCE.len()).map(|r| model.sr(s, r)).collect(),
            vec![model.sk(s, false), model.sk(s, true)],
        ] {
            let mut l = margin.clone();
            l.extend(other.into_iter().map(|v| (v, 1)));
            links.push(l);
        }
    }
    for g in 0..groups.len() {
        let mut l: Vec<(usize, i64)> = (0..years.len()).map(|y| (model.gy(g, y), 1)).collect();
        for s in (0..SUBTYPES.len()).filter(|s| group_of(*s) == Some(g)) {
            l.extend((0..AGE_BANDS.len()).map(|a| (model.sa(s, a), -1)));
        }
        links.push(l);
    }

    // Every count of every cohort, as a quantity (equal variable sets: one quantity).
    let full = |d: usize| -> u128 { (1u128 << dim_values[d].len()) - 1 };
    let mut quantities: Vec<Quantity> = Vec::new();
    let mut by_vars: HashMap<Vec<usize>, usize> = HashMap::new();
    let mut counts: Vec<Vec<(Count, usize)>> = Vec::new();
    // `region`: subtype, age band, year, pCR, recurrence, rfs-days-known bit sets.
    let mut quantity_of = |region: [u128; 6], derived: bool| -> usize {
        let subtypes = (0..SUBTYPES.len()).filter(|s| region[0] & (1 << s) != 0);
        let mut vars: Vec<usize> = Vec::new();
        let restricted: Vec<usize> = (1..6)
            .filter(|d| region[*d] != if *d == 5 { 3 } else { full(*d) })
            .collect();
        match restricted.as_slice() {
            [] | [1] => {
                for s in subtypes {
                    vars.extend(
                        (0..AGE_BANDS.len())
                            .filter(|a| region[1] & (1 << a) != 0)
                            .map(|a| model.sa(s, a)),
                    );
                }
            }
            [3] => {
                for s in subtypes {
                    vars.extend(
                        (0..PCR.len())
                            .filter(|p| region[3] & (1 << p) != 0)
                            .map(|p| model.sp(s, p)),
                    );
                }
            }
            [4] => {
                for s in subtypes {
                    vars.extend(
                        (0..RECURRENCE.len())
                            .filter(|r| region[4] & (1 << r) != 0)
                            .map(|r| model.sr(s, r)),
                    );
                }
            }
            [5] => {
                for s in subtypes {
                    vars.extend(
                        [false, true]
                            .into_iter()
                            .filter(|k| region[5] & (1 << *k as u8) != 0)
                            .map(|k| model.sk(s, k)),
                    );
                }
            }
            [2] => {
                // A cohort's subtypes are whole groups.
                let gs: BTreeSet<usize> = subtypes.filter_map(group_of).collect();
                for g in gs {
                    vars.extend(
                        (0..years.len())
                            .filter(|y| region[2] & (1 << y) != 0)
                            .map(|y| model.gy(g, y)),
                    );
                }
            }
            _ => unreachable!("no published count crosses two of the tables"),
        }
        vars.sort_unstable();
        vars.dedup();
        let value = vars.iter().map(|v| values[*v]).sum();
        let next = quantities.len();
        *by_vars.entry(vars.clone()).or_insert_with(|| {
            quantities.push(Quantity {
                vars,
                value,
                region: region.to_vec(),
                weight: 0.0,
                derived,
            });
            next
        })
    };
    for c in 0..cohorts.len() {
        let in_cohort: u128 = (0..SUBTYPES.len())
            .filter(|s| signature[*s].is_some_and(|m| m & (1 << c) != 0))
            .map(|s| 1u128 << s)
            .sum();
        let present: BTreeSet<&str> = patients
            .values()
            .filter(|p| p.member & (1 << c) != 0)
            .map(|p| p.cats[0].as_str())
            .collect();
        let mut list = Vec::new();
        for (t, (_, dims)) in TABLES.iter().enumerate() {
            let mut keys: Vec<Vec<(usize, String)>> = vec![vec![]];
            for &d in *dims {
                keys = keys
                    .into_iter()
                    .flat_map(|k| {
                        dim_values[d].iter().map(move |v| {
                            let mut k = k.clone();
                            k.push((d, v.clone()));
                            k
                        })
                    })
                    .collect();
            }
            for key in keys {
                let mut region = [in_cohort, full(1), full(2), full(3), full(4), 3];
                for (d, v) in &key {
                    region[*d] &= 1u128 << index(*d, v);
                }
                list.push((Count::Cell { table: t, key }, quantity_of(region, false)));
            }
        }
        for var in 0..VARIABLES.len() {
            let strata = std::iter::once(None).chain(
                SUBTYPES
                    .iter()
                    .filter(|s| present.contains(*s))
                    .map(|s| Some(s.to_string())),
            );
            for subtype in strata {
                let mut region = [in_cohort, full(1), full(2), full(3), full(4), 3];
                if let Some(s) = &subtype {
                    region[0] &= 1u128 << index(0, s);
                }
                if var == 0 {
                    region[1] &= !(1u128 << index(1, "unknown"));
                } else {
                    region[5] = 2;
                }
                list.push((Count::StatN { var, subtype }, quantity_of(region, false)));
            }
        }
        counts.push(list);
    }
    // Derived subgroup counts. The cohorts are unions of subtype groups, so sums and
    // differences of their cells give the count of any union of groups that is not itself a
    // cohort (the patients of modeling_cohort in no pillar, two pillars together, ...), per
    // cell of every table without a subtype dimension and per whole-stratum statistic's n.
    // (Per subtype, the subtype tables already publish them.) Counts equal to a published
    // one are that one.
    let cohort_sets: BTreeSet<u128> = (0..cohorts.len())
        .map(|c| {
            (0..SUBTYPES.len())
                .filter(|s| signature[*s].is_some_and(|m| m & (1 << c) != 0))
                .map(|s| 1u128 << s)
                .sum()
        })
        .collect();
    for mask in 1u64..(1 << groups.len()) {
        let union: u128 = (0..SUBTYPES.len())
            .filter(|s| group_of(*s).is_some_and(|g| mask & (1 << g) != 0))
            .map(|s| 1u128 << s)
            .sum();
        if cohort_sets.contains(&union) {
            continue;
        }
        for (_, dims) in TABLES.iter() {
            if dims.contains(&0) {
                continue;
            }
            let cells: Vec<Option<(usize, usize)>> = match dims {
                [] => vec![None],
                [d] => (0..dim_values[*d].len()).map(|v| Some((*d, v))).collect(),
                _ => unreachable!("two-way tables have a subtype dimension"),
            };
            for cell in cells {
                let mut region = [union, full(1), full(2), full(3), full(4), 3];
                if let Some((d, v)) = cell {
                    region[d] &= 1u128 << v;
                }
                quantity_of(region, true);
            }
        }
        let mut region = [union, full(1), full(2), full(3), full(4), 3];
        region[1] &= !(1u128 << index(1, "unknown"));
        quantity_of(region, true);
        let mut region = [union, full(1), full(2), full(3), full(4), 3];
        region[5] = 2;
        quantity_of(region, true);
    }
    // A count's weight, to choose complements: the places of the answers that show it, a
    // total counting for ten two-way cells and a one-way cell or a statistic of a whole
    // cohort for two (researchers read the margins first).
    for list in &counts {
        for (count, q) in list {
            quantities[*q].weight += match count {
                Count::Cell { table: 0, .. } => 10.0,
                Count::Cell { key, .. } if key.len() == 1 => 2.0,
                Count::StatN { subtype: None, .. } => 2.0,
                _ => 1.0,
            };
        }
    }
    let model = protection::Model {
        values,
        links,
        quantities,
    };
    let prot = protection::protect(&model, min_cell as i64)?;
    let quantities = &model.quantities;

    // The answers.
    let window = quantile_window(min_cell);
    let mut answers = Vec::new();
    let mut per_cohort = BTreeMap::new();
    for (c, name) in cohorts.iter().enumerate() {
        let (mut published, mut suppressed) = (0usize, 0usize);
        let mut tables: Vec<Value> = TABLES
            .iter()
            .map(|(tname, dims)| {
                json!({
                    "name": tname,
                    "dimensions": dims.iter().map(|d| DIMS[*d]).collect::<Vec<_>>(),
                    "cells": [],
                })
            })
            .collect();
        let mut stats: Vec<Value> = Vec::new();
        let mut total = Value::Null;
        for (count, q) in &counts[c] {
            let shown = prot.published[*q];
            if shown {
                published += 1;
            } else {
                suppressed += 1;
            }
            match count {
                Count::Cell { table, key } => {
                    let key: Map<String, Value> = key
                        .iter()
                        .map(|(d, v)| (DIMS[*d].to_string(), Value::from(v.as_str())))
                        .collect();
                    let n = if shown {
                        Value::from(quantities[*q].value)
                    } else {
                        Value::Null
                    };
                    if *table == 0 {
                        total = n.clone();
                    }
                    tables[*table]["cells"]
                        .as_array_mut()
                        .expect("cells")
                        .push(json!({"key": key, "n": n, "suppressed": !shown}));
                }
                Count::StatN { var, subtype } => {
                    let (vname, width) = VARIABLES[*var];
                    let stratum: Map<String, Value> = subtype
                        .iter()
                        .map(|s| ("subtype".to_string(), Value::from(s.as_str())))
                        .collect();
                    let n = quantities[*q].value;
                    if !shown || (n > 0 && n < min_cell as i64) {
                        stats.push(
                            json!({"variable": vname, "stratum": stratum, "suppressed": true}),
                        );
                        continue;
                    }
                    let mut v: Vec<i32> = patients
                        .values()
                        .filter(|p| {
                            p.member & (1 << c) != 0
                                && subtype.as_ref().is_none_or(|s| &p.cats[0] == s)
                        })
                        .filter_map(|p| if *var == 0 { p.age } else { p.rfs_days })
                        .collect();
                    v.sort_unstable();
                    let mean = (!v.is_empty()).then(|| {
                        band_midpoint(
                            v.iter().map(|x| *x as f64).sum::<f64>() / v.len() as f64,
                            width,
                        )
                    });
                    let quart =
                        |f: f64| windowed_quantile(&v, f, window).map(|x| band_midpoint(x, width));
                    stats.push(json!({
                        "variable": vname,
                        "stratum": stratum,
                        "n": n,
                        "mean": mean,
                        "q1": quart(0.25),
                        "median": quart(0.5),
                        "q3": quart(0.75),
                    }));
                }
            }
        }
        per_cohort.insert(name.clone(), (published, suppressed));
        answers.push((
            name.clone(),
            json!({
                "format": SUMMARY_FORMAT,
                "node_id": node_id,
                "schema_version": schema_version,
                "cohort": name,
                "policy": {
                    "name": POLICY_NAME,
                    "min_cell": min_cell,
                    "statistics": format!(
                        "published where n is published and at least {min_cell}; means and quartiles as band midpoints (1 year, 7 days); quartiles average {window} order statistics, only where n >= {}",
                        2 * window
                    ),
                },
                "n": total,
                "tables": tables,
                "statistics": stats,
            }),
        ));
    }
    let content_sha256 = hex::encode(Sha256::digest(
        canonical_json(&json!({
            "node_id": node_id,
            "min_cell": min_cell,
            "schema_version": schema_version,
            "answers": answers.iter().map(|(n, a)| json!([n, a])).collect::<Vec<_>>(),
        }))
        .as_bytes(),
    ));
    Ok(Computed {
        node_id,
        min_cell,
        schema_version,
        answers,
        counts: per_cohort,
        protection: prot,
        content_sha256,
    })
}

/// What `publish` did.
#[derive(Debug, Clone, Serialize)]
pub struct ReleaseInfo {
    /// False when the latest release already publishes exactly this content.
    pub new: bool,
    pub release_id: i64,
    pub audit_seq: i64,
    pub published_at: String,
    pub min_cell: i32,
    pub content_sha256: String,
    /// Per cohort: published and suppressed counts.
    pub cohorts: BTreeMap<String, CohortCounts>,
    pub primary_suppressions: usize,
    pub secondary_suppressions: usize,
    /// Small derived subgroup counts (never published) protected like primary suppressions.
    pub derived_small_counts: usize,
    pub audit_rounds: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct CohortCounts {
    pub published: usize,
    pub suppressed: usize,
}

/// Compute, audit and store a release (with its audit-log entry, in one transaction). When
/// the latest release already publishes the same content, nothing is written unless `force`.
pub fn publish(client: &mut postgres::Client, force: bool) -> Result<ReleaseInfo> {
    let mut tx = client
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .start()?;
    let c = compute(&mut tx)?;
    let cohorts = c
        .counts
        .iter()
        .map(|(k, (p, s))| {
            (
                k.clone(),
                CohortCounts {
                    published: *p,
                    suppressed: *s,
                },
            )
        })
        .collect();
    let mut info = ReleaseInfo {
        new: true,
        release_id: 0,
        audit_seq: 0,
        published_at: String::new(),
        min_cell: c.min_cell,
        content_sha256: c.content_sha256.clone(),
        cohorts,
        primary_suppressions: c.protection.primary,
        secondary_suppressions: c.protection.secondary,
        derived_small_counts: c.protection.derived,
        audit_rounds: c.protection.rounds,
    };
    let latest = tx.query_opt(
        "SELECT release_id, audit_seq, to_char(published_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), content_sha256
           FROM federation.release ORDER BY release_id DESC LIMIT 1",
        &[],
    )?;
    if let Some(r) = latest {
        if !force && r.get::<_, String>(3) == c.content_sha256 {
            info.new = false;
            info.release_id = r.get(0);
            info.audit_seq = r.get(1);
            info.published_at = r.get(2);
            tx.rollback()?;
            return Ok(info);
        }
    }
    let r = tx.query_one(
        "SELECT nextval(pg_get_serial_sequence('federation.release', 'release_id')),
                to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
        &[],
    )?;
    info.release_id = r.get(0);
    info.published_at = r.get(1);
    let (seq, _) = audit::append(
        &mut tx,
        &Record {
            action: RELEASE_ACTION,
            run_id: None,
            locator_hash: None,
            key_id: None,
            detail: json!({
                "release_id": info.release_id,
                "node_id": c.node_id,
                "policy": POLICY_NAME,
                "min_cell": c.min_cell,
                "schema_version": c.schema_version,
                "content_sha256": c.content_sha256,
                "cohorts": info.cohorts,
                "primary_suppressions": info.primary_suppressions,
                "secondary_suppressions": info.secondary_suppressions,
                "derived_small_counts": info.derived_small_counts,
                "audit_rounds": info.audit_rounds,
            }),
        },
    )?;
    info.audit_seq = seq;
    tx.execute(
        "INSERT INTO federation.release (release_id, published_at, audit_seq, node_id, min_cell,
                                         schema_version, content_sha256)
         VALUES ($1, now(), $2, $3, $4, $5, $6)",
        &[
            &info.release_id,
            &seq,
            &c.node_id,
            &c.min_cell,
            &c.schema_version,
            &c.content_sha256,
        ],
    )?;
    for (name, mut answer) in c.answers {
        answer["generated_at"] = Value::from(info.published_at.as_str());
        answer["release_id"] = Value::from(info.release_id);
        answer["policy"]["audit_seq"] = Value::from(seq);
        tx.execute(
            "INSERT INTO federation.release_summary (release_id, cohort, summary)
             VALUES ($1, $2, $3)",
            &[&info.release_id, &name, &answer],
        )?;
    }
    tx.commit()?;
    Ok(info)
}
