//! The disclosure audit of a federation release: secondary suppression chosen for the whole
//! release at once, verified by the integer programme an attacker would solve.
//!
//! **Model.** A [`Model`] has integer variables `>= 0` (their true values known here),
//! *links*: linear equalities every assignment meets (how the variables of a table relate to
//! another's), and [`Quantity`]s: every count a release can publish (a table cell, a total, a
//! statistic's `n`) as a sum of variables. Each published quantity is an equality constraint;
//! for each suppressed one, the attacker's knowledge is the range of its value over every
//! integer assignment meeting the links and all the published constraints. How the release
//! builds an exact model of its tables is in [`super::release`].
//!
//! **Integers, not the LP relaxation.** The attacker's integer range is narrower than the LP
//! range, so a protection verified on the relaxation would not be safe. The audit does not need
//! proven optima either: it needs two integer assignments, both meeting every published count
//! exactly, whose values of the suppressed quantity differ by at least `min_cell`. Each
//! suppressed quantity is maximised and minimised as an integer programme, warm-started from
//! the true counts; the solutions found are rounded and re-checked against every published
//! constraint in exact integer arithmetic (a solution that fails the check is replaced by the
//! true counts, which always meet them). The spread between two such witnesses is a lower bound
//! of the attacker's true range, so the test `hi - lo >= min_cell` on witnesses is sound
//! whether or not the solver proved optimality; a search stopped by its node limit can only
//! make the audit suppress more.
//!
//! **Solver.** [`microlp`]: pure Rust (no C or C++ solver to build on a hospital server),
//! maintained, with integer variables (branch and bound), warm starts and node limits. The
//! programmes here have coefficients of 1 and -1 and a few hundred variables, well inside its
//! range. (`good_lp` would only add a modelling layer over the same solver.)
//!
//! **Derived quantities.** A count the release never publishes can still be determined by the
//! published ones (a sum or difference of cells: the patients of a cohort in none of the
//! cohorts nested in it, per cell of a table). Such a count is a [`Quantity`] marked
//! `derived`: never a constraint, never a complement, and, when its value is from 1 to
//! `min_cell - 1`, a primary like a small published count: chosen for and audited alike (its
//! range is an integer programme like any other's, over the sum of its variables).
//!
//! **Selection.** Primary suppression: every quantity from 1 to `min_cell - 1`. Secondary
//! suppression is chosen the way tau-Argus and sdcTable do, one primary at a time, largest
//! first, by a linear programme over *deviations* of the variables: find a change `d` that
//! keeps the variables non-negative and the links met and moves the primary up by at least
//! `min_cell`, at the least cost, where moving a published quantity costs its weight (how many
//! places of the answers show it) times `1 + ln(1 + value)` per unit, and moving a quantity
//! already suppressed costs almost nothing. Every published quantity the optimum moves is
//! suppressed. The relaxation thus prefers complements that are small, shown once, and already
//! on the path of earlier primaries' protection (so one complement serves several primaries),
//! and it never suppresses a margin when an interior cell will do. Then the release is audited
//! (below); a suppressed quantity whose integer range is still too narrow (the relaxation is
//! not the integer programme) gets the same programme again, up or down, and, if that finds
//! nothing more to suppress, a greedy complement (among the published quantities whose
//! regions meet its own: siblings under its tightest published margins first, then its parts,
//! then any other overlapping count, smallest first, the first that makes its range wide
//! enough), until the audit passes. Last, each complement, the most costly first, is
//! published again where the audit of every suppressed quantity still passes without it (a
//! later primary's complements often protect an earlier one's). Suppressing only removes
//! constraints, so during selection a range found wide enough stays wide enough; publishing
//! a complement again adds one, so then every suppressed range is audited again; and the final
//! release is audited again in full, from scratch.
//! The choice is a heuristic (the cost-minimal pattern is a much larger integer programme);
//! its soundness rests only on the audit.

use anyhow::{bail, Result};
use microlp::{ComparisonOp, OptimizationDirection, Problem, SolveOptions};
use std::collections::BTreeSet;

