//! Who contours, and how they name what they contour: the observers of the institution, their
//! habits (naming style, drawing bias) and the ROI names they type.

use crate::rng::{hash, Rng};

use super::anatomy::{RoiKind, Shape};

/// The radiation oncologists who draw structure sets (fictitious), as DICOM person names.
/// Their index in this list is what the truth file records.
pub(crate) const OBSERVERS: &[&str] = &[
    "Vandermeulen^Anne",
    "Delvaux^Pierre",
    "Nguyễn^Thu Hà",
    "Hendrickx^Sofie",
    "Moreau^Claire",
    "De Wilde^Koen",
    "Çelik^Elif",
    "Lambrechts^Eva",
    "Wiśniewski^Tomasz",
    "Dupuis^Marc",
];

/// Referring physicians (surgeons, medical oncologists).
pub(crate) const REFERRING: &[&str] = &[
    "Dumont^Hélène",
    "Janssens^Marc",
    "Leclercq^Sophie",
    "Peeters^Jan",
    "Aït Benali^Samira",
];

/// CT radiographers.
pub(crate) const RADIOGRAPHERS: &[&str] =
    &["Simon^Julie", "Maes^Tom", "Goossens^Lies", "Öztürk^Deniz"];

/// Dosimetrists who make the plans.
pub(crate) const DOSIMETRISTS: &[&str] = &[
    "Renard^Luc",
    "Coppens^Nina",
    "Šimić^Ivana",
    "Verhaegen^Bart",
    "Lemoine^Claire",
];

/// How an observer names structures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    /// Free text, English or French (`CTV breast`, `Poumon G`, `Tumour bed`).
    Free,
    /// Underscored, but not the consensus names (`CTV_Breast_L`, `CTV_n_L1`).
    Semi,
    /// ESTRO consensus / TG-263 names (`CTVp_Breast_L`, `CTVn_L2_L`).
    Estro,
}

/// One observer's habits, fixed for a seed.
#[derive(Debug, Clone)]
pub(crate) struct Observer {
    pub index: usize,
    pub name: &'static str,
    scale: f64,
    dx: f64,
    dy: f64,
    inf: f64,
    sup: f64,
    modern: bool,
    free_text: bool,
    upper: bool,
    pub french: bool,
    pub ptv: bool,
    pub external: bool,
    pub contra_lung: bool,
    pub contra_breast: bool,
    pub cord: bool,
}

/// Variability left after the ESTRO consensus (structure sets dated 2016 or later), as a
/// fraction of the observer's bias before it.
pub(crate) const CONSENSUS_FACTOR: f64 = 0.3;

/// First year drawn after the consensus guidelines.
pub(crate) const CONSENSUS_YEAR: i32 = 2016;

fn between(r: &mut Rng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * r.unit()
}

impl Observer {
    pub(crate) fn new(seed: u64, index: usize) -> Observer {
        let mut r = Rng::new(hash(&[seed, 0x0B5E_4BE4, index as u64]));
        Observer {
            index,
            name: OBSERVERS[index],
            scale: between(&mut r, 0.80, 1.22),
            dx: between(&mut r, -6.0, 6.0),
            dy: between(&mut r, -6.0, 6.0),
            inf: between(&mut r, -0.06, 0.08),
            sup: between(&mut r, -0.06, 0.08),
            modern: r.chance(0.7),
            free_text: r.chance(0.6),
            upper: r.chance(0.2),
            french: r.chance(0.5),
            ptv: r.chance(0.7),
            external: r.chance(0.6),
            contra_lung: r.chance(0.7),
            contra_breast: r.chance(0.4),
            cord: r.chance(0.3),
        }
    }

    pub(crate) fn style(&self, year: i32) -> Style {
        if year >= CONSENSUS_YEAR && self.modern {
            Style::Estro
        } else if year <= 2012 && self.free_text {
            Style::Free
        } else {
            Style::Semi
        }
    }

