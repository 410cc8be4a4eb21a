//! FHIR R4 Bulk Data export: one `<ResourceType>.ndjson` per type, one resource per line.
//!
//! Standard codes are used only where they are certain (SNOMED CT, LOINC, ATC, ICD-10,
//! ICD-O-3, DICOM modalities, HL7 terminology); everything else is coded in local code systems
//! under the hospital's own base URL (`https://<hospital>.example/fhir/CodeSystem/...`).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result};
use chrono::NaiveDate;
use serde_json::{json, Value};

use crate::codes::{ATC, DCM, DRUGS, FHIR_TYPES, ICD10, ICDO3, LOINC, SNOMED, SSIN_SYSTEM, UCUM};
use crate::cohort::{opaque_id, plus, Patient, Sex, Tnm};
use crate::dirt::{DirtCounts, DirtEvent, DirtKind, PatientDirt};
use crate::rng::hash;

pub(crate) const PATIENT: usize = 0;
pub(crate) const ENCOUNTER: usize = 1;
pub(crate) const CONDITION: usize = 2;
pub(crate) const SPECIMEN: usize = 3;
pub(crate) const OBSERVATION: usize = 4;
pub(crate) const DIAGNOSTIC_REPORT: usize = 5;
pub(crate) const PROCEDURE: usize = 6;
pub(crate) const MEDICATION_ADMINISTRATION: usize = 7;
pub(crate) const IMAGING_STUDY: usize = 8;

pub(crate) const PATHS: &[&str] = &[
    "fhir/Patient.ndjson",
    "fhir/Encounter.ndjson",
    "fhir/Condition.ndjson",
    "fhir/Specimen.ndjson",
    "fhir/Observation.ndjson",
    "fhir/DiagnosticReport.ndjson",
    "fhir/Procedure.ndjson",
    "fhir/MedicationAdministration.ndjson",
    "fhir/ImagingStudy.ndjson",
];

/// The id of a patient's Patient resource.
pub(crate) fn patient_id(seed: u64, number: u64) -> String {
    opaque_id(seed, number, PATIENT as u64 + 1, 1)
}

/// Export time of the bulk export (also the data cut-off day).
pub(crate) const TRANSACTION_TIME: &str = "2025-06-30T18:00:00+02:00";

fn date(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

/// Which resources of the run get an invalid code.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FhirDirtPlan {
    /// Patient number whose first Observation gets `status: "finalised"`.
    pub observation_status: Option<u64>,
    /// Patient number whose Patient resource gets `gender: "femme"`.
    pub patient_gender: Option<u64>,
}

pub(crate) struct Fhir {
    seed: u64,
    institution: String,
    base: String,
    outs: Vec<BufWriter<File>>,
    pub counts: Vec<u64>,
    pub dirt: Vec<DirtCounts>,
    plan: FhirDirtPlan,
    buf: Vec<u8>,
}

/// Ids of one patient's resources.
struct Ids<'a> {
    seed: u64,
    p: &'a Patient,
    next: [u64; 9],
}

impl Ids<'_> {
    fn next(&mut self, ty: usize) -> String {
        self.next[ty] += 1;
        opaque_id(self.seed, self.p.number, ty as u64 + 1, self.next[ty])
    }
}

impl Fhir {
    pub(crate) fn create(
        out: &Path,
        seed: u64,
        institution: &str,
        slug: &str,
        plan: FhirDirtPlan,
    ) -> Result<Fhir> {
        let dir = out.join("fhir");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let mut outs = Vec::new();
        for ty in FHIR_TYPES {
            let path = dir.join(format!("{ty}.ndjson"));
            let f =
                File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
            outs.push(BufWriter::with_capacity(1 << 16, f));
        }
        Ok(Fhir {
            seed,
            institution: institution.to_string(),
            base: format!("https://{slug}.example/fhir"),
            outs,
            counts: vec![0; FHIR_TYPES.len()],
            dirt: vec![DirtCounts::default(); FHIR_TYPES.len()],
            plan,
            buf: Vec::with_capacity(4096),
        })
    }

    /// Identifier system of the hospital MRN.
    pub(crate) fn mrn_system(&self) -> String {
        format!("{}/NamingSystem/mrn", self.base)
    }

    fn cs(&self, name: &str) -> String {
        format!("{}/CodeSystem/{name}", self.base)
    }

    fn sd(&self, name: &str) -> String {
        format!("{}/StructureDefinition/{name}", self.base)
    }

