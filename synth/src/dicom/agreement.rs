//! The expected inter-observer agreement of a patient's structure sets, for the truth file:
//! computed from the polygons as written, on the CT grid as written, independently of
//! registrar's index (every voxel centre tested against every contour of its slice by ray
//! casting; nearest surface voxels found by comparing points slab by slab).
//!
//! The conventions are registrar's documented ones: a voxel is inside when its centre is
//! inside an odd number of the slice's contours (holes subtracted); each contoured slice is one
//! slab, nothing is interpolated; the surface is the inside voxels with a face neighbour
//! outside; distances are between voxel centres (mm); HD95 is the 95th percentile of both
//! directions' distances pooled, with linear interpolation; the mean surface distance is the
//! mean of the pooled distances.

use serde::Serialize;

/// The CT grid as written.
pub(crate) struct Geometry<'a> {
    pub x0: f64,
    pub y0: f64,
    pub pixel: f64,
    pub matrix: usize,
    pub z: &'a [f64],
}

/// One pair's expected agreement on one structure.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct AgreementTruth {
    /// SOP Instance UIDs of the two structure sets (as in the source files).
    pub set_a: String,
    pub set_b: String,
    pub observer_a: usize,
    pub observer_b: usize,
    /// The intended TG-263 name.
    pub tg263: String,
    pub dice: f64,
    pub hd95_mm: f64,
    pub hd_max_mm: f64,
    pub msd_mm: f64,
    pub volume_a_cc: f64,
    pub volume_b_cc: f64,
}

type Voxel = (usize, usize, usize);

/// The voxels inside, as a list and as a dense grid (slice, row, column).
struct Inside {
    list: Vec<Voxel>,
    dense: Vec<bool>,
    n: usize,
    slices: usize,
}

impl Inside {
    fn contains(&self, (k, i, j): Voxel) -> bool {
        k < self.slices && i < self.n && j < self.n && self.dense[(k * self.n + i) * self.n + j]
    }
}

fn inside(x: f64, y: f64, poly: &[[f64; 2]]) -> bool {
    let mut c = false;
    let mut j = poly.len() - 1;
    for i in 0..poly.len() {
        let ([xi, yi], [xj, yj]) = (poly[i], poly[j]);
        if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
            c = !c;
        }
        j = i;
    }
    c
}

/// The voxels inside an ROI's contours (slice index, polygon).
fn voxels(g: &Geometry<'_>, contours: &[(usize, Vec<[f64; 2]>)]) -> Inside {
    let mut out = Inside {
        list: Vec::new(),
        dense: vec![false; g.z.len() * g.matrix * g.matrix],
        n: g.matrix,
        slices: g.z.len(),
    };
    let mut slices: Vec<usize> = contours.iter().map(|(k, _)| *k).collect();
    slices.sort_unstable();
    slices.dedup();
    for k in slices {
        let on: Vec<&Vec<[f64; 2]>> = contours
            .iter()
            .filter(|(kk, _)| *kk == k)
            .map(|(_, p)| p)
            .collect();
        let (mut xl, mut xh, mut yl, mut yh) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for p in on.iter().flat_map(|p| p.iter()) {
            xl = xl.min(p[0]);
            xh = xh.max(p[0]);
            yl = yl.min(p[1]);
            yh = yh.max(p[1]);
        }
        let idx = |v: f64, o: f64| ((v - o) / g.pixel).floor().max(0.0) as usize;
        let (j0, j1) = (idx(xl, g.x0), (idx(xh, g.x0) + 1).min(g.matrix - 1));
        let (i0, i1) = (idx(yl, g.y0), (idx(yh, g.y0) + 1).min(g.matrix - 1));
        for i in i0..=i1 {
            let y = g.y0 + i as f64 * g.pixel;
            for j in j0..=j1 {
                let x = g.x0 + j as f64 * g.pixel;
                if on.iter().filter(|p| inside(x, y, p)).count() % 2 == 1 {
                    out.list.push((k, i, j));
                    out.dense[(k * g.matrix + i) * g.matrix + j] = true;
                }
            }
        }
    }
    out
}

/// Surface voxels as points (mm), grouped by slice.
fn surface(g: &Geometry<'_>, v: &Inside) -> Vec<Vec<[f64; 2]>> {
    let mut by_slice = vec![Vec::new(); g.z.len()];
    for &(k, i, j) in &v.list {
        let n = [
            (k.wrapping_sub(1), i, j),
            (k + 1, i, j),
            (k, i.wrapping_sub(1), j),
            (k, i + 1, j),
            (k, i, j.wrapping_sub(1)),
            (k, i, j + 1),
        ];
        if n.iter().any(|x| !v.contains(*x)) {
            by_slice[k].push([j as f64 * g.pixel, i as f64 * g.pixel]);
        }
    }
    by_slice
}

