//! Local codes, code systems and file headers of the synthetic sources, public so that tests
//! and mapping files can be checked against them.

/// A drug of the hospital formulary: local code, label as printed by the HIS, ATC code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drug {
    /// Local code in `systemic_therapy.csv` (e.g. `CYT-DOXO`).
    pub code: &'static str,
    /// Label as the HIS prints it (French, with accents).
    pub label: &'static str,
    /// WHO ATC code.
    pub atc: &'static str,
    /// ATC display name.
    pub atc_display: &'static str,
    /// Route as the HIS prints it (`IV`, `PO`).
    pub route: &'static str,
}

pub(crate) const DOXO: usize = 0;
pub(crate) const CYCL: usize = 1;
pub(crate) const PACL: usize = 2;
pub(crate) const DOCE: usize = 3;
pub(crate) const CARB: usize = 4;
pub(crate) const TRAS: usize = 5;
pub(crate) const PERT: usize = 6;
pub(crate) const TAMO: usize = 7;
pub(crate) const LETR: usize = 8;

/// The formulary used by the generator.
pub const DRUGS: &[Drug] = &[
    Drug {
        code: "CYT-DOXO",
        label: "Doxorubicine",
        atc: "L01DB01",
        atc_display: "doxorubicin",
        route: "IV",
    },
    Drug {
        code: "CYT-CYCL",
        label: "Cyclophosphamide",
        atc: "L01AA01",
        atc_display: "cyclophosphamide",
        route: "IV",
    },
    Drug {
        code: "CYT-PACL",
        label: "Paclitaxel",
        atc: "L01CD01",
        atc_display: "paclitaxel",
        route: "IV",
    },
    Drug {
        code: "CYT-DOCE",
        label: "Docétaxel",
        atc: "L01CD02",
        atc_display: "docetaxel",
        route: "IV",
    },
    Drug {
        code: "CYT-CARB",
        label: "Carboplatine",
        atc: "L01XA02",
        atc_display: "carboplatin",
        route: "IV",
    },
    Drug {
        code: "MAB-TRAS",
        label: "Trastuzumab",
        atc: "L01FD01",
        atc_display: "trastuzumab",
        route: "IV",
    },
    Drug {
        code: "MAB-PERT",
        label: "Pertuzumab",
        atc: "L01FD02",
        atc_display: "pertuzumab",
        route: "IV",
    },
    Drug {
        code: "HOR-TAMO",
        label: "Tamoxifène",
        atc: "L02BA01",
        atc_display: "tamoxifen",
        route: "PO",
    },
    Drug {
        code: "HOR-LETR",
        label: "Létrozole",
        atc: "L02BG04",
        atc_display: "letrozole",
        route: "PO",
    },
];

/// Regimen labels in `systemic_therapy.csv`.
pub const REGIMENS: &[&str] = &[
    "AC-T", "AC-TCb", "AC-TH", "TCHP", "TH", "HP", "H", "THP", "T weekly", "TAM", "LET",
];

/// Therapy settings in `systemic_therapy.csv`.
pub const SETTINGS: &[&str] = &["neoadjuvant", "adjuvant", "palliative"];

/// Local lab codes of `pathology.csv`.
pub const PATHOLOGY_CODES: &[&str] = &[
    "ER_PCT",
    "PR_PCT",
    "ER_ALLRED",
    "PR_ALLRED",
    "HER2_IHC",
    "HER2_ISH",
    "KI67_PCT",
    "GRADE",
];

/// Local lab codes and units of `measurements.csv`.
pub const MEASUREMENT_CODES: &[(&str, &str)] = &[
    ("HB", "g/dL"),
    ("WBC", "10^9/L"),
    ("PLT", "10^9/L"),
    ("CREAT", "mg/dL"),
    ("ALT", "U/L"),
    ("CA15-3", "U/mL"),
];

/// `HER2_ISH` results meaning positive (the lab system mixes languages).
pub const HER2_ISH_POSITIVE: &[&str] = &["pos", "positief", "positif"];
/// `HER2_ISH` results meaning negative.
pub const HER2_ISH_NEGATIVE: &[&str] = &["neg", "negatief", "négatif"];