    fn local(&self, cs: &str, code: &str, display: &str) -> Value {
        json!({"system": self.cs(cs), "code": code, "display": display})
    }

    /// `meta.lastUpdated`: the resource's day at a pseudo-random office hour (UTC).
    fn meta(&self, p: &Patient, day: NaiveDate, salt: u64) -> Value {
        let h = hash(&[self.seed, p.number, salt]);
        let secs = 7 * 3600 + h % (11 * 3600);
        let day = day.min(crate::cohort::cutoff_date());
        json!({"lastUpdated": format!("{}T{:02}:{:02}:{:02}Z", date(day), secs / 3600, secs / 60 % 60, secs % 60)})
    }

    fn emit(
        &mut self,
        ty: usize,
        value: &Value,
        dirt: &mut PatientDirt,
        bad: Option<&'static str>,
    ) -> Result<()> {
        self.buf.clear();
        serde_json::to_writer(&mut self.buf, value)?;
        self.buf.push(b'\n');
        self.outs[ty].write_all(&self.buf)?;
        self.counts[ty] += 1;
        if let Some(column) = bad {
            self.dirt[ty].add(DirtKind::FhirInvalidCode, 1);
            dirt.events.push(DirtEvent {
                file: PATHS[ty],
                row: self.counts[ty],
                kind: DirtKind::FhirInvalidCode,
                column: Some(column),
            });
        }
        Ok(())
    }

    fn laterality(&self, p: &Patient) -> Value {
        if p.left {
            json!({"coding": [{"system": SNOMED, "code": "80248007", "display": "Left breast structure"}]})
        } else {
            json!({"coding": [{"system": SNOMED, "code": "73056007", "display": "Right breast structure"}]})
        }
    }

    fn positive(&self, yes: bool) -> Value {
        if yes {
            json!({"coding": [{"system": SNOMED, "code": "10828004", "display": "Positive"}]})
        } else {
            json!({"coding": [{"system": SNOMED, "code": "260385009", "display": "Negative"}]})
        }
    }

    fn percent(v: u8) -> Value {
        json!({"value": v, "unit": "%", "system": UCUM, "code": "%"})
    }

