//! Dose-volume metrics of RT structures under an RT Dose, sampled the way dicompyler-core's
//! `dvhcalc` samples them, so that its figures can be checked against it:
//!
//! - the structure's contour planes are taken one by one; the dose on a plane is the dose
//!   grid's frame at that position, or the linear interpolation between the two frames around
//!   it (a plane beyond the first or last frame is outside the dose grid: it adds nothing and
//!   is counted in `planes_outside_dose`);
//! - the structure's mask on a plane is taken at the dose grid's points (a point is inside
//!   when it is inside the plane's contours by the even-odd rule, which is what dvhcalc's XOR
//!   of its contour masks amounts to);
//! - every point stands for the same volume (dose-grid pixel area times the structure's plane
//!   spacing, the smallest distance between its planes).
//!
//! From the points' doses: `dmean_gy` (their mean), `d95_gy` and `d2_gy` (the largest dose
//! received by at least 95% and 2% of the volume: the points sorted by dose, the one of rank
//! `floor((1 - x) n)`), `v95_pct` (the percentage of the volume receiving at least 95% of the
//! prescription). dvhcalc gives the same points and Dmean; its `statistic("D95")` differs: it
//! bins doses in 1 cGy bins and returns the first bin edge whose cumulative volume is nearest
//! to 95%, without interpolation, so where few points lie near that level (a small structure,
//! the tail of a steep DVH) it can pick the edge just above the next point's dose, and for a
//! uniform dose it gives 0. The rank definition here has neither artefact; `bench/dvh_check.py`
//! measures the differences.

use super::mask::{fill_plane, Grid, Polygon, Window};
use super::{floats, text, us};
use registrar_anonymizer::dicom::dicom_core::value::{PrimitiveValue, Value as DicomValue};
use registrar_anonymizer::dicom::dicom_core::Tag;
use registrar_anonymizer::dicom::dicom_object::InMemDicomObject;

/// The RT Dose attributes (the geometry ones are the index's own, [`super::tag`]).
mod tag {
    use super::Tag;
    pub use crate::imaging::tag::{
        COLUMNS, IMAGE_ORIENTATION_PATIENT, IMAGE_POSITION_PATIENT, PIXEL_SPACING, ROWS,
    };
    pub const NUMBER_OF_FRAMES: Tag = Tag(0x0028, 0x0008);
    pub const BITS_ALLOCATED: Tag = Tag(0x0028, 0x0100);
    pub const PIXEL_REPRESENTATION: Tag = Tag(0x0028, 0x0103);
    pub const DOSE_UNITS: Tag = Tag(0x3004, 0x0002);
    pub const GRID_FRAME_OFFSET_VECTOR: Tag = Tag(0x3004, 0x000C);
    pub const DOSE_GRID_SCALING: Tag = Tag(0x3004, 0x000E);
    pub const PIXEL_DATA: Tag = Tag(0x7FE0, 0x0010);
}

/// An RT Dose grid in Gy.
#[derive(Debug, Clone)]
pub struct DoseGrid {
    /// The in-plane geometry and the frames' positions.
    pub grid: Grid,
    /// Doses, frame by frame, row by row (Gy).
    pub gy: Vec<f32>,
}

/// Why an RT Dose gives no grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DoseProblem {
    NotGray,
    NotAxial,
    Geometry,
    PixelData,
}

impl DoseProblem {
    pub fn reason(self) -> &'static str {
        match self {
            DoseProblem::NotGray => "the RT Dose is not in Gy (Dose Units other than GY)",
            DoseProblem::NotAxial => "the RT Dose grid is not axial",
            DoseProblem::Geometry => {
                "the RT Dose grid's geometry is incomplete (position, spacing, frames, offsets or scaling)"
            }
            DoseProblem::PixelData => {
                "the RT Dose pixel data does not match its rows, columns, frames and bits"
            }
        }
    }
}

