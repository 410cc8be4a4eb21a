//! The second FHIR test server, Medplum's FHIR router behind tests/support/medplum/server.mjs,
//! checked on its own with raw HTTP (nothing of registrar's): its paging variants, and the
//! Medplum behaviours the FHIR import tests can lean on.

use crate::support::fhir_server::http;
use crate::support::medplum_server::{MedplumServer, Paging};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;

const PATIENTS: usize = 250;

fn patient(i: usize) -> Value {
    json!({"resourceType": "Patient", "id": format!("p-{i:03}"),
           "gender": if i.is_multiple_of(2) { "female" } else { "male" },
           "birthDate": format!("19{:02}-01-{:02}", 30 + i % 60, 1 + i % 28),
           "identifier": [{"system": "urn:test:mrn", "value": format!("MRN{i}")}]})
}

fn observation(i: usize) -> Value {
    json!({"resourceType": "Observation", "id": format!("o-{i:03}"), "status": "final",
           "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
           "subject": {"reference": format!("Patient/p-{i:03}")},
           "effectiveDateTime": "2024-03-01T10:00:00Z",
           "valueQuantity": {"value": 60 + i % 40, "unit": "/min"}})
}

fn load(s: &MedplumServer) {
    let mut all: Vec<Value> = (0..PATIENTS).map(patient).collect();
    all.extend((0..PATIENTS).map(observation));
    s.put_all(&all);
}

fn get(s: &MedplumServer, rel: &str) -> Value {
    let (status, v) = http("GET", &format!("{}/{rel}", s.base), None, None);
    assert_eq!(status, 200, "GET {rel}: {v}");
    v
}

fn next_link(b: &Value) -> Option<String> {
    b["link"]
        .as_array()?
        .iter()
        .find(|l| l["relation"] == "next")
        .map(|l| l["url"].as_str().unwrap().to_string())
}

