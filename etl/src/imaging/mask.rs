//! Structure masks on a CT grid, their surfaces and the distances between surfaces.
//!
//! ## The grid
//!
//! A [`Grid`] is an axial CT series: voxel centres at `x = x0 + j dx`, `y = y0 + i dy` (column
//! `j`, row `i`; Image Position Patient, Pixel Spacing) on the series' slice positions `z[k]`
//! (sorted, not necessarily evenly spaced). Only the axial orientation
//! `(1,0,0, 0,1,0)` is read ([`Grid::from_slices`] says why it refuses another).
//!
//! ## Rasterising contours
//!
//! An ROI's closed planar contours are drawn on the slice whose position is nearest their
//! plane, when that is within half the distance to the neighbouring slices (else the plane is
//! counted as off the grid and the ROI is not measured). On a slice, a voxel is inside when its
//! centre is inside by the even-odd rule over every contour of that slice: a contour inside
//! another is a hole and subtracted, an island in a hole is added; a centre exactly on a left
//! edge is inside, on a right edge outside (half-open scan lines). **End slabs**: a slice with
//! contours is filled as one slab as thick as the slice (half-way to each neighbouring slice),
//! a slice without contours is empty: nothing is interpolated between planes and nothing is
//! added beyond the first and last contoured planes, the convention of the ROI volumes of
//! `registrar dicom index`.
//!
//! ## Surfaces and distances
//!
//! A mask's surface is its voxels with at least one of their six face neighbours outside the
//! mask (a voxel on the edge of the grid counts its missing neighbour as outside), so the first
//! and last contoured slices are surface throughout. The directed surface distance from `A` to
//! `B` is, for every surface voxel of `A`, the Euclidean distance in millimetres (voxel
//! spacing, slice positions) from its centre to the nearest surface voxel centre of `B`: an
//! exact Euclidean distance transform of `B`'s surface (separable lower envelopes of
//! parabolas, Felzenszwalb and Huttenlocher 2012, on arbitrary positions along each axis),
//! read at `A`'s surface voxels. MedPy's `__surface_distances` and plastimatch's boundary
//! distances measure the same thing.

use std::cmp::Ordering;

/// An axial CT grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    pub x0: f64,
    pub y0: f64,
    /// Column spacing (x), mm.
    pub dx: f64,
    /// Row spacing (y), mm.
    pub dy: f64,
    pub cols: usize,
    pub rows: usize,
    /// Slice positions, increasing.
    pub z: Vec<f64>,
}

/// One CT slice's geometry as read from its file.
#[derive(Debug, Clone, PartialEq)]
pub struct Slice {
    /// Image Position Patient.
    pub position: [f64; 3],
    /// Image Orientation Patient.
    pub orientation: [f64; 6],
    /// Pixel Spacing: row spacing (between rows, y), column spacing (x).
    pub spacing: [f64; 2],
    pub rows: usize,
    pub cols: usize,
}

/// Why a CT series gives no grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GridProblem {
    NoSlices,
    NotAxial,
    /// The slices differ in rows, columns, spacing or in-plane position.
    Inconsistent,
    /// Two slices at one position.
    DuplicatePosition,
}

impl GridProblem {
    /// A reason for the data manager (names nothing from the files).
    pub fn reason(self) -> &'static str {
        match self {
            GridProblem::NoSlices => "the referenced CT series is not in the tree",
            GridProblem::NotAxial => {
                "the referenced CT series is not axial (Image Orientation Patient other than 1\\0\\0\\0\\1\\0)"
            }
            GridProblem::Inconsistent => {
                "the slices of the referenced CT series differ in size, spacing or in-plane position"
            }
            GridProblem::DuplicatePosition => {
                "two slices of the referenced CT series have one position"
            }
        }
    }
}

