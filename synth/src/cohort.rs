//! The clinical model: one synthetic patient at a time, from the seed and the patient number.
//!
//! Every patient is a pure function of `(seed, patient_number)`: the random streams are
//! derived from both, and the identifiers that must be unique (national number, MRN, sample id)
//! come from keyed permutations of the patient number. Nothing is remembered between patients.

use chrono::{Datelike, Days, NaiveDate, Weekday};

use crate::codes::{CARB, CYCL, DOCE, DOXO, LETR, PACL, PERT, TAMO, TRAS};
use crate::names;
use crate::niss::niss_digits;
use crate::rng::{hash, Permutation, Rng};

/// Random stream ids (the third word of [`Rng::stream`]).
pub(crate) const STREAM_CLINICAL: u64 = 1;
pub(crate) const STREAM_DIRT: u64 = 2;
pub(crate) const STREAM_LABS: u64 = 3;
pub(crate) const STREAM_IDS: u64 = 4;
pub(crate) const STREAM_RUN: u64 = 5;
/// DICOM content of a patient, CT noise, and the run-level DICOM dirt.
pub(crate) const STREAM_DICOM: u64 = 6;
pub(crate) const STREAM_DICOM_NOISE: u64 = 7;
pub(crate) const STREAM_DICOM_DIRT: u64 = 8;

/// First and last diagnosis year.
pub(crate) const FIRST_DX_YEAR: i32 = 2008;
pub(crate) const LAST_DX_YEAR: i32 = 2024;
/// Youngest and oldest age at diagnosis.
pub(crate) const MIN_AGE: i32 = 30;
pub(crate) const MAX_AGE: i32 = 85;

/// Data cut-off: nothing happens after this day (the export date).
pub fn cutoff_date() -> NaiveDate {
    ymd(2025, 6, 30)
}

pub(crate) fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("valid date")
}

pub(crate) fn plus(d: NaiveDate, days: i64) -> NaiveDate {
    if days >= 0 {
        d.checked_add_days(Days::new(days as u64))
            .expect("date in range")
    } else {
        d.checked_sub_days(Days::new(days.unsigned_abs()))
            .expect("date in range")
    }
}

/// The same day, or the next Monday when it falls in a weekend.
pub(crate) fn weekday_on_or_after(d: NaiveDate) -> NaiveDate {
    match d.weekday() {
        Weekday::Sat => plus(d, 2),
        Weekday::Sun => plus(d, 1),
        _ => d,
    }
}

/// Day of the `n`-th weekday fraction starting on `start` (a weekday).
fn last_fraction(start: NaiveDate, n: u32) -> NaiveDate {
    let mut d = start;
    let mut done = 1;
    while done < n {
        d = plus(d, 1);
        if !matches!(d.weekday(), Weekday::Sat | Weekday::Sun) {
            done += 1;
        }
    }
    d
}

/// Molecular surrogate subtype (St Gallen 2013 rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subtype {
    /// ER+ (and/or PR+), HER2-, Ki-67 < 20 %, PR >= 20 %.
    LuminalA,
    /// ER+ (and/or PR+), HER2-, Ki-67 >= 20 % or PR < 20 %.
    LuminalBHer2Neg,
    /// ER+ (and/or PR+), HER2+.
    LuminalBHer2Pos,
    /// ER- and PR-, HER2+.
    Her2Enriched,
    /// ER-, PR-, HER2-.
    TripleNegative,
}

impl Subtype {
    /// Name used in the truth file.
    pub fn as_str(self) -> &'static str {
        match self {
            Subtype::LuminalA => "luminal_a",
            Subtype::LuminalBHer2Neg => "luminal_b_her2neg",
            Subtype::LuminalBHer2Pos => "luminal_b_her2pos",
            Subtype::Her2Enriched => "her2_enriched",
            Subtype::TripleNegative => "tnbc",
        }
    }

    /// Every subtype, in truth-file order.
    pub const ALL: [Subtype; 5] = [
        Subtype::LuminalA,
        Subtype::LuminalBHer2Neg,
        Subtype::LuminalBHer2Pos,
        Subtype::Her2Enriched,
        Subtype::TripleNegative,
    ];

    pub(crate) fn her2_positive(self) -> bool {
        matches!(self, Subtype::LuminalBHer2Pos | Subtype::Her2Enriched)
    }

    pub(crate) fn hormone_positive(self) -> bool {
        matches!(
            self,
            Subtype::LuminalA | Subtype::LuminalBHer2Neg | Subtype::LuminalBHer2Pos
        )
    }
}

/// HER2 status from IHC score (0..=3) and ISH result: IHC 3+, or IHC 2+ with ISH positive.
pub fn her2_positive(ihc: u8, ish_positive: Option<bool>) -> bool {
    ihc >= 3 || (ihc == 2 && ish_positive == Some(true))
}

/// St Gallen surrogate classification from receptor values: ER/PR positive at >= 1 %;
/// luminal A-like needs Ki-67 < 20 % and PR >= 20 %.
pub fn classify(er_pct: u8, pr_pct: u8, her2_positive: bool, ki67_pct: u8) -> Subtype {
    let hormone = er_pct >= 1 || pr_pct >= 1;
    match (hormone, her2_positive) {
        (true, true) => Subtype::LuminalBHer2Pos,
        (false, true) => Subtype::Her2Enriched,
        (false, false) => Subtype::TripleNegative,
        (true, false) => {
            if ki67_pct < 20 && pr_pct >= 20 {
                Subtype::LuminalA
            } else {
                Subtype::LuminalBHer2Neg
            }
        }
    }
}