/// Upper bound of a variable; a range reaching half of it counts as unbounded.
const UNBOUNDED: i64 = 1_000_000;
/// Branch-and-bound nodes per programme; a stopped search only makes the audit stricter.
const NODE_LIMIT: u64 = 2_000;
/// Candidate complements tried per unprotected quantity and round.
const CANDIDATES: usize = 6;

/// A count the release may publish: the sum of some variables.
#[derive(Debug, Clone, PartialEq)]
pub struct Quantity {
    /// Indexes of the variables summed, sorted, distinct.
    pub vars: Vec<usize>,
    /// The true count.
    pub value: i64,
    /// What it counts, as a box in the space of the stratifying dimensions: per dimension, a
    /// bit set of the values it covers. Used to choose complements (which counts contain,
    /// are contained in, or are disjoint from which), never by the audit itself.
    pub region: Vec<u128>,
    /// What suppressing it costs the release, relative to other counts (e.g. how many
    /// answers show it). Used to choose complements, never by the audit itself.
    pub weight: f64,
    /// A count the release never publishes but that published counts determine or bound (a
    /// subgroup's count that is a sum or difference of published ones, such as the patients
    /// of a cohort in none of the cohorts nested in it). Never a constraint nor a complement;
    /// when its value is from 1 to `min_cell - 1` it is protected like a primary suppression.
    pub derived: bool,
}

impl Quantity {
    fn within(&self, other: &Quantity) -> bool {
        self.region
            .iter()
            .zip(&other.region)
            .all(|(a, b)| a & !b == 0)
    }
    fn disjoint(&self, other: &Quantity) -> bool {
        self.region
            .iter()
            .zip(&other.region)
            .any(|(a, b)| a & b == 0)
    }
}

/// The attacker's problem.
#[derive(Debug, Clone)]
pub struct Model {
    /// The true value of every variable.
    pub values: Vec<i64>,
    /// Equalities `sum(coefficient * variable) = 0` that hold whatever the data.
    pub links: Vec<Vec<(usize, i64)>>,
    pub quantities: Vec<Quantity>,
}

/// What an attacker can derive about one suppressed quantity: two integer assignments meeting
/// every link and published count give it the values `lo` and `hi` (`hi` None: unbounded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub lo: i64,
    pub hi: Option<i64>,
}

impl Range {
    /// Whether at least `min_cell + 1` values stay possible (`hi - lo >= min_cell`).
    pub fn protects(&self, min_cell: i64) -> bool {
        self.hi.is_none_or(|hi| hi - self.lo >= min_cell)
    }
}

/// The outcome of [`protect`].
#[derive(Debug, Clone)]
pub struct Protection {
    /// Per quantity: published (true) or suppressed.
    pub published: Vec<bool>,
    /// Per quantity: the audited range of a suppressed quantity (or of a small derived one).
    pub ranges: Vec<Option<Range>>,
    pub primary: usize,
    pub secondary: usize,
    /// Derived quantities from 1 to `min_cell - 1`, protected like primaries (not counted in
    /// `primary`: they are never published anyway).
    pub derived: usize,
    /// Selection rounds until the audit passed.
    pub rounds: usize,
}

impl Model {
    /// The range of quantity `target` given the published quantities.
    pub fn range(&self, published: &[bool], target: usize) -> Result<Range> {
        let lo = self.solve(published, target, OptimizationDirection::Minimize)?;
        let hi = self.solve(published, target, OptimizationDirection::Maximize)?;
        Ok(Range {
            lo,
            hi: (hi < UNBOUNDED / 2).then_some(hi),
        })
    }

    /// Whether integer values `x` meet every link and published count exactly.
    fn meets(&self, published: &[bool], x: &[i64]) -> bool {
        x.iter().all(|v| *v >= 0)
            && self
                .links
                .iter()
                .all(|l| l.iter().map(|(v, c)| c * x[*v]).sum::<i64>() == 0)
            && self
                .quantities
                .iter()
                .enumerate()
                .all(|(i, q)| !published[i] || q.vars.iter().map(|v| x[*v]).sum::<i64>() == q.value)
    }