impl Grid {
    /// The grid of a CT series' slices (in any order).
    pub fn from_slices(slices: &[Slice]) -> Result<Grid, GridProblem> {
        let first = slices.first().ok_or(GridProblem::NoSlices)?;
        const AXIAL: [f64; 6] = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0];
        let close = |a: f64, b: f64, tol: f64| (a - b).abs() <= tol;
        for s in slices {
            if s.orientation
                .iter()
                .zip(AXIAL)
                .any(|(a, b)| !close(*a, b, 1e-4))
            {
                return Err(GridProblem::NotAxial);
            }
            if s.rows != first.rows
                || s.cols != first.cols
                || s.rows == 0
                || s.cols == 0
                || !close(s.spacing[0], first.spacing[0], 1e-4)
                || !close(s.spacing[1], first.spacing[1], 1e-4)
                || s.spacing[0] <= 0.0
                || s.spacing[1] <= 0.0
                || !close(s.position[0], first.position[0], 1e-2)
                || !close(s.position[1], first.position[1], 1e-2)
            {
                return Err(GridProblem::Inconsistent);
            }
        }
        let mut z: Vec<f64> = slices.iter().map(|s| s.position[2]).collect();
        z.sort_by(f64::total_cmp);
        if z.windows(2).any(|w| w[1] - w[0] < 1e-3) {
            return Err(GridProblem::DuplicatePosition);
        }
        Ok(Grid {
            x0: first.position[0],
            y0: first.position[1],
            dx: first.spacing[1],
            dy: first.spacing[0],
            cols: first.cols,
            rows: first.rows,
            z,
        })
    }

    /// The slice a contour plane at `z` is drawn on (see the module documentation).
    pub fn slice_of(&self, z: f64) -> Option<usize> {
        let k = match self.z.binary_search_by(|p| p.total_cmp(&z)) {
            Ok(k) => return Some(k),
            Err(k) => k,
        };
        let below = k.checked_sub(1);
        let nearest = match (below, (k < self.z.len()).then_some(k)) {
            (Some(b), Some(a)) => {
                if z - self.z[b] <= self.z[a] - z {
                    b
                } else {
                    a
                }
            }
            (Some(b), None) => b,
            (None, Some(a)) => a,
            (None, None) => return None,
        };
        let tolerance = self.half_gap(nearest).max(1e-3);
        ((z - self.z[nearest]).abs() <= tolerance).then_some(nearest)
    }

    /// Half the distance from slice `k` to its nearest neighbour (0 for a single slice).
    fn half_gap(&self, k: usize) -> f64 {
        let below = k.checked_sub(1).map(|b| self.z[k] - self.z[b]);
        let above = self.z.get(k + 1).map(|a| a - self.z[k]);
        match (below, above) {
            (Some(b), Some(a)) => b.min(a) / 2.0,
            (Some(g), None) | (None, Some(g)) => g / 2.0,
            (None, None) => 0.0,
        }
    }

    /// The thickness of slice `k`'s slab: half-way to each neighbour (at an end, the
    /// distance to the one neighbour; for a single slice, the larger pixel spacing).
    pub fn thickness(&self, k: usize) -> f64 {
        let below = k.checked_sub(1).map(|b| self.z[k] - self.z[b]);
        let above = self.z.get(k + 1).map(|a| a - self.z[k]);
        match (below, above) {
            (Some(b), Some(a)) => (a + b) / 2.0,
            (Some(g), None) | (None, Some(g)) => g,
            (None, None) => self.dx.max(self.dy),
        }
    }
}

/// A box of voxels of a grid: slices `k0..k0+nk`, rows `i0..i0+ni`, columns `j0..j0+nj`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub k0: usize,
    pub i0: usize,
    pub j0: usize,
    pub nk: usize,
    pub ni: usize,
    pub nj: usize,
}

