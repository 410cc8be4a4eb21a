//! The synthetic anatomy of one patient: a thorax phantom made of ellipses (body, lungs,
//! heart, spine, breasts) in patient coordinates (LPS, millimetres), the structures that are
//! contoured on it, and the geometry of the CT that images it.
//!
//! Only `+ - * /` and `sqrt` are used (no `sin`, `cos`: their last bit may differ between C
//! libraries), so the same seed gives the same bytes on every platform.

use crate::rng::Rng;

use super::enc::quantise;

/// `cos` and `sin` of `2π k / n`, by Taylor series (deterministic on every platform).
pub(crate) fn unit_circle(k: u32, n: u32) -> (f64, f64) {
    let pi = std::f64::consts::PI;
    let mut t = 2.0 * pi * f64::from(k % n) / f64::from(n);
    if t > pi {
        t -= 2.0 * pi;
    }
    let x2 = t * t;
    let (mut c, mut s) = (1.0, t);
    let (mut tc, mut ts) = (1.0, t);
    for i in 1..=20u32 {
        let a = f64::from(2 * i - 1);
        let b = f64::from(2 * i);
        let d = f64::from(2 * i + 1);
        tc *= -x2 / (a * b);
        ts *= -x2 / (b * d);
        c += tc;
        s += ts;
    }
    (c, s)
}

/// Area of a closed polygon (shoelace), in the square of its unit.
pub(crate) fn polygon_area(points: &[[f64; 2]]) -> f64 {
    let n = points.len();
    let mut twice = 0.0;
    for i in 0..n {
        let [x0, y0] = points[i];
        let [x1, y1] = points[(i + 1) % n];
        twice += x0 * y1 - x1 * y0;
    }
    (twice / 2.0).abs()
}

/// An elliptic cross-section, whole or only its anterior half (`y <= cy`: anterior is −y in
/// LPS), present between two cranio-caudal fractions `u0..=u1` of the scan (0 inferior, 1
/// superior), optionally tapering towards both ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Shape {
    pub half: bool,
    pub cx: f64,
    pub cy: f64,
    pub ax: f64,
    pub ay: f64,
    pub u0: f64,
    pub u1: f64,
    pub taper: bool,
}

impl Shape {
    fn ellipse(cx: f64, cy: f64, ax: f64, ay: f64, u0: f64, u1: f64, taper: bool) -> Shape {
        Shape {
            half: false,
            cx,
            cy,
            ax,
            ay,
            u0,
            u1,
            taper,
        }
    }

    fn half(cx: f64, cy: f64, ax: f64, ay: f64, u0: f64, u1: f64) -> Shape {
        Shape {
            half: true,
            cx,
            cy,
            ax,
            ay,
            u0,
            u1,
            taper: true,
        }
    }

    /// Scale of the cross-section at fraction `u` (None outside the extent).
    pub(crate) fn scale_at(&self, u: f64) -> Option<f64> {
        if u < self.u0 - 1e-9 || u > self.u1 + 1e-9 {
            return None;
        }
        if !self.taper || self.u1 - self.u0 < 1e-9 {
            return Some(1.0);
        }
        let mid = (self.u0 + self.u1) / 2.0;
        let t = ((u - mid) / ((self.u1 - self.u0) / 2.0)).clamp(-1.0, 1.0);
        Some((1.0 - 0.75 * t * t).sqrt())
    }

    /// Normalised radius of `(x, y)` in the cross-section at scale `f` (≤ 1 inside).
    fn radius(&self, x: f64, y: f64, f: f64) -> f64 {
        let dx = (x - self.cx) / (self.ax * f);
        let dy = (y - self.cy) / (self.ay * f);
        (dx * dx + dy * dy).sqrt()
    }

    #[cfg(test)]
    pub(crate) fn contains(&self, x: f64, y: f64, u: f64) -> bool {
        match self.scale_at(u) {
            Some(f) => (!self.half || y <= self.cy) && self.radius(x, y, f) <= 1.0,
            None => false,
        }
    }