    /// The cheapest published quantities to suppress so that `target` can move by `need`
    /// (up if positive, down if negative) with every other published count unchanged, by the
    /// linear programme over deviations `d` of the variables: `values + d >= 0`, the links
    /// hold for `d`, `target` moves by at least `need`, and a published quantity `i` costs
    /// `cost[i] * |sum of d over it|` (already suppressed ones a token amount, so that
    /// deviations stay short). Every published quantity the optimum moves is returned; None
    /// when the programme fails. The choice is a heuristic: only the audit decides.
    fn complements(
        &self,
        published: &[bool],
        target: usize,
        need: i64,
        cost: &[f64],
    ) -> Option<Vec<usize>> {
        let mut p = Problem::new(OptimizationDirection::Minimize);
        let d: Vec<_> = self
            .values
            .iter()
            .map(|v| p.add_var(0.0, (-(*v as f64), f64::INFINITY)))
            .collect();
        for l in &self.links {
            let terms: Vec<_> = l.iter().map(|(v, c)| (d[*v], *c as f64)).collect();
            p.add_constraint(terms.as_slice(), ComparisonOp::Eq, 0.0);
        }
        let mut moved = Vec::new();
        for (i, q) in self.quantities.iter().enumerate() {
            if q.vars.is_empty() || (q.derived && i != target) {
                continue;
            }
            let mut terms: Vec<_> = q.vars.iter().map(|&a| (d[a], 1.0)).collect();
            if i == target {
                let (op, rhs) = if need > 0 {
                    (ComparisonOp::Ge, need as f64)
                } else {
                    (ComparisonOp::Le, need as f64)
                };
                p.add_constraint(terms.as_slice(), op, rhs);
                continue;
            }
            let c = if published[i] { cost[i] } else { 1e-3 };
            let t = p.add_var(c, (0.0, f64::INFINITY));
            terms.push((t, -1.0));
            p.add_constraint(terms.as_slice(), ComparisonOp::Le, 0.0);
            terms.last_mut().expect("t").1 = 1.0;
            p.add_constraint(terms.as_slice(), ComparisonOp::Ge, 0.0);
            if published[i] {
                moved.push((i, terms));
            }
        }
        let outcome = p.solve().ok()?;
        let sol = outcome.solution()?;
        Some(
            moved
                .into_iter()
                .filter(|(_, terms)| {
                    let shift: f64 = terms[..terms.len() - 1]
                        .iter()
                        .map(|(v, _)| sol.var_value(*v))
                        .sum();
                    shift.abs() > 1e-6
                })
                .map(|(i, _)| i)
                .collect(),
        )
    }

    /// A witness value of `target` in the given direction: an integer assignment meeting every
    /// link and published count exactly (checked here in integers), as far in that direction
    /// as the solver got.
    fn solve(&self, published: &[bool], target: usize, dir: OptimizationDirection) -> Result<i64> {
        let q = &self.quantities[target];
        let truth = q.value;
        let in_target: BTreeSet<usize> = q.vars.iter().copied().collect();
        let mut p = Problem::new(dir);
        let vars: Vec<_> = (0..self.values.len())
            .map(|a| {
                let obj = if in_target.contains(&a) { 1.0 } else { 0.0 };
                p.add_integer_var(obj, (0, UNBOUNDED as i32))
            })
            .collect();
        for l in &self.links {
            let terms: Vec<_> = l.iter().map(|(v, c)| (vars[*v], *c as f64)).collect();
            p.add_constraint(terms.as_slice(), ComparisonOp::Eq, 0.0);
        }
        for (i, c) in self.quantities.iter().enumerate() {
            if published[i] && !c.vars.is_empty() {
                let terms: Vec<_> = c.vars.iter().map(|&a| (vars[a], 1.0)).collect();
                p.add_constraint(terms.as_slice(), ComparisonOp::Eq, c.value as f64);
            }
        }
        let mut options = SolveOptions::default();
        options.node_limit = Some(NODE_LIMIT);
        options.warm_start = Some(
            vars.iter()
                .zip(&self.values)
                .map(|(v, n)| (*v, *n as f64))
                .collect(),
        );
        // The true values meet every constraint: an error or an interrupted search leaves
        // the truth as the only witness we can vouch for.
        let Ok(outcome) = p.solve_with(options) else {
            return Ok(truth);
        };
        let Some(sol) = outcome.solution() else {
            return Ok(truth);
        };
        let x: Vec<i64> = vars
            .iter()
            .map(|v| sol.var_value(*v).round() as i64)
            .collect();
        if !self.meets(published, &x) {
            return Ok(truth);
        }
        let v: i64 = q.vars.iter().map(|&a| x[a]).sum();
        Ok(match dir {
            OptimizationDirection::Maximize => v.max(truth),
            OptimizationDirection::Minimize => v.min(truth),
        })
    }
}