impl Region {
    pub fn len(&self) -> usize {
        self.nk * self.ni * self.nj
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The smallest region holding both.
    pub fn union(&self, o: &Region) -> Region {
        let (k0, i0, j0) = (self.k0.min(o.k0), self.i0.min(o.i0), self.j0.min(o.j0));
        let k1 = (self.k0 + self.nk).max(o.k0 + o.nk);
        let i1 = (self.i0 + self.ni).max(o.i0 + o.ni);
        let j1 = (self.j0 + self.nj).max(o.j0 + o.nj);
        Region {
            k0,
            i0,
            j0,
            nk: k1 - k0,
            ni: i1 - i0,
            nj: j1 - j0,
        }
    }
}

/// One closed planar contour: its plane and its vertices (x, y), mm.
#[derive(Debug, Clone, PartialEq)]
pub struct Polygon {
    pub z: f64,
    pub xy: Vec<(f64, f64)>,
}

/// An ROI's contours placed on a grid's slices.
#[derive(Debug, Clone)]
pub struct Placed<'a> {
    /// (slice, contours on it), by slice.
    pub slices: Vec<(usize, Vec<&'a Polygon>)>,
    /// The voxels the contours can touch (None: no contour on the grid).
    pub region: Option<Region>,
}

/// Place an ROI's contours on the grid's slices. `Err(n)`: `n` planes are off the grid.
pub fn place<'a>(grid: &Grid, contours: &'a [Polygon]) -> Result<Placed<'a>, usize> {
    let mut by_slice: std::collections::BTreeMap<usize, Vec<&Polygon>> = Default::default();
    let mut off = 0;
    for c in contours {
        match grid.slice_of(c.z) {
            Some(k) => by_slice.entry(k).or_default().push(c),
            None => off += 1,
        }
    }
    if off > 0 {
        return Err(off);
    }
    let mut region: Option<Region> = None;
    for (&k, cs) in &by_slice {
        let (mut xl, mut xh, mut yl, mut yh) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for p in cs.iter().flat_map(|c| &c.xy) {
            xl = xl.min(p.0);
            xh = xh.max(p.0);
            yl = yl.min(p.1);
            yh = yh.max(p.1);
        }
        let clamp = |v: f64, n: usize| v.clamp(0.0, n as f64 - 1.0) as usize;
        let j0 = clamp(((xl - grid.x0) / grid.dx).floor(), grid.cols);
        let j1 = clamp(((xh - grid.x0) / grid.dx).ceil(), grid.cols);
        let i0 = clamp(((yl - grid.y0) / grid.dy).floor(), grid.rows);
        let i1 = clamp(((yh - grid.y0) / grid.dy).ceil(), grid.rows);
        let r = Region {
            k0: k,
            i0,
            j0,
            nk: 1,
            ni: i1 - i0 + 1,
            nj: j1 - j0 + 1,
        };
        region = Some(region.map_or(r, |g| g.union(&r)));
    }
    Ok(Placed {
        slices: by_slice.into_iter().collect(),
        region,
    })
}

/// Rows `i0..i0+ni` and columns `j0..j0+nj` of a grid's plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub i0: usize,
    pub ni: usize,
    pub j0: usize,
    pub nj: usize,
}

/// Marks in `out` (row-major over `w`) the voxels of one plane whose centre is inside
/// `contours` by the even-odd rule (half-open scan lines; see the module documentation).
/// `xs` is scratch space.
pub fn fill_plane(
    grid: &Grid,
    contours: &[&Polygon],
    w: Window,
    out: &mut [bool],
    xs: &mut Vec<f64>,
) {
    for ii in 0..w.ni {
        let y = grid.y0 + (w.i0 + ii) as f64 * grid.dy;
        xs.clear();
        for c in contours {
            let n = c.xy.len();
            for e in 0..n {
                let ((x0, y0), (x1, y1)) = (c.xy[e], c.xy[(e + 1) % n]);
                if (y0 > y) != (y1 > y) {
                    xs.push(x0 + (y - y0) * (x1 - x0) / (y1 - y0));
                }
            }
        }
        xs.sort_by(f64::total_cmp);
        let row = ii * w.nj;
        for pair in xs.chunks_exact(2) {
            // Columns whose centre x satisfies pair[0] <= x < pair[1].
            let lo = ((pair[0] - grid.x0) / grid.dx).ceil() - w.j0 as f64;
            let hi = ((pair[1] - grid.x0) / grid.dx).ceil() - w.j0 as f64;
            let lo = lo.clamp(0.0, w.nj as f64) as usize;
            let hi = hi.clamp(0.0, w.nj as f64) as usize;
            for b in &mut out[row + lo..row + hi] {
                // Even-odd: a voxel covered twice (overlapping, not nested) is out.
                *b = !*b;
            }
        }
    }
}