    /// The shape as this observer draws it in `year`, with the per-set noise `noise`
    /// (`[scale, dx, dy]`, drawn once per structure set).
    pub(crate) fn draw(&self, kind: RoiKind, shape: &Shape, year: i32, noise: [f64; 3]) -> Shape {
        let k = if year >= CONSENSUS_YEAR {
            CONSENSUS_FACTOR
        } else {
            1.0
        };
        // Disagreement on the cranio-caudal ends grows with the structure's extent (about a
        // slice either way for a whole breast).
        let ends = k * ((shape.u1 - shape.u0) / 0.7).min(1.0);
        match kind {
            // Body outlines come from a threshold: observers differ by a fraction of a
            // millimetre (Dice about 0.99).
            RoiKind::External => shape.drawn(1.0 + 0.25 * noise[0], 0.0, 0.0, 0.0, 0.0),
            k_ if k_.is_target() => shape.drawn(
                1.0 + k * (self.scale - 1.0 + noise[0]),
                k * (self.dx + noise[1]),
                k * (self.dy + noise[2]),
                ends * self.inf,
                ends * self.sup,
            ),
            // Organs at risk: a smaller bias (atlases helped there too) and per-set noise of
            // a millimetre or two, so that observers agree as published studies report
            // (heart Dice about 0.85 to 0.95, lungs above 0.9).
            _ => shape.drawn(
                1.0 + 0.3 * k * (self.scale - 1.0) + 0.6 * noise[0],
                0.4 * k * self.dx + 0.6 * noise[1],
                0.4 * k * self.dy + 0.6 * noise[2],
                0.5 * ends * self.inf,
                0.5 * ends * self.sup,
            ),
        }
    }

    /// The ROI name this observer types in `year`.
    pub(crate) fn roi_name(&self, kind: RoiKind, left: bool, year: i32) -> String {
        let style = self.style(year);
        let name = roi_name(kind, left, style, self.french);
        if self.upper && style != Style::Estro {
            name.to_uppercase()
        } else {
            name
        }
    }
}

/// The name of a structure in a naming style (`left`: the side of the structure).
pub(crate) fn roi_name(kind: RoiKind, left: bool, style: Style, french: bool) -> String {
    let lr = if left { "L" } else { "R" };
    match style {
        Style::Estro => tg263(kind, left),
        Style::Semi => match kind {
            RoiKind::CtvBreast => format!("CTV_Breast_{lr}"),
            RoiKind::CtvChestWall => format!("CTV_ChestWall_{lr}"),
            RoiKind::PtvBreast => format!("PTV_Breast_{lr}"),
            RoiKind::PtvChestWall => format!("PTV_ChestWall_{lr}"),
            RoiKind::CtvL1 => "CTV_n_L1".into(),
            RoiKind::CtvL2 => "CTV_n_L2".into(),
            RoiKind::CtvL3 => "CTV_n_L3".into(),
            RoiKind::CtvL4 => "CTV_n_L4".into(),
            RoiKind::CtvImn => "CTV_n_IMN".into(),
            RoiKind::CtvTumourBed => "CTV_Boost".into(),
            RoiKind::PtvTumourBed => "PTV_Boost".into(),
            RoiKind::Heart => "Heart".into(),
            RoiKind::Lung => format!("Lung_{lr}"),
            RoiKind::Breast => format!("Breast_{lr}"),
            RoiKind::SpinalCord => "SpinalCord".into(),
            RoiKind::External => "External".into(),
        },
        Style::Free if french => {
            let gd = if left { "G" } else { "D" };
            match kind {
                RoiKind::CtvBreast => "CTV sein".into(),
                RoiKind::CtvChestWall => "CTV paroi".into(),
                RoiKind::PtvBreast => "PTV sein".into(),
                RoiKind::PtvChestWall => "PTV paroi".into(),
                RoiKind::CtvL1 => "CTV aisselle 1".into(),
                RoiKind::CtvL2 => "CTV aisselle 2".into(),
                RoiKind::CtvL3 => "CTV aisselle 3".into(),
                RoiKind::CtvL4 => "CTV sus-clav".into(),
                RoiKind::CtvImn => "CMI".into(),
                RoiKind::CtvTumourBed => "Lit tumoral".into(),
                RoiKind::PtvTumourBed => "PTV boost".into(),
                RoiKind::Heart => "Coeur".into(),
                RoiKind::Lung => format!("Poumon {gd}"),
                RoiKind::Breast => format!("Sein {gd}"),
                RoiKind::SpinalCord => "Moelle".into(),
                RoiKind::External => "Contour externe".into(),
            }
        }
        Style::Free => match kind {
            RoiKind::CtvBreast => "CTV breast".into(),
            RoiKind::CtvChestWall => "CTV chest wall".into(),
            RoiKind::PtvBreast => "PTV".into(),
            RoiKind::PtvChestWall => "PTV chest wall".into(),
            RoiKind::CtvL1 => "Axilla I".into(),
            RoiKind::CtvL2 => "Axilla II".into(),
            RoiKind::CtvL3 => "Axilla III".into(),
            RoiKind::CtvL4 => "Supraclav".into(),
            RoiKind::CtvImn => "IMC".into(),
            RoiKind::CtvTumourBed => "Tumour bed".into(),
            RoiKind::PtvTumourBed => "Boost".into(),
            RoiKind::Heart => "Heart".into(),
            RoiKind::Lung => format!("Lung {lr}"),
            RoiKind::Breast => "Contralat breast".into(),
            RoiKind::SpinalCord => "Spinal cord".into(),
            RoiKind::External => "BODY".into(),
        },
    }
}