    /// Approximate distance (mm) from `(x, y)` to the cross-section at `u` (0 inside), with
    /// `slab` mm between fractions 0 and 1 for the cranio-caudal part.
    pub(crate) fn distance(&self, x: f64, y: f64, u: f64, slab: f64) -> f64 {
        let (f, dz) = match self.scale_at(u) {
            Some(f) => (f, 0.0),
            None => {
                let edge = if u < self.u0 { self.u0 } else { self.u1 };
                (self.scale_at(edge).unwrap_or(0.5), (u - edge).abs() * slab)
            }
        };
        let y = if self.half { y.min(self.cy) } else { y };
        let r = self.radius(x, y, f);
        let d = ((r - 1.0) * self.ax.min(self.ay) * f).max(0.0);
        (d * d + dz * dz).sqrt()
    }

    /// The contour at fraction `u`: `points` points on the ellipse (or on its anterior arc,
    /// closed along the base), quantised to two decimals as written.
    pub(crate) fn polygon(&self, u: f64, points: u32) -> Option<Vec<[f64; 2]>> {
        let f = self.scale_at(u)?;
        let (ax, ay) = (self.ax * f, self.ay * f);
        let out: Vec<[f64; 2]> = if self.half {
            // Anterior arc from the lateral (+x) end to the other, angles 0..=π.
            (0..=points / 2)
                .map(|k| {
                    let (c, s) = unit_circle(k, points);
                    [self.cx + ax * c, self.cy - ay * s]
                })
                .collect()
        } else {
            (0..points)
                .map(|k| {
                    let (c, s) = unit_circle(k, points);
                    [self.cx + ax * c, self.cy - ay * s]
                })
                .collect()
        };
        Some(
            out.into_iter()
                .map(|[x, y]| [quantise(x, 2), quantise(y, 2)])
                .collect(),
        )
    }

    /// The shape grown by `margin` mm in-plane and `du` at both cranio-caudal ends.
    pub(crate) fn grown(&self, margin: f64, du: f64) -> Shape {
        Shape {
            ax: self.ax + margin,
            ay: self.ay + margin,
            u0: self.u0 - du,
            u1: self.u1 + du,
            ..*self
        }
    }

    /// The shape as one observer draws it: scaled by `scale` in-plane, shifted by
    /// `(dx, dy)` mm, its ends moved by `inf` and `sup` (fractions; positive grows).
    pub(crate) fn drawn(&self, scale: f64, dx: f64, dy: f64, inf: f64, sup: f64) -> Shape {
        let mut s = Shape {
            cx: self.cx + dx,
            cy: self.cy + dy,
            ax: self.ax * scale,
            ay: self.ay * scale,
            u0: self.u0 - inf,
            u1: self.u1 + sup,
            ..*self
        };
        if s.u1 < s.u0 {
            let mid = (self.u0 + self.u1) / 2.0;
            s.u0 = mid;
            s.u1 = mid;
        }
        s
    }
}

/// What a structure is (the side is that of the structure itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RoiKind {
    CtvBreast,
    CtvChestWall,
    PtvBreast,
    PtvChestWall,
    CtvL1,
    CtvL2,
    CtvL3,
    CtvL4,
    CtvImn,
    CtvTumourBed,
    PtvTumourBed,
    Heart,
    Lung,
    Breast,
    SpinalCord,
    External,
}