/// The complements to try for an unprotected quantity, best first.
fn candidates(quantities: &[Quantity], published: &[bool], target: usize) -> Vec<usize> {
    let q = &quantities[target];
    let eligible = |i: usize| i != target && published[i] && quantities[i].value > 0;
    let all = || (0..quantities.len()).filter(|&i| eligible(i));
    let mut parents: Vec<usize> = all().filter(|&i| q.within(&quantities[i])).collect();
    parents.sort_by_key(|&i| (quantities[i].value, i));
    let mut out: Vec<usize> = Vec::new();
    let push = |out: &mut Vec<usize>, mut list: Vec<usize>| {
        list.sort_by_key(|&i| (quantities[i].value, i));
        for i in list {
            if !out.contains(&i) {
                out.push(i);
            }
        }
    };
    for &m in &parents {
        let siblings = all()
            .filter(|&i| i != m)
            .filter(|&i| quantities[i].disjoint(q) && quantities[i].within(&quantities[m]))
            .collect();
        push(&mut out, siblings);
    }
    let parts = all().filter(|&i| quantities[i].within(q)).collect();
    push(&mut out, parts);
    let overlapping = all()
        .filter(|&i| !parents.contains(&i) && !quantities[i].disjoint(q))
        .collect();
    push(&mut out, overlapping);
    // Links can tie counts whose regions are disjoint: then any other published count.
    push(&mut out, all().collect());
    out
}

/// What suppressing each quantity costs (see the module documentation).
fn costs(quantities: &[Quantity]) -> Vec<f64> {
    quantities
        .iter()
        .map(|q| q.weight.max(1e-3) * (1.0 + (1.0 + q.value.max(0) as f64).ln()))
        .collect()
}

/// The greedy choice of one complement for `q`: the first candidate that makes its range wide
/// enough, else the first.
fn greedy(
    audit: &Model,
    published: &[bool],
    q: usize,
    min_cell: i64,
    chosen: &[usize],
) -> Result<usize> {
    let list: Vec<usize> = candidates(&audit.quantities, published, q)
        .into_iter()
        .filter(|c| !chosen.contains(c))
        .collect();
    let Some(&first) = list.first() else {
        bail!("disclosure audit: a suppressed count cannot be protected by suppressing more");
    };
    for &c in list.iter().take(CANDIDATES) {
        let mut trial = published.to_vec();
        trial[c] = false;
        if audit.range(&trial, q)?.protects(min_cell) {
            return Ok(c);
        }
    }
    Ok(first)
}

/// The cheapest complements the linear programme finds for an unprotected `q`: up, or down
/// where its value allows.
fn cheapest(
    audit: &Model,
    published: &[bool],
    q: usize,
    min_cell: i64,
    cost: &[f64],
) -> Vec<usize> {
    let mut options = vec![audit.complements(published, q, min_cell, cost)];
    if audit.quantities[q].value >= min_cell {
        options.push(audit.complements(published, q, -min_cell, cost));
    }
    options
        .into_iter()
        .flatten()
        .filter(|c| !c.is_empty())
        .min_by(|a, b| {
            let total = |c: &Vec<usize>| c.iter().map(|i| cost[*i]).sum::<f64>();
            total(a).total_cmp(&total(b))
        })
        .unwrap_or_default()
}