impl DoseGrid {
    /// The dose grid of an RT Dose object (read whole, with its byte order).
    pub fn read(o: &InMemDicomObject, big_endian: bool) -> Result<DoseGrid, DoseProblem> {
        if !text(o, tag::DOSE_UNITS).is_some_and(|u| u.eq_ignore_ascii_case("GY")) {
            return Err(DoseProblem::NotGray);
        }
        let geometry = DoseProblem::Geometry;
        let p = floats(o, tag::IMAGE_POSITION_PATIENT)
            .filter(|v| v.len() == 3)
            .ok_or(geometry)?;
        let d = floats(o, tag::IMAGE_ORIENTATION_PATIENT)
            .filter(|v| v.len() == 6)
            .ok_or(geometry)?;
        if d.iter()
            .zip([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
            .any(|(a, b)| (a - b).abs() > 1e-4)
        {
            return Err(DoseProblem::NotAxial);
        }
        let sp = floats(o, tag::PIXEL_SPACING)
            .filter(|v| v.len() == 2)
            .ok_or(geometry)?;
        let rows = us(o, tag::ROWS, big_endian).ok_or(geometry)? as usize;
        let cols = us(o, tag::COLUMNS, big_endian).ok_or(geometry)? as usize;
        let frames = floats(o, tag::NUMBER_OF_FRAMES)
            .and_then(|v| v.first().copied())
            .unwrap_or(1.0) as usize;
        let offsets = floats(o, tag::GRID_FRAME_OFFSET_VECTOR).ok_or(geometry)?;
        let scaling = floats(o, tag::DOSE_GRID_SCALING)
            .and_then(|v| v.first().copied())
            .ok_or(geometry)?;
        if offsets.len() != frames || rows == 0 || cols == 0 || sp[0] <= 0.0 || sp[1] <= 0.0 {
            return Err(geometry);
        }
        // Offsets relative to the first frame when the first is 0, else positions (PS3.3
        // C.8.8.3.2).
        let z: Vec<f64> = if offsets[0] == 0.0 {
            offsets.iter().map(|o| p[2] + o).collect()
        } else {
            offsets.clone()
        };
        let increasing = z.windows(2).all(|w| w[1] > w[0]);
        let decreasing = z.windows(2).all(|w| w[1] < w[0]);
        if !(increasing || decreasing) {
            return Err(geometry);
        }
        let bits = us(o, tag::BITS_ALLOCATED, big_endian).ok_or(geometry)?;
        let signed = us(o, tag::PIXEL_REPRESENTATION, big_endian) == Some(1);
        let bytes: &[u8] = match o
            .element(tag::PIXEL_DATA)
            .map_err(|_| DoseProblem::PixelData)?
            .value()
        {
            DicomValue::Primitive(PrimitiveValue::U8(b)) => b,
            _ => return Err(DoseProblem::PixelData),
        };
        let n = rows * cols * frames;
        let width = match bits {
            16 => 2,
            32 => 4,
            _ => return Err(DoseProblem::PixelData),
        };
        if bytes.len() < n * width {
            return Err(DoseProblem::PixelData);
        }
        let mut gy: Vec<f32> = bytes[..n * width]
            .chunks_exact(width)
            .map(|c| {
                let v = match (width, big_endian, signed) {
                    (2, false, false) => f64::from(u16::from_le_bytes([c[0], c[1]])),
                    (2, true, false) => f64::from(u16::from_be_bytes([c[0], c[1]])),
                    (2, false, true) => f64::from(i16::from_le_bytes([c[0], c[1]])),
                    (2, true, true) => f64::from(i16::from_be_bytes([c[0], c[1]])),
                    (_, false, false) => f64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                    (_, true, false) => f64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]])),
                    (_, false, true) => f64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                    (_, true, true) => f64::from(i32::from_be_bytes([c[0], c[1], c[2], c[3]])),
                };
                (v * scaling) as f32
            })
            .collect();
        let mut z = z;
        if decreasing {
            // Frames by increasing position.
            z.reverse();
            let plane = rows * cols;
            let mut flipped = Vec::with_capacity(gy.len());
            for k in (0..frames).rev() {
                flipped.extend_from_slice(&gy[k * plane..(k + 1) * plane]);
            }
            gy = flipped;
        }
        Ok(DoseGrid {
            grid: Grid {
                x0: p[0],
                y0: p[1],
                dx: sp[1],
                dy: sp[0],
                cols,
                rows,
                z,
            },
            gy,
        })
    }

    /// The dose plane at `z` (a frame, or the linear interpolation between the two around
    /// it); None beyond the first or last frame.
    fn plane_at(&self, z: f64) -> Option<Vec<f32>> {
        let g = &self.grid;
        let plane = g.rows * g.cols;
        let frame = |k: usize| &self.gy[k * plane..(k + 1) * plane];
        let (first, last) = (*g.z.first()?, *g.z.last()?);
        if z < first - 1e-3 || z > last + 1e-3 {
            return None;
        }
        if let Some(k) = g.z.iter().position(|f| (f - z).abs() <= 1e-3) {
            return Some(frame(k).to_vec());
        }
        let k = g.z.iter().position(|f| *f > z)?.checked_sub(1)?;
        let t = ((z - g.z[k]) / (g.z[k + 1] - g.z[k])) as f32;
        Some(
            frame(k)
                .iter()
                .zip(frame(k + 1))
                .map(|(a, b)| a + t * (b - a))
                .collect(),
        )
    }
}