/// A mask over a region of a grid (index `(k * ni + i) * nj + j`, relative to the region).
#[derive(Debug, Clone)]
pub struct Mask {
    pub region: Region,
    pub bits: Vec<bool>,
}

impl Mask {
    /// The placed contours rasterised over `region` (which must hold `placed.region`).
    pub fn rasterise(grid: &Grid, placed: &Placed<'_>, region: Region) -> Mask {
        let mut bits = vec![false; region.len()];
        let mut xs: Vec<f64> = Vec::new();
        let plane = region.ni * region.nj;
        for (k, cs) in &placed.slices {
            let Some(kk) = k.checked_sub(region.k0).filter(|kk| *kk < region.nk) else {
                continue;
            };
            let window = Window {
                i0: region.i0,
                ni: region.ni,
                j0: region.j0,
                nj: region.nj,
            };
            fill_plane(
                grid,
                cs,
                window,
                &mut bits[kk * plane..(kk + 1) * plane],
                &mut xs,
            );
        }
        Mask { region, bits }
    }

    fn at(&self, k: usize, i: usize, j: usize) -> bool {
        self.bits[(k * self.region.ni + i) * self.region.nj + j]
    }

    /// Voxels inside.
    pub fn count(&self) -> usize {
        self.bits.iter().filter(|b| **b).count()
    }

    /// The volume inside, mm³ (each voxel its slice's slab).
    pub fn volume_mm3(&self, grid: &Grid) -> f64 {
        let plane = self.region.ni * self.region.nj;
        (0..self.region.nk)
            .map(|kk| {
                let n = self.bits[kk * plane..(kk + 1) * plane]
                    .iter()
                    .filter(|b| **b)
                    .count();
                n as f64 * grid.dx * grid.dy * grid.thickness(self.region.k0 + kk)
            })
            .sum()
    }

    /// The surface voxels (see the module documentation), as a mask of the same region.
    pub fn surface(&self) -> Vec<bool> {
        let r = self.region;
        let mut out = vec![false; r.len()];
        for k in 0..r.nk {
            for i in 0..r.ni {
                for j in 0..r.nj {
                    if !self.at(k, i, j) {
                        continue;
                    }
                    let inside = |dk: isize, di: isize, dj: isize| {
                        let (k, i, j) = (k as isize + dk, i as isize + di, j as isize + dj);
                        k >= 0
                            && i >= 0
                            && j >= 0
                            && (k as usize) < r.nk
                            && (i as usize) < r.ni
                            && (j as usize) < r.nj
                            && self.at(k as usize, i as usize, j as usize)
                    };
                    let interior = inside(-1, 0, 0)
                        && inside(1, 0, 0)
                        && inside(0, -1, 0)
                        && inside(0, 1, 0)
                        && inside(0, 0, -1)
                        && inside(0, 0, 1);
                    out[(k * r.ni + i) * r.nj + j] = !interior;
                }
            }
        }
        out
    }
}

/// One pass of the squared distance transform along a line: `f` holds squared distances at
/// positions `x` (increasing); returns `min_q f[q] + (x[p] - x[q])²` for every `p`. Entries of
/// `f` that are infinite are not features.
fn envelope(f: &[f64], x: &[f64], out: &mut [f64], v: &mut Vec<usize>, zb: &mut Vec<f64>) {
    v.clear();
    zb.clear();
    for q in 0..f.len() {
        if !f[q].is_finite() {
            continue;
        }
        loop {
            match v.last() {
                None => {
                    v.push(q);
                    zb.push(f64::NEG_INFINITY);
                    break;
                }
                Some(&r) => {
                    let s = ((f[q] + x[q] * x[q]) - (f[r] + x[r] * x[r])) / (2.0 * (x[q] - x[r]));
                    if s <= *zb.last().expect("one boundary per parabola") {
                        v.pop();
                        zb.pop();
                    } else {
                        v.push(q);
                        zb.push(s);
                        break;
                    }
                }
            }
        }
    }
    if v.is_empty() {
        out.iter_mut().for_each(|o| *o = f64::INFINITY);
        return;
    }
    let mut m = 0;
    for p in 0..f.len() {
        while m + 1 < v.len() && zb[m + 1] < x[p] {
            m += 1;
        }
        let q = v[m];
        out[p] = f[q] + (x[p] - x[q]) * (x[p] - x[q]);
    }
}