/// Choose the suppressions of a release and verify them: every suppressed quantity keeps a
/// range of at least `min_cell` (see the module documentation).
pub fn protect(audit: &Model, min_cell: i64) -> Result<Protection> {
    let quantities = &audit.quantities;
    let n = quantities.len();
    let small = |i: usize| (1..min_cell).contains(&quantities[i].value);
    // Derived quantities are never published; only the small ones are audited.
    let mut published: Vec<bool> = (0..n)
        .map(|i| !quantities[i].derived && !small(i))
        .collect();
    let watched =
        |published: &[bool], i: usize| !published[i] && (!quantities[i].derived || small(i));
    let primary = (0..n)
        .filter(|&i| !quantities[i].derived && small(i))
        .count();
    let derived = (0..n)
        .filter(|&i| quantities[i].derived && small(i))
        .count();
    let cost = costs(quantities);
    // Each primary suppression, largest first, gets the cheapest complements given those
    // chosen before it (which cost it nothing).
    let mut order: Vec<usize> = (0..n).filter(|&i| watched(&published, i)).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(quantities[i].value), i));
    for &q in &order {
        for c in cheapest(audit, &published, q, min_cell, &cost) {
            published[c] = false;
        }
    }
    let mut ranges: Vec<Option<Range>> = vec![None; n];
    let mut rounds = 0;
    loop {
        rounds += 1;
        let mut failing = Vec::new();
        for (i, range) in ranges.iter_mut().enumerate() {
            if !watched(&published, i) || range.is_some_and(|r| r.protects(min_cell)) {
                continue;
            }
            let r = audit.range(&published, i)?;
            *range = Some(r);
            if !r.protects(min_cell) {
                failing.push(i);
            }
        }
        if failing.is_empty() {
            break;
        }
        let mut chosen: Vec<usize> = Vec::new();
        for &q in &failing {
            // A complement chosen earlier this round may already protect it.
            if !chosen.is_empty() {
                let r = audit.range(&published, q)?;
                if r.protects(min_cell) {
                    ranges[q] = Some(r);
                    continue;
                }
            }
            let mut picks = cheapest(audit, &published, q, min_cell, &cost);
            if picks.is_empty() {
                // The relaxation finds it protected where the integer audit does not.
                picks.push(greedy(audit, &published, q, min_cell, &chosen)?);
            }
            for c in picks {
                chosen.push(c);
                published[c] = false;
            }
        }
        for i in 0..n {
            if !published[i] && ranges[i].is_some_and(|r| !r.protects(min_cell)) {
                ranges[i] = None;
            }
        }
    }
    // Complements that turn out redundant (a later primary's protection covers an earlier
    // one's) are published again, the most costly first, where the audit still passes.
    let mut secondaries: Vec<usize> = (0..n)
        .filter(|&i| !published[i] && !quantities[i].derived && !small(i))
        .collect();
    secondaries.sort_by(|a, b| cost[*b].total_cmp(&cost[*a]).then(a.cmp(b)));
    for j in secondaries {
        published[j] = true;
        let mut ok = true;
        for i in 0..n {
            if watched(&published, i) && !audit.range(&published, i)?.protects(min_cell) {
                ok = false;
                break;
            }
        }
        if !ok {
            published[j] = false;
        }
    }
    // The final audit, from scratch, of the release as it will be published.
    for (i, range) in ranges.iter_mut().enumerate() {
        if watched(&published, i) {
            let r = audit.range(&published, i)?;
            if !r.protects(min_cell) {
                bail!("disclosure audit: the final release fails its own audit");
            }
            *range = Some(r);
        }
    }
    let suppressed = (0..n)
        .filter(|&i| !published[i] && !quantities[i].derived)
        .count();
    Ok(Protection {
        published,
        ranges,
        primary,
        secondary: suppressed - primary,
        derived,
        rounds,
    })
}