/// The dose-volume metrics of one structure.
#[derive(Debug, Clone, PartialEq)]
pub struct Dvh {
    pub dmean_gy: f64,
    pub d95_gy: f64,
    pub d2_gy: f64,
    /// None without a prescription.
    pub v95_pct: Option<f64>,
    /// The volume inside the dose grid, cc.
    pub volume_cc: f64,
    pub planes_outside_dose: usize,
}

/// The dose at the structure's points, and the volume a point stands for (mm³); planes outside
/// the dose grid counted.
fn samples(dose: &DoseGrid, contours: &[Polygon]) -> (Vec<f32>, f64, usize) {
    let mut planes: Vec<(f64, Vec<&Polygon>)> = Vec::new();
    let mut sorted: Vec<&Polygon> = contours.iter().collect();
    sorted.sort_by(|a, b| a.z.total_cmp(&b.z));
    for c in sorted {
        match planes.last_mut() {
            Some((z, cs)) if (c.z - *z).abs() < 1e-3 => cs.push(c),
            _ => planes.push((c.z, vec![c])),
        }
    }
    let thickness = planes
        .windows(2)
        .map(|w| w[1].0 - w[0].0)
        .fold(f64::INFINITY, f64::min);
    let thickness = if thickness.is_finite() {
        thickness
    } else {
        // One plane: the dose grid's frame distance, as dvhcalc falls back to.
        dose.grid
            .z
            .windows(2)
            .map(|w| w[1] - w[0])
            .fold(f64::INFINITY, f64::min)
            .min(1e6)
    };
    let g = &dose.grid;
    let w = Window {
        i0: 0,
        ni: g.rows,
        j0: 0,
        nj: g.cols,
    };
    let (mut out, mut outside) = (Vec::new(), 0);
    let (mut mask, mut xs) = (vec![false; g.rows * g.cols], Vec::new());
    for (z, cs) in &planes {
        let Some(d) = dose.plane_at(*z) else {
            outside += 1;
            continue;
        };
        mask.iter_mut().for_each(|m| *m = false);
        fill_plane(g, cs, w, &mut mask, &mut xs);
        out.extend(mask.iter().zip(&d).filter(|(m, _)| **m).map(|(_, v)| *v));
    }
    (out, g.dx * g.dy * thickness, outside)
}