impl RoiKind {
    /// RT ROI Interpreted Type.
    pub(crate) fn interpreted_type(self) -> &'static str {
        match self {
            RoiKind::CtvBreast
            | RoiKind::CtvChestWall
            | RoiKind::CtvL1
            | RoiKind::CtvL2
            | RoiKind::CtvL3
            | RoiKind::CtvL4
            | RoiKind::CtvImn
            | RoiKind::CtvTumourBed => "CTV",
            RoiKind::PtvBreast | RoiKind::PtvChestWall | RoiKind::PtvTumourBed => "PTV",
            RoiKind::External => "EXTERNAL",
            RoiKind::Heart | RoiKind::Lung | RoiKind::Breast | RoiKind::SpinalCord => "ORGAN",
        }
    }

    pub(crate) fn is_target(self) -> bool {
        matches!(self.interpreted_type(), "CTV" | "PTV")
    }

    /// ROI Display Color.
    pub(crate) fn color(self) -> [i64; 3] {
        match self {
            RoiKind::CtvBreast | RoiKind::CtvChestWall => [255, 0, 0],
            RoiKind::PtvBreast | RoiKind::PtvChestWall => [0, 0, 255],
            RoiKind::CtvL1 | RoiKind::CtvL2 | RoiKind::CtvL3 | RoiKind::CtvL4 => [255, 128, 0],
            RoiKind::CtvImn => [255, 0, 255],
            RoiKind::CtvTumourBed => [128, 0, 0],
            RoiKind::PtvTumourBed => [0, 128, 255],
            RoiKind::Heart => [255, 0, 128],
            RoiKind::Lung => [0, 255, 255],
            RoiKind::Breast => [255, 200, 150],
            RoiKind::SpinalCord => [255, 255, 0],
            RoiKind::External => [0, 255, 0],
        }
    }
}

/// The phantom of one patient.
#[derive(Debug, Clone)]
pub(crate) struct Anatomy {
    /// True when the left side is treated.
    pub left: bool,
    pub mastectomy: bool,
    pub body: Shape,
    /// Right then left.
    pub lungs: [Shape; 2],
    pub heart: Shape,
    pub spine: Shape,
    pub cord: Shape,
    /// Right then left; the treated one is absent after a mastectomy.
    pub breasts: [Option<Shape>; 2],
    pub ctv_breast: Shape,
    pub nodes: [Shape; 5],
    pub tumour_bed: Shape,
}

fn jitter(r: &mut Rng, v: f64, rel: f64) -> f64 {
    v * (1.0 + rel * (2.0 * r.unit() - 1.0))
}