/// For every point of `from`, the distance to the nearest point of `to`.
fn directed(g: &Geometry<'_>, from: &[Vec<[f64; 2]>], to: &[Vec<[f64; 2]>]) -> Vec<f64> {
    let mut out = Vec::new();
    let n = g.z.len();
    for (k, pts) in from.iter().enumerate() {
        // Slices of `to` by distance along z from slice k.
        let mut order: Vec<usize> = (0..n).filter(|kk| !to[*kk].is_empty()).collect();
        order.sort_by(|a, b| {
            (g.z[*a] - g.z[k])
                .abs()
                .total_cmp(&(g.z[*b] - g.z[k]).abs())
        });
        for p in pts {
            let mut best = f64::INFINITY;
            for &kk in &order {
                let dz = g.z[kk] - g.z[k];
                if dz * dz >= best {
                    break;
                }
                for q in &to[kk] {
                    let d = (p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2) + dz * dz;
                    if d < best {
                        best = d;
                    }
                }
            }
            out.push(best.sqrt());
        }
    }
    out
}

/// The metrics of two drawings of one structure: (dice, hd95, hd max, msd, volume a, volume b
/// in cc); None when either fills no voxel.
pub(crate) fn measure(
    g: &Geometry<'_>,
    a: &[(usize, Vec<[f64; 2]>)],
    b: &[(usize, Vec<[f64; 2]>)],
) -> Option<[f64; 6]> {
    let (va, vb) = (voxels(g, a), voxels(g, b));
    if va.list.is_empty() || vb.list.is_empty() {
        return None;
    }
    let (sa, sb) = (surface(g, &va), surface(g, &vb));
    let mut pooled = directed(g, &sa, &sb);
    pooled.extend(directed(g, &sb, &sa));
    pooled.sort_by(f64::total_cmp);
    let rank = 0.95 * (pooled.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = (lo + 1).min(pooled.len() - 1);
    let hd95 = pooled[lo] + (rank - lo as f64) * (pooled[hi] - pooled[lo]);
    let inter = va.list.iter().filter(|v| vb.contains(**v)).count() as f64;
    let dz = if g.z.len() > 1 {
        g.z[1] - g.z[0]
    } else {
        g.pixel
    };
    let cc = |n: usize| n as f64 * g.pixel * g.pixel * dz / 1000.0;
    Some([
        2.0 * inter / (va.list.len() + vb.list.len()) as f64,
        hd95,
        *pooled.last().expect("surfaces are not empty"),
        pooled.iter().sum::<f64>() / pooled.len() as f64,
        cc(va.list.len()),
        cc(vb.list.len()),
    ])
}

/// An RT Dose as written: stored values on a grid whose frames are the CT slices.
pub(crate) struct DoseGeometry<'a> {
    pub x0: f64,
    pub y0: f64,
    pub spacing: f64,
    pub rows: usize,
    pub cols: usize,
    pub scaling: f64,
    /// Frame by frame, row by row.
    pub values: &'a [u16],
}

/// The expected dose-volume metrics of an ROI (slice index, polygon) whose planes are the
/// dose's frames: the dose-grid points inside each plane's contours (ray casting, even-odd),
/// each the same volume; Dmean, D95% and D2% (points by dose, rank floor((1 - x) n)) and
/// V95% of `prescription_gy`. None when no point is inside.
pub(crate) fn dvh(
    d: &DoseGeometry<'_>,
    contours: &[(usize, Vec<[f64; 2]>)],
    prescription_gy: f64,
) -> Option<[f64; 4]> {
    let mut doses: Vec<f64> = Vec::new();
    let mut slices: Vec<usize> = contours.iter().map(|(k, _)| *k).collect();
    slices.sort_unstable();
    slices.dedup();
    for k in slices {
        let on: Vec<&Vec<[f64; 2]>> = contours
            .iter()
            .filter(|(kk, _)| *kk == k)
            .map(|(_, p)| p)
            .collect();
        for i in 0..d.rows {
            let y = d.y0 + i as f64 * d.spacing;
            for j in 0..d.cols {
                let x = d.x0 + j as f64 * d.spacing;
                if on.iter().filter(|p| inside(x, y, p)).count() % 2 == 1 {
                    let v = d.values[(k * d.rows + i) * d.cols + j];
                    doses.push(f64::from(v) * d.scaling);
                }
            }
        }
    }
    if doses.is_empty() {
        return None;
    }
    doses.sort_by(f64::total_cmp);
    let n = doses.len();
    let at = |x: f64| doses[(((1.0 - x) * n as f64).floor() as usize).min(n - 1)];
    let cut = 0.95 * prescription_gy;
    Some([
        doses.iter().sum::<f64>() / n as f64,
        at(0.95),
        at(0.02),
        100.0 * doses.iter().filter(|v| **v >= cut).count() as f64 / n as f64,
    ])
}