fn ids(b: &Value) -> Vec<String> {
    b["entry"]
        .as_array()
        .map(|es| {
            es.iter()
                .map(|e| e["resource"]["id"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Follow next links from `first`; every page's ids, in order.
fn follow(first: Value) -> Vec<String> {
    let mut all = ids(&first);
    let mut next = next_link(&first);
    let mut pages = 1;
    while let Some(url) = next {
        pages += 1;
        assert!(pages < 50, "paging does not end");
        let (status, b) = http("GET", &url, None, None);
        assert_eq!(status, 200, "GET {url}: {b}");
        all.extend(ids(&b));
        next = next_link(&b);
    }
    all
}

/// The status line and headers of a GET, raw.
fn head(url: &str) -> String {
    let u = url::Url::parse(url).unwrap();
    let mut s = TcpStream::connect((u.host_str().unwrap(), u.port().unwrap())).unwrap();
    write!(
        s,
        "GET {} HTTP/1.0\r\nHost: {}\r\n\r\n",
        u.path(),
        u.authority()
    )
    .unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let text = String::from_utf8_lossy(&resp);
    text.split("\r\n\r\n").next().unwrap().to_ascii_lowercase()
}

/// What every variant shares: Medplum's own search, read, delete, history and metadata.
fn common_checks(s: &MedplumServer) {
    // Plain HTTP: FHIR JSON and a real Date header.
    let h = head(&format!("{}/Patient/p-001", s.base));
    assert!(h.starts_with("http/1.1 200"), "{h}");
    assert!(h.contains("content-type: application/fhir+json"), "{h}");
    assert!(h.contains("\r\ndate: "), "{h}");

    // _summary=count: the total alone.
    let b = get(s, "Patient?_summary=count");
    assert_eq!(b["total"], PATIENTS);
    assert!(b.get("entry").is_none(), "{b}");

    // Search parameters are Medplum's.
    let b = get(s, "Observation?subject=Patient/p-007");
    assert_eq!(ids(&b), ["o-007"]);
    let b = get(s, "Patient?identifier=urn:test:mrn|MRN42");
    assert_eq!(ids(&b), ["p-042"]);

    // No page-size cap in the MemoryRepository: _count above 1000 returns every match.
    let b = get(s, "Patient?_count=2000");
    assert_eq!(ids(&b).len(), PATIENTS);
    assert_eq!(next_link(&b), None);

    // _elements is accepted but not applied by the MemoryRepository: whole resources.
    let b = get(s, "Patient?_elements=id&_count=3");
    assert_eq!(ids(&b).len(), 3);
    for e in b["entry"].as_array().unwrap() {
        assert!(e["resource"]["id"].is_string(), "{e}");
        assert!(
            e["resource"]["gender"].is_string(),
            "_elements now trims: {e}"
        );
    }

    // _lastUpdated=gt with a millisecond instant (Medplum's meta.lastUpdated precision).
    let newest = get(s, "Patient?_sort=-_lastUpdated&_count=1");
    let cut = newest["entry"][0]["resource"]["meta"]["lastUpdated"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(cut.len(), "2024-01-01T00:00:00.000Z".len(), "{cut}");
    std::thread::sleep(std::time::Duration::from_millis(20));
    let mut changed = vec![patient(10), patient(20), patient(30)];
    for p in &mut changed {
        p["gender"] = json!("other");
    }
    s.put_all(&changed);
    let b = get(
        s,
        &format!("Patient?_lastUpdated=gt{}", cut.replace('+', "%2B")),
    );
    let mut got = ids(&b);
    got.sort();
    assert_eq!(got, ["p-010", "p-020", "p-030"], "{b}");
    assert_eq!(b["total"], 3);
    let b = get(
        s,
        &format!(
            "Patient?_lastUpdated=gt{}&_sort=-_lastUpdated&_count=1",
            cut
        ),
    );
    assert!(
        ["p-010", "p-020", "p-030"].contains(&ids(&b)[0].as_str()),
        "{b}"
    );

    // _include: the referenced Medication comes along, as search.mode include.
    s.put_all(&[
        json!({"resourceType": "Medication", "id": "med-1",
               "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "197361"}]}}),
        json!({"resourceType": "MedicationRequest", "id": "mr-1", "status": "active",
               "intent": "order", "subject": {"reference": "Patient/p-001"},
               "medicationReference": {"reference": "Medication/med-1"}}),
    ]);
    let b = get(s, "MedicationRequest?_include=MedicationRequest:medication");
    let entries = b["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{b}");
    let inc: Vec<&Value> = entries
        .iter()
        .filter(|e| e["search"]["mode"] == "include")
        .collect();
    assert_eq!(inc.len(), 1, "{b}");
    assert_eq!(inc[0]["resource"]["resourceType"], "Medication");
    assert_eq!(inc[0]["resource"]["id"], "med-1");
    assert_eq!(b["total"], 1, "total counts matches only: {b}");

    // Type-level history is not served: 404 with an OperationOutcome.
    let (status, v) = http("GET", &format!("{}/Patient/_history", s.base), None, None);
    assert_eq!(status, 404, "{v}");
    assert_eq!(v["resourceType"], "OperationOutcome");

    // The capability statement says so, and lists what is served.
    let m = get(s, "metadata");
    assert_eq!(m["resourceType"], "CapabilityStatement");
    let pat = m["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Patient")
        .expect("Patient in the capability statement");
    let codes: BTreeSet<&str> = pat["interaction"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["code"].as_str().unwrap())
        .collect();
    for c in ["read", "search-type", "create", "update", "delete"] {
        assert!(codes.contains(c), "{c} missing: {codes:?}");
    }
    assert!(!codes.contains("history-type"), "{codes:?}");
    for r in m["rest"][0]["resource"].as_array().unwrap() {
        assert!(
            !r["interaction"].to_string().contains("history-type"),
            "{r}"
        );
    }

    // DELETE, then the read is gone (Medplum's MemoryRepository: 404) and so is the match.
    s.delete("Patient", "p-249");
    let (status, v) = http("GET", &format!("{}/Patient/p-249", s.base), None, None);
    assert!(status == 404 || status == 410, "{status} {v}");
    assert_eq!(v["resourceType"], "OperationOutcome");
    assert_eq!(get(s, "Patient?_summary=count")["total"], PATIENTS - 1);
    s.put_all(&[patient(249)]);
}

/// GET Patient?_count=100 and everything its next links reach.
fn page_through(s: &MedplumServer) -> (Value, Vec<String>) {
    let first = get(s, "Patient?_count=100");
    assert_eq!(first["total"], PATIENTS, "{first}");
    assert_eq!(ids(&first).len(), 100);
    let all = follow(first.clone());
    (first, all)
}

fn assert_all_patients(all: &[String]) {
    let distinct: BTreeSet<&String> = all.iter().collect();
    assert_eq!(all.len(), PATIENTS, "a page repeated or lost matches");
    assert_eq!(distinct.len(), PATIENTS);
}

#[test]
fn medplum_no_paging_links() {
    let s = MedplumServer::start(Paging::None);
    load(&s);
    let (first, all) = page_through(&s);
    assert_eq!(next_link(&first), None, "{}", first["link"]);
    assert_eq!(all.len(), 100);
    // Medplum's own _offset.
    let b = get(&s, "Patient?_count=100&_offset=200");
    assert_eq!(ids(&b).len(), 50);
    assert_eq!(ids(&b)[0], "p-200");
    assert_eq!(b["total"], PATIENTS);
    common_checks(&s);
}

#[test]
fn medplum_offset_paging() {
    let s = MedplumServer::start(Paging::Offset);
    load(&s);
    let (first, all) = page_through(&s);
    let next = next_link(&first).expect("a next link");
    assert!(
        next.starts_with(&format!("{}/Patient?", s.base)) && next.ends_with("&_offset=100"),
        "{next}"
    );
    assert!(next.contains("_count=100"), "{next}");
    assert_all_patients(&all);
    // The search's other parameters carry over.
    let b = get(&s, "Patient?gender=female&_count=40");
    assert_eq!(b["total"], PATIENTS / 2);
    let next = next_link(&b).unwrap();
    assert!(next.contains("gender=female"), "{next}");
    let fem = follow(b);
    assert_eq!(fem.len(), PATIENTS / 2);
    assert_eq!(fem.iter().collect::<BTreeSet<_>>().len(), PATIENTS / 2);
    common_checks(&s);
}

#[test]
fn medplum_getpages_paging() {
    let s = MedplumServer::start(Paging::GetPages);
    load(&s);
    let (first, all) = page_through(&s);
    let next = next_link(&first).expect("a next link");
    let prefix = format!("{}?_getpages=", s.base);
    assert!(next.starts_with(&prefix), "{next}");
    assert!(
        next.ends_with("&_getpagesoffset=100&_count=100&_bundletype=searchset"),
        "{next}"
    );
    let id = &next[prefix.len()..next.find('&').unwrap()];
    assert_eq!(id.len(), 36, "a uuid: {id}");
    assert_all_patients(&all);
    // Each search gets its own id; the filter carries over.
    let b = get(&s, "Patient?gender=male&_count=40");
    let next2 = next_link(&b).unwrap();
    assert!(!next2.contains(id), "{next2}");
    let male = follow(b);
    assert_eq!(male.len(), PATIENTS / 2);
    // An unknown search id is gone.
    let (status, v) = http(
        "GET",
        &format!(
            "{}?_getpages=00000000-0000-0000-0000-000000000000&_getpagesoffset=100&_count=100",
            s.base
        ),
        None,
        None,
    );
    assert_eq!(status, 410, "{v}");
    common_checks(&s);
}