/// AJCC 8th edition anatomic stage group from T, N and M categories ("" when no stage group
/// is assigned, as for ypT0 ypN0).
pub fn stage_group(t: &str, n: &str, m: &str) -> &'static str {
    if m == "M1" {
        return "IV";
    }
    let nn = match n {
        "N0" => 0,
        "N1" => 1,
        "N2" => 2,
        _ => 3,
    };
    let tt = match t {
        "Tis" => -1,
        "T0" => 0,
        "T2" => 2,
        "T3" => 3,
        t if t.starts_with("T1") => 1,
        _ => 4,
    };
    if nn == 3 {
        return "IIIC";
    }
    if tt == 4 {
        return "IIIB";
    }
    match (tt, nn) {
        (-1, 0) => "0",
        (0, 0) => "",
        (1, 0) => "IA",
        (-1..=1, 1) | (2, 0) => "IIA",
        (2, 1) | (3, 0) => "IIB",
        _ => "IIIA",
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sex {
    Female,
    Male,
}

#[derive(Debug, Clone)]
pub(crate) struct Tnm {
    pub date: NaiveDate,
    pub t: &'static str,
    pub n: &'static str,
    pub m: &'static str,
    pub stage: &'static str,
}

impl Tnm {
    fn new(date: NaiveDate, t: &'static str, n: &'static str, m: &'static str) -> Tnm {
        Tnm {
            date,
            t,
            n,
            m,
            stage: stage_group(t, n, m),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Surgery {
    pub date: NaiveDate,
    pub mastectomy: bool,
    pub axilla: &'static str,
}

#[derive(Debug, Clone)]
pub(crate) struct Admin {
    pub date: NaiveDate,
    pub drug: usize,
    /// Dose in tenths of mg.
    pub dose10: i64,
    pub cycle: u32,
    pub setting: &'static str,
    pub regimen: &'static str,
    /// Days of supply for oral drugs (0 for infusions).
    pub supply_days: u32,
}

#[derive(Debug, Clone)]
pub(crate) struct RtCourse {
    pub start: NaiveDate,
    pub end: NaiveDate,
    pub target: &'static str,
    /// Total dose in cGy.
    pub dose_cgy: u32,
    pub fractions: u32,
}

#[derive(Debug, Clone)]
pub(crate) struct Recurrence {
    pub date: NaiveDate,
    pub kind: &'static str,
    pub site: &'static str,
    pub icd10: &'static str,
}

#[derive(Debug, Clone)]
pub(crate) struct Death {
    pub date: NaiveDate,
    pub cause: &'static str,
}

#[derive(Debug, Clone)]
pub(crate) struct Lab {
    pub date: NaiveDate,
    /// Index in [`crate::codes::MEASUREMENT_CODES`].
    pub code: usize,
    pub value: i64,
    pub decimals: u8,
}

#[derive(Debug, Clone)]
pub(crate) struct Imaging {
    pub date: NaiveDate,
    pub modality: &'static str,
    pub description: &'static str,
    pub study_uid: String,
    pub series_uid: String,
    pub instances: u32,
}

#[derive(Debug, Clone)]
pub(crate) struct Enrolment {
    pub consent: NaiveDate,
    pub randomisation: NaiveDate,
    pub randomisation_as_text: bool,
    pub arm: &'static str,
    pub comment: String,
    /// Person names that appear in the comment.
    pub comment_names: Vec<&'static str>,
}

#[derive(Debug, Clone)]
pub(crate) struct Patient {
    pub number: u64,
    pub mrn: String,
    pub niss: String,
    pub last_name: &'static str,
    pub first_name: &'static str,
    pub sex: Sex,
    pub birth_date: NaiveDate,
    pub postcode: &'static str,
    pub city: &'static str,
    /// Weight in tenths of kg.
    pub weight10: i64,
    pub height_cm: i64,
    pub dx_date: NaiveDate,
    pub age_at_dx: i32,
    pub icd10: &'static str,
    pub left: bool,
    pub morphology: &'static str,
    pub subtype: Subtype,
    pub er: u8,
    pub pr: u8,
    pub er_allred: Option<u8>,
    pub pr_allred: Option<u8>,
    pub her2_ihc: u8,
    pub her2_ish: Option<bool>,
    pub her2_ish_label: &'static str,
    pub ki67: u8,
    pub grade: u8,
    pub sample_id: String,
    pub ctnm: Tnm,
    pub neoadjuvant: bool,
    pub surgery: Option<Surgery>,
    pub yptnm: Option<Tnm>,
    pub pcr: Option<bool>,
    pub admins: Vec<Admin>,
    pub rt: Vec<RtCourse>,
    pub recurrence: Option<Recurrence>,
    pub death: Option<Death>,
    pub labs: Vec<Lab>,
    pub imaging: Vec<Imaging>,
    pub neoadj_study: Option<Enrolment>,
    pub boost_study: Option<Enrolment>,
}

impl Patient {
    pub(crate) fn her2_positive(&self) -> bool {
        her2_positive(self.her2_ihc, self.her2_ish)
    }

    /// Last day with data: the day of death or the cut-off.
    pub(crate) fn last_day(&self) -> NaiveDate {
        self.death.as_ref().map_or_else(cutoff_date, |d| d.date)
    }
}

/// Relative incidence by age at diagnosis (0 outside 30..=85).
fn age_weight(age: i32) -> u64 {
    let a = i64::from(age);
    let w = match age {
        a_ if !(MIN_AGE..=MAX_AGE).contains(&a_) => 0,
        30..=39 => 2 + 2 * (a - 30),
        40..=49 => 22 + 4 * (a - 40),
        50..=59 => 60 + 2 * (a - 50),
        60..=69 => 80,
        70..=79 => 80 - 4 * (a - 70),
        _ => 40 - 5 * (a - 80),
    };
    w as u64
}

/// Birth (date, day serial) slots for one sex: each birth year holds a number of the
/// 365 x 498 (day, serial) pairs proportional to how many patients of that year are expected,
/// and a keyed permutation of the patient number picks the slot. Distinct patient numbers get
/// distinct national numbers, and birth years follow the age distribution.
#[derive(Debug, Clone)]
struct BirthSlots {
    /// (year, first slot, slots) per birth year.
    years: Vec<(i32, u64, u64)>,
    perm: Permutation,
    male: bool,
}

const SERIALS_PER_DAY: u64 = 498;

impl BirthSlots {
    fn new(seed: u64, male: bool) -> BirthSlots {
        let first = FIRST_DX_YEAR - MAX_AGE;
        let last = LAST_DX_YEAR - MIN_AGE;
        let weights: Vec<(i32, u64)> = (first..=last)
            .map(|y| {
                (
                    y,
                    (FIRST_DX_YEAR..=LAST_DX_YEAR)
                        .map(|t| age_weight(t - y))
                        .sum(),
                )
            })
            .collect();
        let max = weights.iter().map(|(_, w)| *w).max().unwrap_or(1);
        let mut years = Vec::new();
        let mut start = 0;
        for (y, w) in weights {
            let slots = w * 365 * SERIALS_PER_DAY / max;
            if slots > 0 {
                years.push((y, start, slots));
                start += slots;
            }
        }
        let perm = Permutation::new(start, hash(&[seed, 0xB1B7, u64::from(male)]));
        BirthSlots { years, perm, male }
    }

    fn capacity(&self) -> u64 {
        self.perm.domain()
    }

    fn locate(&self, number: u64) -> (NaiveDate, u16) {
        let slot = self.perm.apply(number);
        let &(year, start, _) = self
            .years
            .iter()
            .rev()
            .find(|(_, start, _)| *start <= slot)
            .expect("slot in range");
        let within = slot - start;
        let day = within % 365;
        let serial_index = (within / 365) as u16;
        let serial = if self.male {
            1 + 2 * serial_index
        } else {
            2 + 2 * serial_index
        };
        (plus(ymd(year, 1, 1), day as i64), serial)
    }
}

/// The cohort: everything that is shared by all patients of one seed.
#[derive(Debug, Clone)]
pub(crate) struct Cohort {
    seed: u64,
    women: BirthSlots,
    men: BirthSlots,
    mrns: Permutation,
    samples: Permutation,
}

/// MRNs and sample ids have seven digits.
const ID_SPACE: u64 = 10_000_000;

impl Cohort {
    pub(crate) fn new(seed: u64) -> Cohort {
        Cohort {
            seed,
            women: BirthSlots::new(seed, false),
            men: BirthSlots::new(seed, true),
            mrns: Permutation::new(ID_SPACE, hash(&[seed, 0x3A7])),
            samples: Permutation::new(ID_SPACE, hash(&[seed, 0x5A3])),
        }
    }

    /// Patient numbers must stay below this bound (national numbers and MRNs stay unique).
    pub(crate) fn max_patient_number(&self) -> u64 {
        self.women.capacity().min(self.men.capacity()).min(ID_SPACE)
    }

    pub(crate) fn seed(&self) -> u64 {
        self.seed
    }

    pub(crate) fn patient(&self, number: u64) -> Patient {
        let mut r = Rng::stream(self.seed, number, STREAM_CLINICAL);
        let sex = if r.chance(0.01) {
            Sex::Male
        } else {
            Sex::Female
        };
        let (birth_date, serial) = match sex {
            Sex::Female => self.women.locate(number),
            Sex::Male => self.men.locate(number),
        };
        let niss = niss_digits(birth_date, serial);
        let mrn = format!("MRN{:07}", self.mrns.apply(number));
        let last_name = *r.pick(names::LAST_NAMES);
        let first_name = match sex {
            Sex::Female => *r.pick(names::FEMALE_FIRST_NAMES),
            Sex::Male => *r.pick(names::MALE_FIRST_NAMES),
        };
        let &(postcode, city) = r.pick(names::PLACES);
        let (weight10, height_cm) = match sex {
            Sex::Female => (r.bell(500, 980), r.bell(150, 180)),
            Sex::Male => (r.bell(650, 1100), r.bell(165, 192)),
        };

        // Diagnosis year given the birth year: P(t | y) ~ incidence(t - y), which makes the
        // diagnosis years uniform and the ages follow the incidence curve.
        let by = birth_date.year();
        let weights: Vec<u64> = (FIRST_DX_YEAR..=LAST_DX_YEAR)
            .map(|t| age_weight(t - by))
            .collect();
        let dx_year = FIRST_DX_YEAR + r.weighted(&weights) as i32;
        // Someone born on 29 February has her birthday on 1 March in common years.
        let anniversary = birth_date
            .with_year(dx_year)
            .unwrap_or_else(|| ymd(dx_year, 3, 1));
        let jan1 = ymd(dx_year, 1, 1);
        let dec31 = ymd(dx_year, 12, 31);
        let mut dx_date = plus(jan1, r.range(0, (dec31 - jan1).num_days()));
        if dx_year - by == MIN_AGE && dx_date < anniversary {
            // Not 30 yet: diagnosed after her birthday that year.
            dx_date = plus(anniversary, r.range(0, (dec31 - anniversary).num_days()));
        }
        // Biopsies are taken on weekdays (when that stays in the year and the age band).
        let shifted = weekday_on_or_after(dx_date);
        if shifted <= dec31 {
            dx_date = shifted;
        }
        let age_at_dx = dx_date.years_since(birth_date).map_or(0, |a| a as i32);
        let left = r.chance(0.52);
        let icd10 = r.pick_weighted(&[
            (5, "C50.1"),
            (12, "C50.2"),
            (6, "C50.3"),
            (45, "C50.4"),
            (8, "C50.5"),
            (1, "C50.6"),
            (15, "C50.8"),
            (8, "C50.9"),
        ]);
        let morphology = r.pick_weighted(&[
            (75, "8500/3"),
            (15, "8520/3"),
            (5, "8522/3"),
            (3, "8480/3"),
            (2, "8211/3"),
        ]);

        let subtype = r.pick_weighted(&[
            (40, Subtype::LuminalA),
            (17, Subtype::LuminalBHer2Neg),
            (8, Subtype::LuminalBHer2Pos),
            (15, Subtype::Her2Enriched),
            (20, Subtype::TripleNegative),
        ]);
        let receptors = receptors(&mut r, subtype);
        debug_assert_eq!(
            classify(
                receptors.er,
                receptors.pr,
                her2_positive(receptors.her2_ihc, receptors.her2_ish),
                receptors.ki67
            ),
            subtype
        );
        let sample_id = format!(
            "B{:02}-{:07}",
            dx_date.year() % 100,
            self.samples.apply(number)
        );

        let mut p = Patient {
            number,
            mrn,
            niss,
            last_name,
            first_name,
            sex,
            birth_date,
            postcode,
            city,
            weight10,
            height_cm,
            dx_date,
            age_at_dx,
            icd10,
            left,
            morphology,
            subtype,
            er: receptors.er,
            pr: receptors.pr,
            er_allred: receptors.er_allred,
            pr_allred: receptors.pr_allred,
            her2_ihc: receptors.her2_ihc,
            her2_ish: receptors.her2_ish,
            her2_ish_label: receptors.her2_ish_label,
            ki67: receptors.ki67,
            grade: receptors.grade,
            sample_id,
            ctnm: Tnm::new(dx_date, "T1c", "N0", "M0"),
            neoadjuvant: false,
            surgery: None,
            yptnm: None,
            pcr: None,
            admins: Vec::new(),
            rt: Vec::new(),
            recurrence: None,
            death: None,
            labs: Vec::new(),
            imaging: Vec::new(),
            neoadj_study: None,
            boost_study: None,
        };
        treat(&mut r, &mut p);
        follow_up(&mut r, &mut p);
        p.labs = labs(&mut Rng::stream(self.seed, number, STREAM_LABS), &p);
        p.imaging = imaging(
            self.seed,
            &mut Rng::stream(self.seed, number, STREAM_IDS),
            &p,
        );
        p
    }
}

struct Receptors {
    er: u8,
    pr: u8,
    er_allred: Option<u8>,
    pr_allred: Option<u8>,
    her2_ihc: u8,
    her2_ish: Option<bool>,
    her2_ish_label: &'static str,
    ki67: u8,
    grade: u8,
}

/// Positive receptor percentage as pathologists report it: 10..=100 by tens, sometimes low
/// (1..=9).
fn positive_pct(r: &mut Rng, low_chance: f64) -> u8 {
    if r.chance(low_chance) {
        r.range(1, 9) as u8
    } else {
        (10 * r.bell(2, 10)) as u8
    }
}

fn allred(r: &mut Rng, pct: u8) -> u8 {
    let proportion = match pct {
        0 => 0,
        1..=10 => 2,
        11..=33 => 3,
        34..=66 => 4,
        _ => 5,
    };
    if proportion == 0 {
        0
    } else {
        proportion + r.range(1, 3) as u8
    }
}

fn receptors(r: &mut Rng, subtype: Subtype) -> Receptors {
    let (er, pr, ki67, grade) = match subtype {
        Subtype::LuminalA => {
            let er = positive_pct(r, 0.0).max(30);
            let pr = (10 * r.range(2, 10)) as u8;
            let ki = r.bell(2, 19) as u8;
            let grade = if r.chance(0.45) { 1 } else { 2 };
            (er, pr, ki, grade)
        }
        Subtype::LuminalBHer2Neg => {
            let er = positive_pct(r, 0.06);
            if r.chance(0.6) {
                let pr = if r.chance(0.3) {
                    0
                } else {
                    (10 * r.range(1, 10)) as u8
                };
                (
                    er,
                    pr,
                    r.bell(20, 60) as u8,
                    if r.chance(0.5) { 2 } else { 3 },
                )
            } else {
                let pr = if r.chance(0.5) {
                    0
                } else {
                    r.range(1, 15) as u8
                };
                (
                    er,
                    pr,
                    r.bell(5, 19) as u8,
                    if r.chance(0.1) { 1 } else { 2 },
                )
            }
        }
        Subtype::LuminalBHer2Pos => {
            let er = positive_pct(r, 0.08);
            let pr = if r.chance(0.35) {
                0
            } else {
                (10 * r.range(1, 9)) as u8
            };
            (
                er,
                pr,
                r.bell(10, 70) as u8,
                if r.chance(0.4) { 2 } else { 3 },
            )
        }
        Subtype::Her2Enriched => (
            0,
            0,
            r.bell(20, 80) as u8,
            if r.chance(0.3) { 2 } else { 3 },
        ),
        Subtype::TripleNegative => (
            0,
            0,
            r.bell(30, 90) as u8,
            if r.chance(0.15) { 2 } else { 3 },
        ),
    };
    let (her2_ihc, her2_ish) = if subtype.her2_positive() {
        if r.chance(0.75) {
            (3, None)
        } else {
            (2, Some(true))
        }
    } else {
        match r.weighted(&[40, 40, 20]) {
            0 => (0, None),
            1 => (1, None),
            _ => (2, Some(false)),
        }
    };
    let her2_ish_label = match her2_ish {
        Some(true) => *r.pick(crate::codes::HER2_ISH_POSITIVE),
        Some(false) => *r.pick(crate::codes::HER2_ISH_NEGATIVE),
        None => "",
    };
    let with_allred = r.chance(0.4);
    let er_allred = with_allred.then(|| allred(r, er));
    let pr_allred = with_allred.then(|| allred(r, pr));
    Receptors {
        er,
        pr,
        er_allred,
        pr_allred,
        her2_ihc,
        her2_ish,
        her2_ish_label,
        ki67,
        grade,
    }
}

fn t_index(t: &str) -> u8 {
    match t {
        "T0" | "Tis" => 0,
        "T2" => 2,
        "T3" => 3,
        t if t.starts_with("T1") => 1,
        _ => 4,
    }
}

fn n_index(n: &str) -> u8 {
    n.as_bytes().get(1).map_or(0, |b| b - b'0')
}

/// Body surface area (Mosteller) in m².
fn bsa(p: &Patient) -> f64 {
    (p.height_cm as f64 * (p.weight10 as f64 / 10.0) / 3600.0).sqrt()
}

/// Builder of the administrations of one patient (per-drug cycle counters).
struct Admins {
    weight10: i64,
    bsa: f64,
    gfr: i64,
    counters: [u32; 9],
    out: Vec<Admin>,
}

impl Admins {
    fn new(p: &Patient, gfr: i64) -> Admins {
        Admins {
            weight10: p.weight10,
            bsa: bsa(p),
            gfr,
            counters: [0; 9],
            out: Vec::new(),
        }
    }

    fn push(
        &mut self,
        date: NaiveDate,
        drug: usize,
        dose10: i64,
        setting: &'static str,
        regimen: &'static str,
    ) {
        self.push_supply(date, drug, dose10, setting, regimen, 0);
    }

    fn push_supply(
        &mut self,
        date: NaiveDate,
        drug: usize,
        dose10: i64,
        setting: &'static str,
        regimen: &'static str,
        supply_days: u32,
    ) {
        self.counters[drug] += 1;
        self.out.push(Admin {
            date,
            drug,
            dose10,
            cycle: self.counters[drug],
            setting,
            regimen,
            supply_days,
        });
    }

    /// Dose per m² in mg, as tenths of mg.
    fn per_m2(&self, mg: f64) -> i64 {
        (mg * self.bsa * 10.0).round() as i64
    }

    /// Dose per kg of body weight, as tenths of mg.
    fn per_kg(&self, mg: i64) -> i64 {
        mg * self.weight10
    }

    /// Carboplatin by the Calvert formula, AUC in tenths.
    fn carboplatin(&self, auc10: i64) -> i64 {
        auc10 * (self.gfr + 25)
    }

    /// AC x4 every 21 days from `start`; returns the day after the last cycle's interval.
    fn ac(&mut self, start: NaiveDate, setting: &'static str, regimen: &'static str) -> NaiveDate {
        for k in 0..4 {
            let d = plus(start, 21 * k);
            let doxo = self.per_m2(60.0);
            let cycl = self.per_m2(600.0);
            self.push(d, DOXO, doxo, setting, regimen);
            self.push(d, CYCL, cycl, setting, regimen);
        }
        plus(start, 84)
    }

    /// Weekly paclitaxel x12 (with weekly carboplatin AUC 1.5 when asked).
    fn weekly_t(
        &mut self,
        start: NaiveDate,
        carbo: bool,
        setting: &'static str,
        regimen: &'static str,
    ) -> NaiveDate {
        for k in 0..12 {
            let d = plus(start, 7 * k);
            let pacl = self.per_m2(80.0);
            self.push(d, PACL, pacl, setting, regimen);
            if carbo {
                let c = self.carboplatin(15);
                self.push(d, CARB, c, setting, regimen);
            }
        }
        plus(start, 84)
    }

    /// Trastuzumab every 21 days, `n` doses from `start` (loading dose on the first ever).
    fn trastuzumab(
        &mut self,
        start: NaiveDate,
        n: i64,
        pertuzumab: bool,
        setting: &'static str,
        regimen: &'static str,
    ) {
        for k in 0..n {
            let d = plus(start, 21 * k);
            let first = self.counters[TRAS] == 0;
            let dose = self.per_kg(if first { 8 } else { 6 });
            self.push(d, TRAS, dose, setting, regimen);
            if pertuzumab {
                let first_p = self.counters[PERT] == 0;
                self.push(d, PERT, if first_p { 8400 } else { 4200 }, setting, regimen);
            }
        }
    }

    /// TCHP x6 every 21 days.
    fn tchp(&mut self, start: NaiveDate, setting: &'static str) -> NaiveDate {
        for k in 0..6 {
            let d = plus(start, 21 * k);
            let doce = self.per_m2(75.0);
            let carb = self.carboplatin(60);
            self.push(d, DOCE, doce, setting, "TCHP");
            self.push(d, CARB, carb, setting, "TCHP");
            self.trastuzumab(d, 1, true, setting, "TCHP");
        }
        plus(start, 126)
    }

    fn last_date(&self) -> Option<NaiveDate> {
        self.out.iter().map(|a| a.date).max()
    }
}

/// Diagnosis work-up, staging, treatment and study enrolment.
fn treat(r: &mut Rng, p: &mut Patient) {
    let subtype = p.subtype;
    let m1 = r.chance(0.03);
    let neo_p = match subtype {
        Subtype::LuminalA => 0.10,
        Subtype::LuminalBHer2Neg => 0.28,
        _ => 0.60,
    };
    let neoadjuvant = !m1 && r.chance(neo_p);
    let t1 = |r: &mut Rng| r.pick_weighted(&[(10, "T1a"), (25, "T1b"), (65, "T1c")]);
    let t4 = |r: &mut Rng| r.pick_weighted(&[(70, "T4b"), (30, "T4d")]);
    let t = match r.weighted(&if neoadjuvant {
        [12, 55, 25, 8]
    } else {
        [60, 35, 4, 1]
    }) {
        0 => {
            if neoadjuvant {
                "T1c"
            } else {
                t1(r)
            }
        }
        1 => "T2",
        2 => "T3",
        _ => t4(r),
    };
    let n = ["N0", "N1", "N2", "N3"][r.weighted(&if neoadjuvant {
        [40, 40, 12, 8]
    } else {
        [70, 25, 4, 1]
    })];
    p.ctnm = Tnm::new(p.dx_date, t, n, if m1 { "M1" } else { "M0" });
    p.neoadjuvant = neoadjuvant;
    let gfr = r.range(70, 110);
    let mut a = Admins::new(p, gfr);
    let age = p.age_at_dx;
    let young_or_male = age < 50 || p.sex == Sex::Male;

    if m1 {
        let start = weekday_on_or_after(plus(p.dx_date, r.range(14, 28)));
        if subtype.her2_positive() {
            for k in 0..6 {
                let d = plus(start, 21 * k);
                let doce = a.per_m2(75.0);
                a.push(d, DOCE, doce, "palliative", "THP");
                a.trastuzumab(d, 1, true, "palliative", "THP");
            }
            a.trastuzumab(plus(start, 126), r.range(6, 24), true, "palliative", "HP");
        } else if subtype == Subtype::TripleNegative {
            a.weekly_t(start, false, "palliative", "T weekly");
        } else {
            let (drug, reg, dose) = if young_or_male {
                (TAMO, "TAM", 200)
            } else {
                (LETR, "LET", 25)
            };
            for k in 0..r.range(4, 16) {
                a.push_supply(plus(start, 90 * k), drug, dose, "palliative", reg, 90);
            }
        }
        a.out.sort_by_key(|x| x.date);
        p.admins = a.out;
        return;
    }

    // Neoadjuvant chemotherapy, then surgery.
    let mut neo_start = None;
    let surgery_date = if neoadjuvant {
        let start = weekday_on_or_after(plus(p.dx_date, r.range(14, 35)));
        neo_start = Some(start);
        let end = match subtype {
            s if s.her2_positive() => a.tchp(start, "neoadjuvant"),
            Subtype::TripleNegative => {
                let next = a.ac(start, "neoadjuvant", "AC-TCb");
                a.weekly_t(next, true, "neoadjuvant", "AC-TCb")
            }
            _ => {
                let next = a.ac(start, "neoadjuvant", "AC-T");
                a.weekly_t(next, false, "neoadjuvant", "AC-T")
            }
        };
        weekday_on_or_after(plus(end, r.range(14, 35)))
    } else {
        weekday_on_or_after(plus(p.dx_date, r.range(14, 45)))
    };
    let ti = t_index(t);
    let mastectomy_p =
        [0.2, 0.2, 0.4, 0.75, 0.95][ti as usize] * if neoadjuvant { 0.8 } else { 1.0 };
    let mastectomy = r.chance(mastectomy_p);
    let axilla = if n == "N0" { "SLNB" } else { "ALND" };
    p.surgery = Some(Surgery {
        date: surgery_date,
        mastectomy,
        axilla,
    });

    if neoadjuvant {
        let pcr_p = match subtype {
            Subtype::TripleNegative => 0.35,
            s if s.her2_positive() => 0.45,
            _ => 0.10,
        };
        let pcr = r.chance(pcr_p);
        p.pcr = Some(pcr);
        let (yt, yn) = if pcr {
            (if r.chance(0.15) { "Tis" } else { "T0" }, "N0")
        } else {
            let options: &[&'static str] = match ti {
                0 | 1 => &["T0", "T1a", "T1b", "T1c"],
                2 => &["T0", "T1a", "T1b", "T1c", "T2"],
                _ => &["T0", "T1b", "T1c", "T2", "T3"],
            };
            let yt = *r.pick(options);
            let max_n = n_index(n).max(1);
            let mut yn = ["N0", "N1", "N2", "N3"][r.range(0, i64::from(max_n)) as usize];
            if yt == "T0" && yn == "N0" {
                yn = "N1";
            }
            (yt, yn)
        };
        p.yptnm = Some(Tnm::new(surgery_date, yt, yn, "M0"));
    }

    // Adjuvant systemic therapy.
    let small_n0 = n == "N0" && matches!(t, "T1a" | "T1b");
    let post = weekday_on_or_after(plus(surgery_date, r.range(28, 49)));
    let mut chemo_end = neo_start.and_then(|_| a.last_date());
    if neoadjuvant && subtype.her2_positive() {
        // Complete a year of anti-HER2 therapy (18 trastuzumab doses in all).
        let done = i64::from(a.counters[TRAS]);
        let start = weekday_on_or_after(plus(surgery_date, r.range(21, 35)));
        let pertu = n != "N0";
        a.trastuzumab(
            start,
            18 - done,
            pertu,
            "adjuvant",
            if pertu { "HP" } else { "H" },
        );
    } else if !neoadjuvant {
        let chemo_p = match subtype {
            Subtype::TripleNegative => {
                if small_n0 {
                    0.3
                } else {
                    0.9
                }
            }
            Subtype::LuminalBHer2Pos | Subtype::Her2Enriched => 0.95,
            Subtype::LuminalBHer2Neg => 0.5,
            Subtype::LuminalA => {
                if n == "N0" {
                    0.03
                } else {
                    0.25
                }
            }
        };
        if r.chance(chemo_p) {
            if subtype.her2_positive() {
                if n == "N0" && ti == 1 {
                    a.trastuzumab(post, 4, false, "adjuvant", "TH");
                    let end = a.weekly_t(post, false, "adjuvant", "TH");
                    chemo_end = Some(end);
                    a.trastuzumab(end, 14, false, "adjuvant", "H");
                } else {
                    let next = a.ac(post, "adjuvant", "AC-TH");
                    a.trastuzumab(next, 4, false, "adjuvant", "AC-TH");
                    let end = a.weekly_t(next, false, "adjuvant", "AC-TH");
                    chemo_end = Some(end);
                    a.trastuzumab(end, 14, false, "adjuvant", "H");
                }
            } else {
                let next = a.ac(post, "adjuvant", "AC-T");
                chemo_end = Some(a.weekly_t(next, false, "adjuvant", "AC-T"));
            }
        }
    }

    // Radiotherapy.
    let rt_needed = if mastectomy {
        n != "N0" || ti >= 3
    } else {
        !(age >= 75 && subtype == Subtype::LuminalA && r.chance(0.5))
    };
    let mut rt_end = None;
    if rt_needed {
        let after = chemo_end.map_or(surgery_date, |c| c.max(surgery_date));
        let start = weekday_on_or_after(plus(after, r.range(28, 42)));
        let hypo = r.chance(if p.dx_date.year() >= 2015 { 0.85 } else { 0.3 });
        let (dose, fractions) = if hypo { (4005, 15) } else { (5000, 25) };
        let end = last_fraction(start, fractions);
        let target = if mastectomy { "CHEST_WALL" } else { "BREAST" };
        p.rt.push(RtCourse {
            start,
            end,
            target,
            dose_cgy: dose,
            fractions,
        });
        rt_end = Some(end);
        let mut boost = !mastectomy && (age < 50 || p.grade == 3) && r.chance(0.7);
        let window = ymd(2016, 1, 1)..=ymd(2020, 12, 31);
        if !mastectomy && window.contains(&start) && r.chance(0.5) {
            boost = r.chance(0.5);
            let consent = plus(
                surgery_date,
                r.range(5, (start - surgery_date).num_days().max(6) - 1),
            );
            let randomisation = plus(consent, r.range(0, 3))
                .min(plus(start, -1))
                .max(consent);
            p.boost_study = Some(enrol(
                r,
                p,
                consent,
                randomisation,
                if boost { "Boost" } else { "No boost" },
            ));
        }
        if boost {
            let bstart = weekday_on_or_after(plus(end, 1));
            let (bdose, bfr) = if hypo { (1000, 5) } else { (1600, 8) };
            let bend = last_fraction(bstart, bfr);
            p.rt.push(RtCourse {
                start: bstart,
                end: bend,
                target: "TUMOUR_BED",
                dose_cgy: bdose,
                fractions: bfr,
            });
            rt_end = Some(bend);
        }
    }

    // Endocrine therapy: 5 years, dispensed every 90 days.
    if subtype.hormone_positive() {
        let after = [Some(surgery_date), chemo_end, rt_end]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(surgery_date);
        let start = weekday_on_or_after(plus(after, r.range(7, 28)));
        let (drug, reg, dose) = if young_or_male {
            (TAMO, "TAM", 200)
        } else {
            (LETR, "LET", 25)
        };
        for k in 0..20 {
            a.push_supply(plus(start, 90 * k), drug, dose, "adjuvant", reg, 90);
        }
    }

    // NEOADJ-2019: neoadjuvant patients diagnosed 2019-2021.
    if let Some(start) = neo_start {
        if (2019..=2021).contains(&p.dx_date.year()) && r.chance(0.7) {
            let room = (start - p.dx_date).num_days().max(2);
            let consent = plus(p.dx_date, r.range(1, room - 1));
            let randomisation = plus(consent, r.range(0, 5))
                .min(plus(start, -1))
                .max(consent);
            let arm = if r.chance(0.5) { "Arm A" } else { "Arm B" };
            p.neoadj_study = Some(enrol(r, p, consent, randomisation, arm));
        }
    }
    a.out.sort_by_key(|x| x.date);
    p.admins = a.out;
}

fn enrol(
    r: &mut Rng,
    p: &Patient,
    consent: NaiveDate,
    randomisation: NaiveDate,
    arm: &'static str,
) -> Enrolment {
    let title = if p.sex == Sex::Female { "Mme" } else { "M." };
    let doctor = *r.pick(names::CLINICIANS);
    let (comment, comment_names) = if r.chance(0.15) {
        match r.below(4) {
            0 => (
                format!("Dr. {doctor} called {title} {}", p.last_name),
                vec![doctor, p.last_name],
            ),
            1 => (
                format!("{title} {} prefers morning visits", p.last_name),
                vec![p.last_name],
            ),
            2 => (
                format!(
                    "Spoke with {} {} about nausea - Dr. {doctor}",
                    p.first_name, p.last_name
                ),
                vec![p.first_name, p.last_name, doctor],
            ),
            _ => (
                format!("Dr. {doctor}: patient agreed to an extra blood sample"),
                vec![doctor],
            ),
        }
    } else {
        ((*r.pick(names::PLAIN_COMMENTS)).to_string(), Vec::new())
    };
    Enrolment {
        consent,
        randomisation,
        randomisation_as_text: r.chance(0.3),
        arm,
        comment,
        comment_names,
    }
}

/// Recurrence, death, and truncation of everything at death and at the cut-off.
fn follow_up(r: &mut Rng, p: &mut Patient) {
    let cutoff = cutoff_date();
    let subtype = p.subtype;
    let mut recurrence = None;
    if let Some(s) = &p.surgery {
        let mut risk = match subtype {
            Subtype::LuminalA => 0.12,
            Subtype::LuminalBHer2Neg => 0.20,
            Subtype::LuminalBHer2Pos => 0.18,
            Subtype::Her2Enriched => 0.24,
            Subtype::TripleNegative => 0.34,
        };
        if p.ctnm.n != "N0" {
            risk *= 1.5;
        }
        if p.pcr == Some(true) {
            risk *= 0.35;
        }
        if r.chance(risk) {
            let days = match subtype {
                Subtype::TripleNegative | Subtype::Her2Enriched => 150 + r.bell(0, 1500),
                _ => 300 + r.bell(0, 3300),
            };
            let date = plus(s.date, days);
            let (kind, site, icd10) = match r.weighted(&[25, 15, 60]) {
                0 => (
                    "local",
                    if s.mastectomy { "chest wall" } else { "breast" },
                    p.icd10,
                ),
                1 => ("regional", "axilla", "C77.3"),
                _ => r.pick_weighted(&[
                    (45, ("distant", "bone", "C79.5")),
                    (20, ("distant", "liver", "C78.7")),
                    (25, ("distant", "lung", "C78.0")),
                    (10, ("distant", "brain", "C79.3")),
                ]),
            };
            recurrence = Some(Recurrence {
                date,
                kind,
                site,
                icd10,
            });
        }
    }
    let mut deaths: Vec<Death> = Vec::new();
    let other_p = match p.age_at_dx {
        a if a < 50 => 0.01,
        50..=64 => 0.025,
        65..=74 => 0.055,
        _ => 0.14,
    };
    if r.chance(other_p) {
        let cause = *r.pick(&["I21.9", "I64", "J18.9", "C34.9", "F03", "I50.9", "R99"]);
        deaths.push(Death {
            date: plus(p.dx_date, r.range(365, 5400)),
            cause,
        });
    }
    if let Some(rec) = recurrence.as_ref().filter(|x| x.kind == "distant") {
        if r.chance(0.5) {
            deaths.push(Death {
                date: plus(rec.date, r.range(90, 1500)),
                cause: "C50.9",
            });
        }
    }
    if p.ctnm.m == "M1" && r.chance(0.55) {
        deaths.push(Death {
            date: plus(p.dx_date, r.range(150, 1800)),
            cause: "C50.9",
        });
    }
    p.death = deaths
        .into_iter()
        .min_by_key(|d| d.date)
        .filter(|d| d.date <= cutoff);
    let last = p.last_day();
    // An event is observed when it happened by the cut-off and before death.
    let observed = |d: NaiveDate| d <= cutoff && p.death.as_ref().is_none_or(|x| d < x.date);
    p.recurrence = recurrence.filter(|x| observed(x.date));
    if p.surgery.as_ref().is_some_and(|s| !observed(s.date)) {
        p.surgery = None;
        p.yptnm = None;
        p.pcr = None;
        p.boost_study = None;
    }
    let surgery_done = p.surgery.is_some();
    let recurrence_date = p.recurrence.as_ref().map(|x| x.date);
    p.admins.retain(|a| {
        observed(a.date)
            && (a.setting != "adjuvant" || surgery_done)
            && recurrence_date.is_none_or(|rd| a.setting == "palliative" || a.date < rd)
    });
    p.rt.retain(|c| {
        surgery_done
            && c.end <= last
            && c.end <= cutoff
            && recurrence_date.is_none_or(|rd| c.start < rd)
    });
    if p.rt.is_empty() {
        p.boost_study = None;
    }
    if let Some(e) = &p.neoadj_study {
        if !p
            .admins
            .iter()
            .any(|a| a.setting == "neoadjuvant" && a.date >= e.randomisation)
        {
            p.neoadj_study = None;
        }
    }
}

/// About 100 lab results per patient across follow-up: draws of HB, WBC, PLT, CREAT, ALT, and
/// CA15-3 at every other draw.
fn labs(r: &mut Rng, p: &Patient) -> Vec<Lab> {
    let start = plus(p.dx_date, -10);
    let end = plus(p.last_day(), -1).min(cutoff_date());
    let span = (end - start).num_days().max(1);
    let draws = r.range(15, 21);
    let segment = (span / draws).max(1);
    let distant = p
        .recurrence
        .as_ref()
        .filter(|x| x.kind == "distant")
        .map(|x| x.date);
    let mut out = Vec::with_capacity(draws as usize * 6);
    let mut chemo_days = p
        .admins
        .iter()
        .filter(|a| a.supply_days == 0)
        .map(|a| a.date)
        .peekable();
    for i in 0..draws {
        let date = plus(start, i * segment + r.range(0, segment - 1));
        while chemo_days.peek().is_some_and(|d| *d < plus(date, -21)) {
            chemo_days.next();
        }
        let on_chemo = chemo_days.peek().is_some_and(|d| *d <= date);
        let progressing = distant.is_some_and(|d| d <= date) || p.ctnm.m == "M1";
        let (hb, wbc, plt, alt) = if on_chemo {
            (
                r.bell(90, 122),
                r.bell(18, 70),
                r.bell(90, 300),
                r.bell(12, 70),
            )
        } else {
            (
                r.bell(118, 152),
                r.bell(40, 100),
                r.bell(160, 380),
                r.bell(9, 38),
            )
        };
        let creat = r.bell(55, 105);
        out.push(Lab {
            date,
            code: 0,
            value: hb,
            decimals: 1,
        });
        out.push(Lab {
            date,
            code: 1,
            value: wbc,
            decimals: 1,
        });
        out.push(Lab {
            date,
            code: 2,
            value: plt,
            decimals: 0,
        });
        out.push(Lab {
            date,
            code: 3,
            value: creat,
            decimals: 2,
        });
        out.push(Lab {
            date,
            code: 4,
            value: alt,
            decimals: 0,
        });
        if r.chance(0.5) {
            let ca = if progressing {
                r.bell(400, 2500)
            } else {
                r.bell(60, 280)
            };
            out.push(Lab {
                date,
                code: 5,
                value: ca,
                decimals: 1,
            });
        }
    }
    out
}

/// A DICOM UID under the UUID-derived root `2.25`.
pub(crate) fn dicom_uid(seed: u64, number: u64, tag: u64) -> String {
    let hi = hash(&[seed, number, tag, 1]);
    let lo = hash(&[seed, number, tag, 2]);
    format!("2.25.{}", ((u128::from(hi) << 64) | u128::from(lo)) >> 1)
}

/// An opaque UUID-shaped id (version 4 layout) for FHIR resources.
pub(crate) fn opaque_id(seed: u64, number: u64, tag: u64, index: u64) -> String {
    let hi = hash(&[seed, number, tag, index, 11]);
    let lo = hash(&[seed, number, tag, index, 12]);
    let hi = (hi & 0xFFFF_FFFF_FFFF_0FFF) | 0x0000_0000_0000_4000;
    let lo = (lo & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        hi >> 32,
        (hi >> 16) & 0xFFFF,
        hi & 0xFFFF,
        lo >> 48,
        lo & 0xFFFF_FFFF_FFFF
    )
}

fn imaging(seed: u64, r: &mut Rng, p: &Patient) -> Vec<Imaging> {
    let mut out = Vec::new();
    let mut add =
        |date: NaiveDate, modality: &'static str, description: &'static str, instances: u32| {
            let tag = out.len() as u64;
            out.push(Imaging {
                date,
                modality,
                description,
                study_uid: dicom_uid(seed, p.number, 100 + tag),
                series_uid: dicom_uid(seed, p.number, 200 + tag),
                instances,
            });
        };
    add(
        plus(p.dx_date, -r.range(3, 20)),
        "MG",
        "Mammographie bilatérale",
        4,
    );
    if p.neoadjuvant {
        add(
            plus(p.dx_date, r.range(1, 10)),
            "MR",
            "IRM mammaire",
            r.range(120, 200) as u32,
        );
        if let Some(s) = &p.surgery {
            add(
                plus(s.date, -r.range(7, 20)),
                "MR",
                "IRM mammaire post-chimiothérapie",
                r.range(120, 200) as u32,
            );
        }
    }
    if let Some(c) = p.rt.first() {
        add(
            plus(c.start, -r.range(7, 14)),
            "CT",
            "CT de planification RT",
            r.range(80, 150) as u32,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_groups() {
        assert_eq!(stage_group("T1c", "N0", "M0"), "IA");
        assert_eq!(stage_group("T2", "N0", "M0"), "IIA");
        assert_eq!(stage_group("T2", "N1", "M0"), "IIB");
        assert_eq!(stage_group("T3", "N1", "M0"), "IIIA");
        assert_eq!(stage_group("T4d", "N0", "M0"), "IIIB");
        assert_eq!(stage_group("T1a", "N3", "M0"), "IIIC");
        assert_eq!(stage_group("T2", "N1", "M1"), "IV");
        assert_eq!(stage_group("T0", "N0", "M0"), "");
        assert_eq!(stage_group("Tis", "N0", "M0"), "0");
        assert_eq!(stage_group("T0", "N1", "M0"), "IIA");
    }

    #[test]
    fn st_gallen() {
        assert_eq!(classify(90, 50, false, 10), Subtype::LuminalA);
        assert_eq!(classify(90, 10, false, 10), Subtype::LuminalBHer2Neg);
        assert_eq!(classify(90, 50, false, 25), Subtype::LuminalBHer2Neg);
        assert_eq!(classify(5, 0, true, 25), Subtype::LuminalBHer2Pos);
        assert_eq!(classify(0, 0, true, 25), Subtype::Her2Enriched);
        assert_eq!(classify(0, 0, false, 60), Subtype::TripleNegative);
        assert!(her2_positive(3, None));
        assert!(her2_positive(2, Some(true)));
        assert!(!her2_positive(2, Some(false)));
        assert!(!her2_positive(1, None));
    }

    #[test]
    fn patients_are_consistent() {
        let cohort = Cohort::new(7);
        for number in 1..=3000 {
            let p = cohort.patient(number);
            assert_eq!(classify(p.er, p.pr, p.her2_positive(), p.ki67), p.subtype);
            assert!(
                (MIN_AGE..=MAX_AGE).contains(&p.age_at_dx),
                "age {}",
                p.age_at_dx
            );
            assert!((FIRST_DX_YEAR..=LAST_DX_YEAR).contains(&p.dx_date.year()));
            assert!(crate::niss::niss_is_valid(&p.niss));
            assert_eq!(crate::niss::niss_is_male(&p.niss), p.sex == Sex::Male);
            if p.pcr.is_some() {
                assert!(p.neoadjuvant && p.surgery.is_some());
            }
            if let Some(s) = &p.surgery {
                assert!(s.date > p.dx_date);
                for a in p.admins.iter().filter(|a| a.setting == "neoadjuvant") {
                    assert!(a.date < s.date);
                }
            }
            if !p.her2_positive() {
                assert!(p.admins.iter().all(|a| a.drug != TRAS && a.drug != PERT));
            }
            for a in &p.admins {
                assert!(a.date <= cutoff_date() && a.date >= p.dx_date);
            }
            if let Some(d) = &p.death {
                assert!(d.date <= cutoff_date());
                assert!(p.labs.iter().all(|l| l.date < d.date));
            }
            let mut dates: Vec<_> = p.labs.iter().map(|l| l.date).collect();
            dates.dedup();
            assert!(
                dates.windows(2).all(|w| w[0] < w[1]),
                "lab draws strictly increasing"
            );
        }
    }

    #[test]
    fn national_numbers_and_mrns_are_unique() {
        let cohort = Cohort::new(3);
        let mut niss = std::collections::HashSet::new();
        let mut mrn = std::collections::HashSet::new();
        for number in 1..=20_000 {
            let p = cohort.patient(number);
            assert!(niss.insert(p.niss.clone()), "duplicate national number");
            assert!(mrn.insert(p.mrn.clone()), "duplicate MRN");
        }
        assert!(cohort.max_patient_number() > 1_000_000);
    }

    #[test]
    fn opaque_ids_look_like_uuids() {
        let id = opaque_id(1, 2, 3, 4);
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(dicom_uid(1, 2, 3).len() <= 64);
    }
}