impl Anatomy {
    /// Draws a phantom sized by the patient's build.
    pub(crate) fn new(
        r: &mut Rng,
        left: bool,
        mastectomy: bool,
        weight_kg: f64,
        height_cm: f64,
    ) -> Anatomy {
        let bmi = weight_kg / (height_cm / 100.0 * height_cm / 100.0);
        let bs = (0.85 + (bmi - 22.0) * 0.02).clamp(0.85, 1.25);
        let side = if left { 1.0 } else { -1.0 };
        let body = Shape::ellipse(0.0, 0.0, 150.0 * bs, 105.0 * bs, -1.0, 2.0, false);
        let lung =
            |s: f64| Shape::ellipse(s * 72.0 * bs, 10.0, 40.0 * bs, 60.0 * bs, 0.2, 1.2, false);
        let heart = Shape::ellipse(
            25.0,
            -15.0,
            jitter(r, 50.0, 0.1),
            jitter(r, 42.0, 0.1),
            -0.1,
            0.5,
            true,
        );
        let spine = Shape::ellipse(0.0, 70.0 * bs, 16.0, 16.0, -1.0, 2.0, false);
        let cord = Shape::ellipse(0.0, 70.0 * bs, 6.0, 6.0, -1.0, 2.0, false);
        // Breast base on the body surface.
        let bx = 85.0 * bs;
        let surface = -105.0 * bs * (1.0_f64 - (85.0 / 150.0) * (85.0 / 150.0)).sqrt();
        let width = jitter(r, 62.0, 0.2) * bs.sqrt();
        let depth = jitter(r, 48.0, 0.3) * bs;
        let breast = |s: f64| Shape::half(s * bx, surface + 10.0, width, depth, 0.05, 0.8);
        let mut breasts = [Some(breast(-1.0)), Some(breast(1.0))];
        if mastectomy {
            breasts[usize::from(left)] = None;
        }
        let treated = breast(side);
        let ctv_breast = if mastectomy {
            // Chest wall: a thin shell on the body surface.
            Shape::half(
                side * bx,
                surface + 12.0,
                width + 8.0,
                jitter(r, 20.0, 0.2),
                0.05,
                0.8,
            )
        } else {
            // 5 mm under the skin.
            Shape {
                ax: treated.ax - 5.0,
                ay: treated.ay - 5.0,
                ..treated
            }
        };
        let node = |cx: f64, cy: f64, ax: f64, ay: f64, u0: f64, u1: f64| {
            Shape::ellipse(side * cx * bs, cy * bs, ax, ay, u0, u1, true)
        };
        let nodes = [
            node(105.0, -30.0, 22.0, 18.0, 0.55, 0.82),
            node(88.0, -50.0, 16.0, 13.0, 0.64, 0.87),
            node(70.0, -60.0, 13.0, 11.0, 0.76, 0.93),
            node(55.0, -35.0, 17.0, 13.0, 0.86, 1.0),
            node(28.0, -78.0, 6.0, 6.0, 0.35, 0.75),
        ];
        // The tumour bed: somewhere in the breast, 1.5-2.3 cm across.
        let tb_r = jitter(r, 19.0, 0.2);
        let tb_u = 0.3 + 0.3 * r.unit();
        let tumour_bed = Shape::ellipse(
            treated.cx + side * (r.unit() - 0.5) * treated.ax * 0.6,
            treated.cy - treated.ay * (0.25 + 0.3 * r.unit()),
            tb_r,
            tb_r * 0.9,
            tb_u - 0.09,
            tb_u + 0.09,
            true,
        );
        Anatomy {
            left,
            mastectomy,
            body,
            lungs: [lung(-1.0), lung(1.0)],
            heart,
            spine,
            cord,
            breasts,
            ctv_breast,
            nodes,
            tumour_bed,
        }
    }

    /// The reference shape of a structure (before any observer's hand); `left` is the side
    /// of lungs and breasts (targets are on the treated side). None for a breast removed.
    pub(crate) fn shape(&self, kind: RoiKind, left: bool) -> Option<Shape> {
        Some(match kind {
            RoiKind::CtvBreast | RoiKind::CtvChestWall => self.ctv_breast,
            RoiKind::PtvBreast | RoiKind::PtvChestWall => self.ctv_breast.grown(7.0, 0.04),
            RoiKind::CtvL1 => self.nodes[0],
            RoiKind::CtvL2 => self.nodes[1],
            RoiKind::CtvL3 => self.nodes[2],
            RoiKind::CtvL4 => self.nodes[3],
            RoiKind::CtvImn => self.nodes[4],
            RoiKind::CtvTumourBed => self.tumour_bed,
            RoiKind::PtvTumourBed => self.tumour_bed.grown(7.0, 0.04),
            RoiKind::Heart => self.heart,
            RoiKind::Lung => self.lungs[usize::from(left)],
            RoiKind::Breast => self.breasts[usize::from(left)]?,
            RoiKind::SpinalCord => self.cord,
            RoiKind::External => self.body,
        })
    }

    /// The cross-sections at fraction `u`, for fast rendering of one slice.
    pub(crate) fn slice(&self, u: f64) -> SliceAnatomy {
        SliceAnatomy {
            treated: usize::from(self.left),
            body: Section::of(&self.body, u),
            cord: Section::of(&self.cord, u),
            spine: Section::of(&self.spine, u),
            heart: Section::of(&self.heart, u),
            lungs: [
                Section::of(&self.lungs[0], u),
                Section::of(&self.lungs[1], u),
            ],
            breasts: [
                self.breasts[0].and_then(|b| Section::of(&b, u)),
                self.breasts[1].and_then(|b| Section::of(&b, u)),
            ],
        }
    }
}