    /// Writes every resource of one patient.
    pub(crate) fn write_patient(&mut self, p: &Patient, dirt: &mut PatientDirt) -> Result<()> {
        let mut ids = Ids {
            seed: self.seed,
            p,
            next: [0; 9],
        };
        let pid = ids.next(PATIENT);
        let subject = json!({"reference": format!("Patient/{pid}")});

        // Patient.
        let mut patient = json!({
            "resourceType": "Patient",
            "id": pid,
            "meta": self.meta(p, p.dx_date, 1),
            "identifier": [
                {"use": "official", "system": SSIN_SYSTEM, "value": p.niss},
                {
                    "use": "usual",
                    "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
                    "system": self.mrn_system(),
                    "value": p.mrn,
                    "assigner": {"display": self.institution},
                },
            ],
            "name": [{"use": "official", "family": p.last_name, "given": p.first_name.split(' ').collect::<Vec<_>>()}],
            "gender": if p.sex == Sex::Female { "female" } else { "male" },
            "birthDate": date(p.birth_date),
            "address": [{"use": "home", "postalCode": p.postcode, "city": p.city, "country": "BE"}],
            "managingOrganization": {"display": self.institution},
        });
        if let Some(d) = &p.death {
            patient["deceasedDateTime"] = json!(date(d.date));
        }
        let bad_gender = self.plan.patient_gender == Some(p.number);
        if bad_gender {
            patient["gender"] = json!("femme");
        }
        self.emit(PATIENT, &patient, dirt, bad_gender.then_some("gender"))?;

        // Encounters.
        let amb = json!({"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"});
        let imp = json!({"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP", "display": "inpatient encounter"});
        let dx_enc = ids.next(ENCOUNTER);
        let enc = json!({
            "resourceType": "Encounter",
            "id": dx_enc,
            "meta": self.meta(p, p.dx_date, 2),
            "status": "finished",
            "class": amb,
            "type": [{"coding": [self.local("encounter-type", "CONS-SEN", "Consultation sénologie")]}],
            "subject": subject,
            "period": {"start": date(p.dx_date), "end": date(p.dx_date)},
            "serviceProvider": {"display": self.institution},
        });
        self.emit(ENCOUNTER, &enc, dirt, None)?;
        let mut surgery_enc = None;
        if let Some(s) = &p.surgery {
            let id = ids.next(ENCOUNTER);
            let stay = 1 + (hash(&[self.seed, p.number, 3]) % 3) as i64;
            let enc = json!({
                "resourceType": "Encounter",
                "id": id,
                "meta": self.meta(p, plus(s.date, stay), 4),
                "status": "finished",
                "class": imp,
                "type": [{"coding": [self.local("encounter-type", "HOSP-CHIR", "Hospitalisation chirurgicale")]}],
                "subject": subject,
                "period": {"start": date(s.date), "end": date(plus(s.date, stay))},
                "serviceProvider": {"display": self.institution},
            });
            self.emit(ENCOUNTER, &enc, dirt, None)?;
            surgery_enc = Some(id);
        }
        let mut rt_enc = None;
        if let (Some(first), Some(last)) = (p.rt.first(), p.rt.last()) {
            let id = ids.next(ENCOUNTER);
            let enc = json!({
                "resourceType": "Encounter",
                "id": id,
                "meta": self.meta(p, last.end, 5),
                "status": "finished",
                "class": amb,
                "type": [{"coding": [self.local("encounter-type", "RT-COURSE", "Radiothérapie")]}],
                "subject": subject,
                "period": {"start": date(first.start), "end": date(last.end)},
                "serviceProvider": {"display": self.institution},
            });
            self.emit(ENCOUNTER, &enc, dirt, None)?;
            rt_enc = Some(id);
        }

        // Conditions.
        let cid = ids.next(CONDITION);
        let condition_ref = json!({"reference": format!("Condition/{cid}")});
        let cond = json!({
            "resourceType": "Condition",
            "id": cid,
            "meta": self.meta(p, p.dx_date, 6),
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
            "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "encounter-diagnosis"}]}],
            "code": {
                "coding": [
                    {"system": SNOMED, "code": "254837009", "display": "Malignant neoplasm of breast"},
                    {"system": ICD10, "code": p.icd10},
                ],
                "text": "Carcinome mammaire",
            },
            "bodySite": [self.laterality(p)],
            "subject": subject,
            "encounter": {"reference": format!("Encounter/{dx_enc}")},
            "onsetDateTime": date(p.dx_date),
            "recordedDate": date(p.dx_date),
        });
        self.emit(CONDITION, &cond, dirt, None)?;
        if let Some(r) = &p.recurrence {
            let id = ids.next(CONDITION);
            let cond = json!({
                "resourceType": "Condition",
                "id": id,
                "meta": self.meta(p, r.date, 7),
                "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
                "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "encounter-diagnosis"}]}],
                "code": {
                    "coding": [
                        {"system": ICD10, "code": r.icd10},
                        self.local("recurrence-type", r.kind, r.kind),
                    ],
                    "text": format!("Récidive ({}, {})", r.kind, r.site),
                },
                "subject": subject,
                "onsetDateTime": date(r.date),
                "recordedDate": date(r.date),
            });
            self.emit(CONDITION, &cond, dirt, None)?;
        }

        // Specimen, pathology observations and report.
        let sid = ids.next(SPECIMEN);
        let spec = json!({
            "resourceType": "Specimen",
            "id": sid,
            "meta": self.meta(p, p.dx_date, 8),
            "accessionIdentifier": {"system": format!("{}/NamingSystem/pathology-sample", self.base), "value": p.sample_id},
            "status": "available",
            "type": {"coding": [self.local("specimen-type", "CNB", "Core needle biopsy, breast")]},
            "subject": subject,
            "collection": {"collectedDateTime": date(p.dx_date), "bodySite": self.laterality(p)},
        });
        self.emit(SPECIMEN, &spec, dirt, None)?;
        let specimen_ref = json!({"reference": format!("Specimen/{sid}")});
        let lab_category = json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}]);
        let mut results = Vec::new();
        let mut observations = Vec::new();
        let er_components = {
            let mut c = vec![
                json!({"code": {"coding": [self.local("lab", "ER_PCT", "ER % positive nuclei")]}, "valueQuantity": Self::percent(p.er)}),
            ];
            if let Some(a) = p.er_allred {
                c.push(json!({"code": {"coding": [self.local("lab", "ER_ALLRED", "ER Allred score")]}, "valueInteger": a}));
            }
            c
        };
        let pr_components = {
            let mut c = vec![
                json!({"code": {"coding": [self.local("lab", "PR_PCT", "PR % positive nuclei")]}, "valueQuantity": Self::percent(p.pr)}),
            ];
            if let Some(a) = p.pr_allred {
                c.push(json!({"code": {"coding": [self.local("lab", "PR_ALLRED", "PR Allred score")]}, "valueInteger": a}));
            }
            c
        };
        observations.push((
            json!({"coding": [{"system": LOINC, "code": "85337-4", "display": "Estrogen receptor Ag [Presence] in Breast cancer specimen by Immune stain"}]}),
            "valueCodeableConcept",
            self.positive(p.er >= 1),
            Some(er_components),
        ));
        observations.push((
            json!({"coding": [{"system": LOINC, "code": "85339-0", "display": "Progesterone receptor Ag [Presence] in Breast cancer specimen by Immune stain"}]}),
            "valueCodeableConcept",
            self.positive(p.pr >= 1),
            Some(pr_components),
        ));
        let ihc = if p.her2_ihc == 0 {
            "0".to_string()
        } else {
            format!("{}+", p.her2_ihc)
        };
        observations.push((
            json!({"coding": [{"system": LOINC, "code": "85319-2", "display": "HER2 [Presence] in Breast cancer specimen by Immune stain"}]}),
            "valueCodeableConcept",
            json!({"coding": [self.local("her2-ihc-score", &ihc, &format!("IHC {ihc}"))], "text": ihc}),
            None,
        ));
        if let Some(ish) = p.her2_ish {
            observations.push((
                json!({"coding": [{"system": LOINC, "code": "85318-4", "display": "HER2 [Presence] in Breast cancer specimen by FISH"}]}),
                "valueCodeableConcept",
                self.positive(ish),
                None,
            ));
        }
        observations.push((
            json!({"coding": [{"system": LOINC, "code": "48676-1", "display": "HER2 [Interpretation] in Tissue"}]}),
            "valueCodeableConcept",
            self.positive(p.her2_positive()),
            None,
        ));
        observations.push((
            json!({"coding": [self.local("lab", "KI67_PCT", "Ki-67 proliferation index")]}),
            "valueQuantity",
            Self::percent(p.ki67),
            None,
        ));
        observations.push((
            json!({"coding": [self.local("lab", "GRADE", "Histologic grade (Nottingham)")]}),
            "valueInteger",
            json!(p.grade),
            None,
        ));
        observations.push((
            json!({"coding": [self.local("lab", "HISTOLOGY", "Histologic type")]}),
            "valueCodeableConcept",
            json!({"coding": [{"system": ICDO3, "code": p.morphology}]}),
            None,
        ));
        let mut bad_status = self.plan.observation_status == Some(p.number);
        for (i, (code, value_key, value, components)) in observations.into_iter().enumerate() {
            let id = ids.next(OBSERVATION);
            let mut obs = json!({
                "resourceType": "Observation",
                "id": id,
                "meta": self.meta(p, p.dx_date, 20 + i as u64),
                "status": "final",
                "category": lab_category,
                "code": code,
                "subject": subject,
                "effectiveDateTime": date(p.dx_date),
                "specimen": specimen_ref,
            });
            obs[value_key] = value;
            if let Some(c) = components {
                obs["component"] = Value::Array(c);
            }
            let bad = bad_status;
            if bad {
                obs["status"] = json!("finalised");
                bad_status = false;
            }
            self.emit(OBSERVATION, &obs, dirt, bad.then_some("status"))?;
            results.push(json!({"reference": format!("Observation/{id}")}));
        }
        let rid = ids.next(DIAGNOSTIC_REPORT);
        let issued = plus(p.dx_date, 3 + (hash(&[self.seed, p.number, 9]) % 5) as i64);
        let report = json!({
            "resourceType": "DiagnosticReport",
            "id": rid,
            "meta": self.meta(p, issued, 10),
            "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "SP", "display": "Surgical Pathology"}]}],
            "code": {"coding": [self.local("report-type", "PATH-BIOPSY", "Anatomopathologie - biopsie mammaire")]},
            "subject": subject,
            "effectiveDateTime": date(p.dx_date),
            "issued": format!("{}T16:00:00+01:00", date(issued)),
            "specimen": [specimen_ref],
            "result": results,
        });
        self.emit(DIAGNOSTIC_REPORT, &report, dirt, None)?;

        // Staging.
        self.staging(p, &mut ids, &subject, &p.ctnm, "c", dirt)?;
        if let Some(yp) = &p.yptnm {
            self.staging(p, &mut ids, &subject, yp, "yp", dirt)?;
        }

        // Procedures.
        if let Some(s) = &p.surgery {
            let (snomed, display) = if s.mastectomy {
                ("172043006", "Simple mastectomy")
            } else {
                ("392021009", "Lumpectomy of breast")
            };
            let (local, label) = crate::codes::SURGERY_CODES[usize::from(s.mastectomy)];
            let mut proc_ = json!({
                "resourceType": "Procedure",
                "id": ids.next(PROCEDURE),
                "meta": self.meta(p, s.date, 11),
                "status": "completed",
                "code": {"coding": [{"system": SNOMED, "code": snomed, "display": display}, self.local("procedure", local, label)]},
                "subject": subject,
                "performedDateTime": date(s.date),
                "bodySite": [self.laterality(p)],
                "reasonReference": [condition_ref],
            });
            if let Some(e) = &surgery_enc {
                proc_["encounter"] = json!({"reference": format!("Encounter/{e}")});
            }
            self.emit(PROCEDURE, &proc_, dirt, None)?;
            let (axilla_label, axilla_code) = if s.axilla == "SLNB" {
                ("Ganglion sentinelle", "SLNB")
            } else {
                ("Curage axillaire", "ALND")
            };
            let mut ax = json!({
                "resourceType": "Procedure",
                "id": ids.next(PROCEDURE),
                "meta": self.meta(p, s.date, 12),
                "status": "completed",
                "code": {"coding": [self.local("procedure", axilla_code, axilla_label)]},
                "subject": subject,
                "performedDateTime": date(s.date),
                "reasonReference": [condition_ref],
            });
            if let Some(e) = &surgery_enc {
                ax["encounter"] = json!({"reference": format!("Encounter/{e}")});
            }
            self.emit(PROCEDURE, &ax, dirt, None)?;
        }
        for (i, c) in p.rt.iter().enumerate() {
            let mut proc_ = json!({
                "resourceType": "Procedure",
                "id": ids.next(PROCEDURE),
                "meta": self.meta(p, c.end, 30 + i as u64),
                "status": "completed",
                "code": {"coding": [
                    {"system": SNOMED, "code": "33195004", "display": "Teleradiotherapy procedure"},
                    self.local("rt-target", c.target, c.target),
                ]},
                "subject": subject,
                "performedPeriod": {"start": date(c.start), "end": date(c.end)},
                "bodySite": [self.laterality(p)],
                "reasonReference": [condition_ref],
                "extension": [
                    {"url": self.sd("rt-total-dose"), "valueQuantity": {"value": f64::from(c.dose_cgy) / 100.0, "unit": "Gy", "system": UCUM, "code": "Gy"}},
                    {"url": self.sd("rt-fractions"), "valueInteger": c.fractions},
                ],
            });
            if let Some(e) = &rt_enc {
                proc_["encounter"] = json!({"reference": format!("Encounter/{e}")});
            }
            self.emit(PROCEDURE, &proc_, dirt, None)?;
        }

        // Medication administrations.
        for (i, a) in p.admins.iter().enumerate() {
            let d = &DRUGS[a.drug];
            let mut ma = json!({
                "resourceType": "MedicationAdministration",
                "id": ids.next(MEDICATION_ADMINISTRATION),
                "meta": self.meta(p, a.date, 100 + i as u64),
                "extension": [
                    {"url": self.sd("regimen"), "valueString": a.regimen},
                    {"url": self.sd("treatment-setting"), "valueCode": a.setting},
                    {"url": self.sd("cycle-number"), "valueInteger": a.cycle},
                ],
                "status": "completed",
                "medicationCodeableConcept": {
                    "coding": [
                        {"system": ATC, "code": d.atc, "display": d.atc_display},
                        self.local("drug", d.code, d.label),
                    ],
                    "text": d.label,
                },
                "subject": subject,
                "reasonReference": [condition_ref],
                "dosage": {
                    "route": {"text": if d.route == "PO" { "oral" } else { "intravenous" }},
                    "dose": {"value": a.dose10 as f64 / 10.0, "unit": "mg", "system": UCUM, "code": "mg"},
                },
            });
            if a.supply_days > 0 {
                ma["effectivePeriod"] = json!({"start": date(a.date), "end": date(plus(a.date, i64::from(a.supply_days) - 1))});
                ma["dosage"]["text"] = json!(format!("{} mg par jour", a.dose10 as f64 / 10.0));
            } else {
                ma["effectiveDateTime"] = json!(date(a.date));
            }
            self.emit(MEDICATION_ADMINISTRATION, &ma, dirt, None)?;
        }

        // Imaging studies.
        for (i, im) in p.imaging.iter().enumerate() {
            let study = json!({
                "resourceType": "ImagingStudy",
                "id": ids.next(IMAGING_STUDY),
                "meta": self.meta(p, im.date, 200 + i as u64),
                "identifier": [{"system": "urn:dicom:uid", "value": format!("urn:oid:{}", im.study_uid)}],
                "status": "available",
                "modality": [{"system": DCM, "code": im.modality}],
                "subject": subject,
                "started": date(im.date),
                "numberOfSeries": 1,
                "numberOfInstances": im.instances,
                "description": im.description,
                "series": [{
                    "uid": im.series_uid,
                    "number": 1,
                    "modality": {"system": DCM, "code": im.modality},
                    "numberOfInstances": im.instances,
                }],
            });
            self.emit(IMAGING_STUDY, &study, dirt, None)?;
        }
        Ok(())
    }

    fn staging(
        &mut self,
        p: &Patient,
        ids: &mut Ids<'_>,
        subject: &Value,
        tnm: &Tnm,
        kind: &str,
        dirt: &mut PatientDirt,
    ) -> Result<()> {
        let id = ids.next(OBSERVATION);
        let prefix = |v: &str| format!("{kind}{v}");
        let (code, display) = if kind == "c" {
            ("TNM-C", "Clinical TNM stage")
        } else {
            ("TNM-YP", "Post-neoadjuvant pathological TNM stage")
        };
        let mut obs = json!({
            "resourceType": "Observation",
            "id": id,
            "meta": self.meta(p, tnm.date, if kind == "c" { 40 } else { 41 }),
            "status": "final",
            "code": {"coding": [self.local("staging", code, display)]},
            "subject": subject,
            "effectiveDateTime": date(tnm.date),
            "component": [
                {"code": {"coding": [self.local("staging", &format!("{kind}T"), "T category")]}, "valueCodeableConcept": {"coding": [self.local("tnm-t", &prefix(tnm.t), &prefix(tnm.t))]}},
                {"code": {"coding": [self.local("staging", &format!("{kind}N"), "N category")]}, "valueCodeableConcept": {"coding": [self.local("tnm-n", &prefix(tnm.n), &prefix(tnm.n))]}},
                {"code": {"coding": [self.local("staging", "cM", "M category")]}, "valueCodeableConcept": {"coding": [self.local("tnm-m", &format!("c{}", tnm.m), &format!("c{}", tnm.m))]}},
            ],
        });
        if tnm.stage.is_empty() {
            obs["dataAbsentReason"] = json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason", "code": "not-applicable"}]});
        } else {
            obs["valueCodeableConcept"] =
                json!({"coding": [self.local("ajcc-stage-group", tnm.stage, tnm.stage)]});
        }
        self.emit(OBSERVATION, &obs, dirt, None)
    }

    /// Flushes the files and writes the Bulk Data manifest; returns (path, resources, dirt).
    pub(crate) fn finish(&mut self, out: &Path) -> Result<Vec<(&'static str, u64, DirtCounts)>> {
        for w in &mut self.outs {
            w.flush()?;
        }
        let output: Vec<Value> = FHIR_TYPES
            .iter()
            .zip(&self.counts)
            .map(|(ty, n)| json!({"type": ty, "url": format!("{ty}.ndjson"), "count": n}))
            .collect();
        let manifest = json!({
            "transactionTime": TRANSACTION_TIME,
            "request": format!("{}/$export", self.base),
            "requiresAccessToken": false,
            "output": output,
            "error": [],
        });
        let path = out.join("fhir/manifest.json");
        let mut w = BufWriter::new(File::create(&path).context("cannot create the FHIR manifest")?);
        serde_json::to_writer_pretty(&mut w, &manifest)?;
        w.write_all(b"\n")?;
        w.flush()?;
        Ok(PATHS
            .iter()
            .zip(&self.counts)
            .zip(&self.dirt)
            .map(|((p, n), d)| (*p, *n, *d))
            .collect())
    }
}
