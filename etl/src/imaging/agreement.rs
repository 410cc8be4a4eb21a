//! Inter-observer agreement of one structure drawn by several observers on one CT grid
//! (masks, surfaces and distances as [`super::mask`] defines them).
//!
//! Per pair of observers `A`, `B` (volumes from the masks, each voxel its slice's slab):
//! - `dice` = 2 |A ∩ B| / (|A| + |B|); `jaccard` = |A ∩ B| / |A ∪ B|.
//! - `hd_max_mm`: the Hausdorff distance, the largest directed surface distance either way.
//! - `hd95_mm`: the 95th percentile of the directed surface distances of both directions
//!   pooled (one list of |∂A| + |∂B| distances), with linear interpolation between ranks:
//!   MedPy's `hd95` (numpy's default percentile).
//! - `hd95_plastimatch_mm`: plastimatch's "Percent (0.95) Hausdorff distance (boundary)": the
//!   mean of the two directed 95th percentiles, each the distance of 0-based rank
//!   `floor(0.95 n - 1)`. plastimatch measures a boundary voxel inside the other mask by its
//!   distance to the nearest voxel outside it; here every distance is to the other surface's
//!   voxel centres, which can differ from plastimatch's by up to a voxel.
//! - `msd_mm`: the mean surface distance, the mean of the pooled list (each surface voxel of
//!   both masks counts once; tools that average the two directed means differ when the
//!   surfaces have different sizes).
//!
//! Per structure (every observer's mask): `volume_cv`, the sample coefficient of variation of
//! the observers' volumes (standard deviation with n - 1, over the mean), and
//! `consensus_dice_mean`, the mean over the observers of the Dice between their mask and the
//! majority-vote consensus (the voxels inside the masks of more than half the observers; for
//! two observers, their intersection).

use super::mask::{self, distance_map, Grid, Mask, Polygon, Region};

/// The agreement of two observers' masks.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Pair {
    /// Positions of the two observers in the group.
    pub a: usize,
    pub b: usize,
    pub dice: f64,
    pub jaccard: f64,
    pub hd_max_mm: f64,
    pub hd95_mm: f64,
    pub hd95_plastimatch_mm: f64,
    pub msd_mm: f64,
    pub volume_a_cc: f64,
    pub volume_b_cc: f64,
}

/// The agreement of every pair of a structure's observers, and of the group.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub pairs: Vec<Pair>,
    pub observers: usize,
    pub volume_cv: f64,
    pub consensus_dice_mean: f64,
}

/// Why a structure's agreement is not measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmeasured {
    /// A contour plane of an observer lies between the CT slices or beyond them.
    OffGrid,
    /// An observer's contours fill no voxel of the grid.
    Empty,
}

impl Unmeasured {
    pub fn reason(self) -> &'static str {
        match self {
            Unmeasured::OffGrid => {
                "a contour plane lies further than half a slice from every slice of the referenced CT"
            }
            Unmeasured::Empty => "an observer's contours fill no voxel of the referenced CT grid",
        }
    }
}

fn grow(r: Region, grid: &Grid) -> Region {
    let (k0, i0, j0) = (
        r.k0.saturating_sub(1),
        r.i0.saturating_sub(1),
        r.j0.saturating_sub(1),
    );
    Region {
        k0,
        i0,
        j0,
        nk: (r.k0 + r.nk + 1).min(grid.z.len()) - k0,
        ni: (r.i0 + r.ni + 1).min(grid.rows) - i0,
        nj: (r.j0 + r.nj + 1).min(grid.cols) - j0,
    }
}

/// Volume (mm³) of the voxels where `f(index)` holds.
fn volume_where(grid: &Grid, r: Region, f: impl Fn(usize) -> bool) -> f64 {
    let plane = r.ni * r.nj;
    (0..r.nk)
        .map(|kk| {
            let n = (kk * plane..(kk + 1) * plane).filter(|&x| f(x)).count();
            n as f64 * grid.dx * grid.dy * grid.thickness(r.k0 + kk)
        })
        .sum()
}