/// The dose-volume metrics of a structure (its closed planar contours); None when no point of
/// the dose grid is inside it.
pub fn dvh(dose: &DoseGrid, contours: &[Polygon], prescription_gy: Option<f64>) -> Option<Dvh> {
    let (mut s, voxel, outside) = samples(dose, contours);
    if s.is_empty() {
        return None;
    }
    let n = s.len();
    let dmean_gy = s.iter().map(|v| f64::from(*v)).sum::<f64>() / n as f64;
    let v95_pct = prescription_gy.filter(|p| *p > 0.0).map(|p| {
        let cut = (0.95 * p) as f32;
        100.0 * s.iter().filter(|v| **v >= cut).count() as f64 / n as f64
    });
    // The doses of rank floor((1 - x) n), without sorting.
    let mut at = |x: f64| {
        let k = (((1.0 - x) * n as f64).floor() as usize).min(n - 1);
        f64::from(*s.select_nth_unstable_by(k, f32::total_cmp).1)
    };
    let (d95_gy, d2_gy) = (at(0.95), at(0.02));
    Some(Dvh {
        dmean_gy,
        d95_gy,
        d2_gy,
        v95_pct,
        volume_cc: n as f64 * voxel / 1000.0,
        planes_outside_dose: outside,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square(c: (f64, f64), side: f64, z: f64) -> Polygon {
        let h = side / 2.0;
        Polygon {
            z,
            xy: vec![
                (c.0 - h, c.1 - h),
                (c.0 + h, c.1 - h),
                (c.0 + h, c.1 + h),
                (c.0 - h, c.1 + h),
            ],
        }
    }

    /// A dose grid of `n` x `n` points 2 mm apart on frames 3 mm apart, dose = f(x, y, z).
    fn grid(n: usize, frames: usize, f: impl Fn(f64, f64, f64) -> f64) -> DoseGrid {
        let g = Grid {
            x0: -(n as f64 - 1.0),
            y0: -(n as f64 - 1.0),
            dx: 2.0,
            dy: 2.0,
            cols: n,
            rows: n,
            z: (0..frames).map(|k| k as f64 * 3.0).collect(),
        };
        let mut gy = Vec::new();
        for z in &g.z {
            for i in 0..n {
                for j in 0..n {
                    gy.push(f(g.x0 + j as f64 * 2.0, g.y0 + i as f64 * 2.0, *z) as f32);
                }
            }
        }
        DoseGrid { grid: g, gy }
    }

    #[test]
    fn a_linear_dose_across_a_cube_matches_the_reference_dvh() {
        // Dose 40 + 0.2 x Gy over a 40 mm cube centred on x = 0: Dmean 40 Gy, doses uniform
        // in [36, 44] along x, so D95 = 36.4, D2 = 43.84 (one point column per 2 mm, hence
        // to within a column: 0.4 Gy) and V95 (of 40 Gy: >= 38 Gy) = 75%.
        let d = grid(41, 21, |x, _, _| 40.0 + 0.2 * x);
        // Planes on frames and between them (interpolated).
        let cube: Vec<Polygon> = (0..14)
            .map(|k| square((0.0, 0.0), 40.0, 10.0 + k as f64 * 3.0 + 1.5))
            .collect();
        let r = dvh(&d, &cube, Some(40.0)).unwrap();
        eprintln!("{r:?}");
        assert!((r.dmean_gy - 40.0).abs() < 0.4, "{r:?}");
        assert!((r.d95_gy - 36.4).abs() <= 0.4, "{r:?}");
        assert!((r.d2_gy - 43.84).abs() <= 0.4, "{r:?}");
        assert!((r.v95_pct.unwrap() - 75.0).abs() <= 2.5, "{r:?}");
        assert_eq!(r.planes_outside_dose, 0);
        // 20 x 20 points of 4 mm² on 14 planes 3 mm apart.
        assert!(
            (r.volume_cc - 20.0 * 20.0 * 4.0 * 3.0 * 14.0 / 1000.0).abs() < 1e-9,
            "{r:?}"
        );
    }

    #[test]
    fn planes_between_frames_are_interpolated_and_planes_beyond_them_are_outside() {
        // Dose = z Gy: a plane at z = 4.5 (between frames 3 and 6) reads 4.5 Gy everywhere.
        let d = grid(11, 5, |_, _, z| z);
        let r = dvh(&d, &[square((0.0, 0.0), 8.0, 4.5)], None).unwrap();
        assert!(
            (r.dmean_gy - 4.5).abs() < 1e-5 && (r.d95_gy - 4.5).abs() < 1e-5,
            "{r:?}"
        );
        assert_eq!(r.v95_pct, None);
        let beyond = [square((0.0, 0.0), 8.0, 4.5), square((0.0, 0.0), 8.0, 30.0)];
        let r = dvh(&d, &beyond, None).unwrap();
        assert_eq!(r.planes_outside_dose, 1);
        // A hole is not dosed: a ring's points are only those between the squares.
        let ring = [square((0.0, 0.0), 16.0, 6.0), square((0.0, 0.0), 8.0, 6.0)];
        let full = dvh(&d, &ring[..1], None).unwrap();
        let r = dvh(&d, &ring, None).unwrap();
        assert!(r.volume_cc < full.volume_cc * 0.8, "{r:?} {full:?}");
    }
}
