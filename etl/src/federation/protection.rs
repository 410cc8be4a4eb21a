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
//! **Selection.** Primary suppression: every quantity from 1 to `min_cell - 1`. Then, while some
//! suppressed quantity's range is narrower than `min_cell`, a complement is suppressed for it:
//! among the published non-zero quantities whose regions meet its own (siblings under its
//! tightest published margins first, then its parts, then any other overlapping count,
//! smallest first, then any other), the first that makes its range wide enough, else the
//! first. Suppressing only removes constraints, so a range found wide enough stays wide
//! enough; the final release is nevertheless audited again in full.

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quantity {
    /// Indexes of the variables summed, sorted, distinct.
    pub vars: Vec<usize>,
    /// The true count.
    pub value: i64,
    /// What it counts, as a box in the space of the stratifying dimensions: per dimension, a
    /// bit set of the values it covers. Used to choose complements (which counts contain,
    /// are contained in, or are disjoint from which), never by the audit itself.
    pub region: Vec<u128>,
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
    /// Per quantity: the audited range of a suppressed quantity.
    pub ranges: Vec<Option<Range>>,
    pub primary: usize,
    pub secondary: usize,
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

/// Choose the suppressions of a release and verify them: every suppressed quantity keeps a
/// range of at least `min_cell` (see the module documentation).
pub fn protect(audit: &Model, min_cell: i64) -> Result<Protection> {
    let quantities = &audit.quantities;
    let n = quantities.len();
    let mut published: Vec<bool> = quantities
        .iter()
        .map(|q| !(1..min_cell).contains(&q.value))
        .collect();
    let primary = published.iter().filter(|p| !**p).count();
    let mut ranges: Vec<Option<Range>> = vec![None; n];
    let mut rounds = 0;
    loop {
        rounds += 1;
        let mut failing = Vec::new();
        for i in 0..n {
            if published[i] || ranges[i].is_some_and(|r| r.protects(min_cell)) {
                continue;
            }
            let r = audit.range(&published, i)?;
            ranges[i] = Some(r);
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
            let list: Vec<usize> = candidates(quantities, &published, q)
                .into_iter()
                .filter(|c| !chosen.contains(c))
                .collect();
            let Some(&first) = list.first() else {
                bail!(
                    "disclosure audit: a suppressed count cannot be protected by suppressing more"
                );
            };
            let mut pick = first;
            for &c in list.iter().take(CANDIDATES) {
                let mut trial = published.clone();
                trial[c] = false;
                if audit.range(&trial, q)?.protects(min_cell) {
                    pick = c;
                    break;
                }
            }
            chosen.push(pick);
            published[pick] = false;
        }
        for i in 0..n {
            if !published[i] && ranges[i].is_some_and(|r| !r.protects(min_cell)) {
                ranges[i] = None;
            }
        }
    }
    // The final audit, from scratch, of the release as it will be published.
    for i in 0..n {
        if !published[i] {
            let r = audit.range(&published, i)?;
            if !r.protects(min_cell) {
                bail!("disclosure audit: the final release fails its own audit");
            }
            ranges[i] = Some(r);
        }
    }
    let suppressed = published.iter().filter(|p| !**p).count();
    Ok(Protection {
        published,
        ranges,
        primary,
        secondary: suppressed - primary,
        rounds,
    })
}