/// The agreement of the observers' drawings of one structure (two or more; each a list of
/// closed planar contours).
pub fn measure(grid: &Grid, drawings: &[&[Polygon]]) -> Result<Group, Unmeasured> {
    let mut placed = Vec::with_capacity(drawings.len());
    for d in drawings {
        placed.push(mask::place(grid, d).map_err(|_| Unmeasured::OffGrid)?);
    }
    let mut region: Option<Region> = None;
    for p in &placed {
        let r = p.region.ok_or(Unmeasured::Empty)?;
        region = Some(region.map_or(r, |g| g.union(&r)));
    }
    let region = grow(region.ok_or(Unmeasured::Empty)?, grid);
    let masks: Vec<Mask> = placed
        .iter()
        .map(|p| Mask::rasterise(grid, p, region))
        .collect();
    if masks.iter().any(|m| m.count() == 0) {
        return Err(Unmeasured::Empty);
    }
    let volumes: Vec<f64> = masks.iter().map(|m| m.volume_mm3(grid)).collect();
    let surfaces: Vec<Vec<bool>> = masks.iter().map(Mask::surface).collect();
    let maps: Vec<Vec<f32>> = surfaces
        .iter()
        .map(|s| distance_map(grid, region, s))
        .collect();
    let directed = |from: usize, to: usize| -> Vec<f64> {
        surfaces[from]
            .iter()
            .zip(&maps[to])
            .filter(|(s, _)| **s)
            .map(|(_, d)| f64::from(*d))
            .collect()
    };
    let mut pairs = Vec::new();
    for a in 0..masks.len() {
        for b in a + 1..masks.len() {
            let (ma, mb) = (&masks[a].bits, &masks[b].bits);
            let inter = volume_where(grid, region, |x| ma[x] && mb[x]);
            let union = volumes[a] + volumes[b] - inter;
            let mut ab = directed(a, b);
            let mut ba = directed(b, a);
            let mut pooled: Vec<f64> = ab.iter().chain(&ba).copied().collect();
            let hd_max_mm = pooled.iter().copied().fold(0.0, f64::max);
            let msd_mm = pooled.iter().sum::<f64>() / pooled.len() as f64;
            pairs.push(Pair {
                a,
                b,
                dice: 2.0 * inter / (volumes[a] + volumes[b]),
                jaccard: inter / union,
                hd_max_mm,
                hd95_mm: mask::percentile_linear_unsorted(&mut pooled, 0.95),
                hd95_plastimatch_mm: 0.5
                    * (mask::percentile_plastimatch_unsorted(&mut ab, 0.95)
                        + mask::percentile_plastimatch_unsorted(&mut ba, 0.95)),
                msd_mm,
                volume_a_cc: volumes[a] / 1000.0,
                volume_b_cc: volumes[b] / 1000.0,
            });
        }
    }
    let n = masks.len();
    let mean = volumes.iter().sum::<f64>() / n as f64;
    let var = volumes.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n as f64 - 1.0);
    let votes: Vec<u8> = (0..region.len())
        .map(|x| masks.iter().filter(|m| m.bits[x]).count() as u8)
        .collect();
    let majority = |x: usize| usize::from(votes[x]) * 2 > n;
    let consensus = volume_where(grid, region, majority);
    let consensus_dice_mean = masks
        .iter()
        .zip(&volumes)
        .map(|(m, v)| {
            let inter = volume_where(grid, region, |x| m.bits[x] && majority(x));
            if v + consensus > 0.0 {
                2.0 * inter / (v + consensus)
            } else {
                0.0
            }
        })
        .sum::<f64>()
        / n as f64;
    Ok(Group {
        pairs,
        observers: n,
        volume_cv: var.sqrt() / mean,
        consensus_dice_mean,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A circle of `r` mm around (`cx`, `cy`) on plane `z`, `n` vertices.
    fn circle(cx: f64, cy: f64, r: f64, z: f64, n: usize) -> Polygon {
        Polygon {
            z,
            xy: (0..n)
                .map(|i| {
                    let a = std::f64::consts::TAU * i as f64 / n as f64;
                    (cx + r * a.cos(), cy + r * a.sin())
                })
                .collect(),
        }
    }

    fn grid(d: f64, dz: f64, half: f64) -> Grid {
        let n = (2.0 * half / d).round() as usize + 1;
        let nz = (2.0 * half / dz).round() as usize + 1;
        Grid {
            x0: -half,
            y0: -half,
            dx: d,
            dy: d,
            cols: n,
            rows: n,
            z: (0..nz).map(|k| -half + k as f64 * dz).collect(),
        }
    }

    /// A sphere of radius `r` centred on (`cx`, 0, 0) as contours on the grid's slices.
    fn sphere(g: &Grid, cx: f64, r: f64) -> Vec<Polygon> {
        g.z.iter()
            .filter(|z| z.abs() < r)
            .map(|&z| circle(cx, 0.0, (r * r - z * z).sqrt(), z, 256))
            .collect()
    }

    /// A cylinder of radius `r` along z from `z0` to `z1`.
    fn cylinder(g: &Grid, r: f64, z0: f64, z1: f64) -> Vec<Polygon> {
        g.z.iter()
            .filter(|z| **z >= z0 - 1e-9 && **z <= z1 + 1e-9)
            .map(|&z| circle(0.0, 0.0, r, z, 256))
            .collect()
    }

    /// Brute-force reference: masks by testing every voxel centre against every contour of
    /// its slice (ray casting), surfaces by neighbours, distances by comparing every pair of
    /// surface voxels.
    fn reference(g: &Grid, a: &[Polygon], b: &[Polygon]) -> (f64, f64, f64, f64) {
        let inside = |p: (f64, f64), poly: &[(f64, f64)]| {
            let mut c = false;
            let mut j = poly.len() - 1;
            for i in 0..poly.len() {
                let ((xi, yi), (xj, yj)) = (poly[i], poly[j]);
                if (yi > p.1) != (yj > p.1) && p.0 < (xj - xi) * (p.1 - yi) / (yj - yi) + xi {
                    c = !c;
                }
                j = i;
            }
            c
        };
        let vox = |cs: &[Polygon]| -> std::collections::HashSet<(usize, usize, usize)> {
            let mut s = std::collections::HashSet::new();
            for (k, z) in g.z.iter().enumerate() {
                let on: Vec<&Polygon> = cs.iter().filter(|c| (c.z - z).abs() < 1e-6).collect();
                for i in 0..g.rows {
                    for j in 0..g.cols {
                        let p = (g.x0 + j as f64 * g.dx, g.y0 + i as f64 * g.dy);
                        if on.iter().filter(|c| inside(p, &c.xy)).count() % 2 == 1 {
                            s.insert((k, i, j));
                        }
                    }
                }
            }
            s
        };
        let (va, vb) = (vox(a), vox(b));
        let surf = |v: &std::collections::HashSet<(usize, usize, usize)>| -> Vec<[f64; 3]> {
            v.iter()
                .filter(|&&(k, i, j)| {
                    let n = [
                        (k.wrapping_sub(1), i, j),
                        (k + 1, i, j),
                        (k, i.wrapping_sub(1), j),
                        (k, i + 1, j),
                        (k, i, j.wrapping_sub(1)),
                        (k, i, j + 1),
                    ];
                    n.iter().any(|x| !v.contains(x))
                })
                .map(|&(k, i, j)| [j as f64 * g.dx, i as f64 * g.dy, g.z[k]])
                .collect()
        };
        let (sa, sb) = (surf(&va), surf(&vb));
        let dir = |from: &[[f64; 3]], to: &[[f64; 3]]| -> Vec<f64> {
            from.iter()
                .map(|p| {
                    to.iter()
                        .map(|q| (0..3).map(|c| (p[c] - q[c]).powi(2)).sum::<f64>())
                        .fold(f64::INFINITY, f64::min)
                        .sqrt()
                })
                .collect()
        };
        let mut pooled: Vec<f64> = dir(&sa, &sb).into_iter().chain(dir(&sb, &sa)).collect();
        mask::sort(&mut pooled);
        let inter = va.intersection(&vb).count() as f64;
        let dice = 2.0 * inter / (va.len() + vb.len()) as f64;
        let msd = pooled.iter().sum::<f64>() / pooled.len() as f64;
        (
            dice,
            mask::percentile_linear(&pooled, 0.95),
            msd,
            *pooled.last().unwrap(),
        )
    }

    #[test]
    fn concentric_spheres_match_the_analytic_answer_and_a_brute_force_reference() {
        // Radii 20 and 23 mm on a 1 x 1 x 1.5 mm grid: Dice 2 r³ / (r³ + R³), every surface
        // distance about 3 mm.
        let g = grid(1.0, 1.5, 30.0);
        let (a, b) = (sphere(&g, 0.0, 20.0), sphere(&g, 0.0, 23.0));
        let m = measure(&g, &[&a, &b]).unwrap();
        let p = &m.pairs[0];
        let analytic = 2.0 * 20f64.powi(3) / (20f64.powi(3) + 23f64.powi(3));
        eprintln!("spheres: {p:?}, analytic Dice {analytic:.4}");
        assert!((p.dice - analytic).abs() < 0.01, "{} vs {analytic}", p.dice);
        let diag = (1.0f64 + 1.0 + 1.5 * 1.5).sqrt();
        assert!((p.hd95_mm - 3.0).abs() <= diag, "{}", p.hd95_mm);
        let (dice, hd95, msd, hd) = reference(&g, &a, &b);
        assert!((p.dice - dice).abs() < 1e-9, "{} vs {dice}", p.dice);
        assert!((p.hd95_mm - hd95).abs() < 1e-6, "{} vs {hd95}", p.hd95_mm);
        assert!((p.msd_mm - msd).abs() < 1e-6, "{} vs {msd}", p.msd_mm);
        assert!((p.hd_max_mm - hd).abs() < 1e-6, "{} vs {hd}", p.hd_max_mm);
        assert!(
            (p.volume_a_cc - 4.0 / 3.0 * std::f64::consts::PI * 8.0).abs() / 33.51 < 0.02,
            "{}",
            p.volume_a_cc
        );
        // Two observers: the consensus is the intersection, the smaller sphere.
        assert!((m.consensus_dice_mean - (1.0 + p.dice) / 2.0).abs() < 1e-9);
    }

    #[test]
    fn shifted_spheres_and_cylinders_match_the_reference() {
        let g = grid(1.5, 2.0, 36.0);
        // Spheres of 15 mm, centres 6 mm apart along x: Dice of two unit balls d apart is
        // (1 - 3d/4r + d³/16r³).
        let (a, b) = (sphere(&g, -3.0, 15.0), sphere(&g, 3.0, 15.0));
        let p = measure(&g, &[&a, &b]).unwrap().pairs[0].clone();
        let (d, r) = (6.0_f64, 15.0_f64);
        let analytic = 1.0 - 3.0 * d / (4.0 * r) + d.powi(3) / (16.0 * r.powi(3));
        assert!(
            (p.dice - analytic).abs() < 0.015,
            "{} vs {analytic}",
            p.dice
        );
        let (dice, hd95, msd, hd) = reference(&g, &a, &b);
        assert!((p.dice - dice).abs() < 1e-9);
        assert!((p.hd95_mm - hd95).abs() < 1e-6 && (p.msd_mm - msd).abs() < 1e-6);
        assert!((p.hd_max_mm - hd).abs() < 1e-6);
        // The Hausdorff distance of two equal balls is their centres' distance.
        assert!((p.hd_max_mm - 6.0).abs() <= 1.5f64.hypot(1.5).hypot(2.0));
        // Concentric cylinders of 20 and 25 mm, 40 mm long: Dice 2 r² / (r² + R²).
        let (a, b) = (
            cylinder(&g, 20.0, -20.0, 20.0),
            cylinder(&g, 25.0, -20.0, 20.0),
        );
        let m = measure(&g, &[&a, &b]).unwrap();
        let p = &m.pairs[0];
        let analytic = 2.0 * 400.0 / (400.0 + 625.0);
        assert!((p.dice - analytic).abs() < 0.01, "{} vs {analytic}", p.dice);
        let (dice, hd95, msd, _) = reference(&g, &a, &b);
        assert!((p.dice - dice).abs() < 1e-9);
        assert!((p.hd95_mm - hd95).abs() < 1e-6 && (p.msd_mm - msd).abs() < 1e-6);
        assert!((m.volume_cv - (625.0 - 400.0) / (625.0 + 400.0) * 2f64.sqrt()).abs() < 0.02);
    }

    #[test]
    fn holes_are_subtracted_and_identical_drawings_agree() {
        let g = grid(1.0, 2.0, 20.0);
        let ring: Vec<Polygon> =
            g.z.iter()
                .filter(|z| z.abs() <= 6.0)
                .flat_map(|&z| {
                    [
                        circle(0.0, 0.0, 15.0, z, 128),
                        circle(0.0, 0.0, 8.0, z, 128),
                    ]
                })
                .collect();
        let m = measure(&g, &[&ring, &ring, &ring]).unwrap();
        assert_eq!(m.pairs.len(), 3);
        for p in &m.pairs {
            assert_eq!((p.dice, p.hd_max_mm, p.msd_mm), (1.0, 0.0, 0.0));
        }
        let area = std::f64::consts::PI * (225.0 - 64.0);
        let expected = area * 7.0 * 2.0 / 1000.0;
        assert!((m.pairs[0].volume_a_cc - expected).abs() / expected < 0.03);
        assert!(m.volume_cv.abs() < 1e-12 && (m.consensus_dice_mean - 1.0).abs() < 1e-12);
        // A plane beyond the last slice by more than half a slice is off the grid (half-way
        // between two slices is still on the lower one).
        let off = [circle(0.0, 0.0, 5.0, 21.5, 16)];
        assert_eq!(g.slice_of(1.0), Some(10));
        assert_eq!(
            measure(&g, &[&ring, &off]).unwrap_err(),
            Unmeasured::OffGrid
        );
    }

    #[test]
    fn percentiles() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert!((mask::percentile_linear(&v, 0.95) - 19.05).abs() < 1e-12);
        // floor(0.95 * 20 - 1) = 18: the 19th value.
        assert_eq!(mask::percentile_plastimatch(&v, 0.95), 19.0);
        assert_eq!(mask::percentile_plastimatch(&[4.0], 0.95), 4.0);
    }
}