/// The intended standard name: TG-263 (organs) and its target convention with the ESTRO
/// consensus volumes (`CTVp_…` primary, `CTVn_…` nodal, laterality last).
pub(crate) fn tg263(kind: RoiKind, left: bool) -> String {
    let lr = if left { "L" } else { "R" };
    match kind {
        RoiKind::CtvBreast => format!("CTVp_Breast_{lr}"),
        RoiKind::CtvChestWall => format!("CTVp_Chestwall_{lr}"),
        RoiKind::PtvBreast => format!("PTVp_Breast_{lr}"),
        RoiKind::PtvChestWall => format!("PTVp_Chestwall_{lr}"),
        RoiKind::CtvL1 => format!("CTVn_L1_{lr}"),
        RoiKind::CtvL2 => format!("CTVn_L2_{lr}"),
        RoiKind::CtvL3 => format!("CTVn_L3_{lr}"),
        RoiKind::CtvL4 => format!("CTVn_L4_{lr}"),
        RoiKind::CtvImn => format!("CTVn_IMN_{lr}"),
        RoiKind::CtvTumourBed => format!("CTVp_TumorBed_{lr}"),
        RoiKind::PtvTumourBed => format!("PTVp_TumorBed_{lr}"),
        RoiKind::Heart => "Heart".into(),
        RoiKind::Lung => format!("Lung_{lr}"),
        RoiKind::Breast => format!("Breast_{lr}"),
        RoiKind::SpinalCord => "SpinalCord".into(),
        RoiKind::External => "External".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_their_vr() {
        use RoiKind::*;
        let kinds = [
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
        ];
        for kind in kinds {
            for left in [true, false] {
                for style in [Style::Free, Style::Semi, Style::Estro] {
                    for french in [true, false] {
                        let n = roi_name(kind, left, style, french);
                        assert!(!n.is_empty() && n.len() <= 64 && n.is_ascii(), "{n}");
                    }
                }
            }
        }
        assert_eq!(roi_name(CtvL2, true, Style::Estro, false), "CTVn_L2_L");
        assert_eq!(roi_name(Lung, true, Style::Free, false), "Lung L");
        for p in OBSERVERS
            .iter()
            .chain(REFERRING)
            .chain(RADIOGRAPHERS)
            .chain(DOSIMETRISTS)
        {
            assert!(p.contains('^') && p.len() <= 64);
        }
    }

    #[test]
    fn variability_shrinks_after_the_consensus() {
        let shape = Shape {
            half: false,
            cx: 0.0,
            cy: 0.0,
            ax: 50.0,
            ay: 40.0,
            u0: 0.2,
            u1: 0.8,
            taper: true,
        };
        for i in 0..OBSERVERS.len() {
            let o = Observer::new(1, i);
            let before = o.draw(RoiKind::CtvBreast, &shape, 2012, [0.0; 3]);
            let after = o.draw(RoiKind::CtvBreast, &shape, 2019, [0.0; 3]);
            assert!((after.ax - 50.0).abs() <= (before.ax - 50.0).abs() + 1e-9);
        }
    }
}