/// Lab codes written by the `unknown_code` dirt (never in the code lists above).
pub const UNKNOWN_LAB_CODES: &[&str] = &["LAB-9999", "KI67_IDX", "HER2_CISH", "XX_UNK"];
/// Drug codes written by the `unknown_code` dirt.
pub const UNKNOWN_DRUG_CODES: &[&str] = &["CYT-ZZZZ", "STUDY-DRUG-07", "MAB-UNKN"];
/// Dates written by the `bad_date` dirt: none parses as a `dd/mm/yyyy` calendar date. Some
/// are impossible, some are cut short or unpadded the way exports truncate them, one has a
/// two-digit year.
pub const BAD_DATES: &[&str] = &[
    "31/02/2019",
    "2019-13-01",
    "?",
    "00/00/0000",
    "32/01/2020",
    "15/13/2018",
    "1/02/2019",
    "01/2/2019",
    "01/02/19",
    "01/02/201",
];

/// Surgery local codes and labels.
pub const SURGERY_CODES: &[(&str, &str)] = &[
    ("CHIR-BCS", "Tumorectomie élargie"),
    ("CHIR-MAST", "Mastectomie totale"),
];

/// Radiotherapy targets.
pub const RT_TARGETS: &[&str] = &["BREAST", "CHEST_WALL", "TUMOUR_BED"];

/// Recurrence types.
pub const RECURRENCE_TYPES: &[&str] = &["local", "regional", "distant"];

/// Header of every HIS table, in file order.
pub const HIS_TABLES: &[(&str, &[&str])] = &[
    (
        "patients.csv",
        &[
            "patient_nr",
            "niss",
            "last_name",
            "first_name",
            "birth_date",
            "sex",
            "postcode",
            "city",
        ],
    ),
    (
        "diagnoses.csv",
        &[
            "patient_nr",
            "diagnosis_date",
            "icd10",
            "laterality",
            "morphology",
            "topography",
        ],
    ),
    (
        "pathology.csv",
        &[
            "patient_nr",
            "sample_id",
            "sample_date",
            "lab_code",
            "result",
            "unit",
        ],
    ),
    (
        "tnm.csv",
        &["patient_nr", "tnm_date", "tnm_kind", "t", "n", "m", "stage"],
    ),
    (
        "surgery.csv",
        &[
            "patient_nr",
            "surgery_date",
            "procedure_code",
            "procedure_label",
            "laterality",
            "axilla",
        ],
    ),
    (
        "systemic_therapy.csv",
        &[
            "patient_nr",
            "admin_date",
            "drug_code",
            "drug_label",
            "dose",
            "unit",
            "route",
            "cycle",
            "setting",
            "regimen",
        ],
    ),
    (
        "radiotherapy.csv",
        &[
            "patient_nr",
            "start_date",
            "end_date",
            "target",
            "laterality",
            "total_dose_gy",
            "fractions",
        ],
    ),
    (
        "recurrences.csv",
        &["patient_nr", "recurrence_date", "recurrence_type", "site"],
    ),
    ("deaths.csv", &["patient_nr", "death_date", "cause_icd10"]),
    (
        "measurements.csv",
        &["patient_nr", "sample_date", "lab_code", "value", "unit"],
    ),
];

/// FHIR resource types written (one `<Type>.ndjson` each).
pub const FHIR_TYPES: &[&str] = &[
    "Patient",
    "Encounter",
    "Condition",
    "Specimen",
    "Observation",
    "DiagnosticReport",
    "Procedure",
    "MedicationAdministration",
    "ImagingStudy",
];

/// Identifier system of the Belgian national number in FHIR.
pub const SSIN_SYSTEM: &str = "https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/ssin";
/// SNOMED CT.
pub const SNOMED: &str = "http://snomed.info/sct";
/// LOINC.
pub const LOINC: &str = "http://loinc.org";
/// ICD-10 (WHO).
pub const ICD10: &str = "http://hl7.org/fhir/sid/icd-10";
/// ICD-O-3.
pub const ICDO3: &str = "http://terminology.hl7.org/CodeSystem/icd-o-3";
/// WHO ATC.
pub const ATC: &str = "http://www.whocc.no/atc";
/// UCUM.
pub const UCUM: &str = "http://unitsofmeasure.org";
/// DICOM controlled terminology (modalities).
pub const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";

/// Names of the study sheets in `study/study_nurse.xlsx`.
pub const STUDY_SHEETS: &[&str] = &["NEOADJ-2019", "RT-BOOST"];
/// Row (0-based) of the table header in every study sheet; data follow it.
pub const STUDY_HEADER_ROW: u32 = 3;