/// One shape's cross-section at one slice, ready for point tests (no square roots).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Section {
    half: bool,
    cx: f64,
    cy: f64,
    /// 1 / semi-axis², per axis.
    ix2: f64,
    iy2: f64,
}

impl Section {
    fn of(s: &Shape, u: f64) -> Option<Section> {
        let f = s.scale_at(u)?;
        let (ax, ay) = (s.ax * f, s.ay * f);
        Some(Section {
            half: s.half,
            cx: s.cx,
            cy: s.cy,
            ix2: 1.0 / (ax * ax),
            iy2: 1.0 / (ay * ay),
        })
    }

    fn contains(&self, x: f64, y: f64) -> bool {
        if self.half && y > self.cy {
            return false;
        }
        let dx = x - self.cx;
        let dy = y - self.cy;
        dx * dx * self.ix2 + dy * dy * self.iy2 <= 1.0
    }
}

fn inside(s: &Option<Section>, x: f64, y: f64) -> bool {
    s.as_ref().is_some_and(|s| s.contains(x, y))
}

/// The phantom at one slice.
#[derive(Debug, Clone)]
pub(crate) struct SliceAnatomy {
    treated: usize,
    body: Option<Section>,
    cord: Option<Section>,
    spine: Option<Section>,
    heart: Option<Section>,
    lungs: [Option<Section>; 2],
    breasts: [Option<Section>; 2],
}

impl SliceAnatomy {
    /// Hounsfield units at `(x, y)`, before noise: air, soft tissue, lungs, heart, spine,
    /// fatty contralateral breast and a denser treated breast.
    pub(crate) fn hu(&self, x: f64, y: f64) -> i32 {
        let breast = || {
            (0..2)
                .find(|&i| inside(&self.breasts[i], x, y))
                .map(|i| i == self.treated)
        };
        if !inside(&self.body, x, y) {
            return match breast() {
                Some(true) => 45,
                Some(false) => -90,
                None => -1000,
            };
        }
        if inside(&self.cord, x, y) {
            return 35;
        }
        if inside(&self.spine, x, y) {
            return 650;
        }
        if inside(&self.heart, x, y) {
            return 45;
        }
        if inside(&self.lungs[0], x, y) || inside(&self.lungs[1], x, y) {
            return -780;
        }
        match breast() {
            Some(true) => 45,
            Some(false) => -90,
            None => 20,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn circle_points_are_on_the_circle() {
        for n in [8u32, 24, 32] {
            for k in 0..n {
                let (c, s) = unit_circle(k, n);
                assert!((c * c + s * s - 1.0).abs() < 1e-12);
            }
        }
        let (c, s) = unit_circle(6, 24);
        assert!(c.abs() < 1e-12 && (s - 1.0).abs() < 1e-12);
    }

    #[test]
    fn polygon_areas_approach_the_ellipse() {
        let e = Shape::ellipse(10.0, -20.0, 30.0, 20.0, 0.0, 1.0, false);
        let p = e.polygon(0.5, 64).unwrap();
        let exact = std::f64::consts::PI * 30.0 * 20.0;
        assert!((polygon_area(&p) / exact - 1.0).abs() < 0.01);
        let h = Shape::half(0.0, 0.0, 30.0, 20.0, 0.0, 1.0);
        let p = h.polygon(0.5, 64).unwrap();
        let f = h.scale_at(0.5).unwrap();
        assert!((polygon_area(&p) / (exact * f * f / 2.0) - 1.0).abs() < 0.01);
        assert!(h.polygon(1.5, 64).is_none());
        assert!(e.contains(10.0, -20.0, 0.5) && !e.contains(50.0, -20.0, 0.5));
        assert_eq!(e.distance(10.0, -20.0, 0.5, 150.0), 0.0);
    }
}