/// The Euclidean distance (mm) from every voxel of `region` to the nearest voxel of `features`
/// (a mask of the same region); infinite when there is none.
pub fn distance_map(grid: &Grid, region: Region, features: &[bool]) -> Vec<f32> {
    let (nk, ni, nj) = (region.nk, region.ni, region.nj);
    let mut d: Vec<f64> = features
        .iter()
        .map(|&f| if f { 0.0 } else { f64::INFINITY })
        .collect();
    let xs: Vec<f64> = (0..nj).map(|j| (region.j0 + j) as f64 * grid.dx).collect();
    let ys: Vec<f64> = (0..ni).map(|i| (region.i0 + i) as f64 * grid.dy).collect();
    let zs: Vec<f64> = (0..nk).map(|k| grid.z[region.k0 + k]).collect();
    let longest = nk.max(ni).max(nj);
    let (mut line, mut out) = (vec![0.0; longest], vec![0.0; longest]);
    let (mut v, mut zb) = (Vec::with_capacity(longest), Vec::with_capacity(longest));
    // Along columns (x), rows (y), slices (z).
    for k in 0..nk {
        for i in 0..ni {
            let row = (k * ni + i) * nj;
            line[..nj].copy_from_slice(&d[row..row + nj]);
            envelope(&line[..nj], &xs, &mut out[..nj], &mut v, &mut zb);
            d[row..row + nj].copy_from_slice(&out[..nj]);
        }
    }
    for k in 0..nk {
        for j in 0..nj {
            for i in 0..ni {
                line[i] = d[(k * ni + i) * nj + j];
            }
            envelope(&line[..ni], &ys, &mut out[..ni], &mut v, &mut zb);
            for i in 0..ni {
                d[(k * ni + i) * nj + j] = out[i];
            }
        }
    }
    for i in 0..ni {
        for j in 0..nj {
            for k in 0..nk {
                line[k] = d[(k * ni + i) * nj + j];
            }
            envelope(&line[..nk], &zs, &mut out[..nk], &mut v, &mut zb);
            for k in 0..nk {
                d[(k * ni + i) * nj + j] = out[k];
            }
        }
    }
    d.into_iter().map(|s| s.sqrt() as f32).collect()
}

/// The value at fraction `q` of sorted `v` with linear interpolation between ranks (numpy's
/// default `percentile`).
pub fn percentile_linear(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = q * (v.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = (lo + 1).min(v.len() - 1);
    v[lo] + (rank - lo as f64) * (v[hi] - v[lo])
}

/// plastimatch's percentile of one direction: the element of 0-based rank
/// `floor(q * n - 1)` (at least 0) of sorted `v`.
pub fn percentile_plastimatch(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let ordinal = (q * v.len() as f64 - 1.0).floor().max(0.0) as usize;
    v[ordinal.min(v.len() - 1)]
}

/// Sorts distances.
pub fn sort(v: &mut [f64]) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(Ordering::Equal));
}

/// The value of 0-based rank `k` of `v` as if sorted (reorders `v`; linear time).
pub fn nth(v: &mut [f64], k: usize) -> f64 {
    let k = k.min(v.len() - 1);
    *v.select_nth_unstable_by(k, |a, b| a.partial_cmp(b).unwrap_or(Ordering::Equal))
        .1
}

/// [`percentile_linear`] without sorting (reorders `v`).
pub fn percentile_linear_unsorted(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = q * (v.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let a = nth(v, lo);
    if lo + 1 >= v.len() {
        return a;
    }
    // The next rank is the smallest value above position lo after the selection.
    let b = v[lo + 1..].iter().copied().fold(f64::INFINITY, f64::min);
    a + (rank - lo as f64) * (b - a)
}

/// [`percentile_plastimatch`] without sorting (reorders `v`).
pub fn percentile_plastimatch_unsorted(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let ordinal = (q * v.len() as f64 - 1.0).floor().max(0.0) as usize;
    nth(v, ordinal)
}
