//! AAPM TG-263 structure names from ROI names as they are typed, and the vocabulary of
//! structure names.
//!
//! * [`normalise`]: the TG-263 name of a structure (targets `CTVp_`/`CTVn_`/`PTVp_`... with
//!   the site and the laterality last, as in the ESTRO breast consensus) from a name in
//!   English, French, TG-263 or close to it and the RT ROI Interpreted Type, or `None` when
//!   the name is not recognised; [`tg263_name`] is the same with the name as typed for
//!   `None`.
//! * [`fold`]: lower case with the diacritics of Latin-1 Supplement and Latin Extended-A
//!   folded (`Cœur` → `coeur`, `Thyroïde` → `thyroide`, `ß` → `ss`), the form every word is
//!   compared in.
//! * [`is_structure_word`]: whether a folded token is a word of anatomy, radiotherapy
//!   planning or TG-263 (every word [`normalise`] recognises and common breast radiotherapy
//!   words in English, French, Dutch and German), so that a patient-name scrubber never takes
//!   `Heart` for a patient called `ART`.
//!
//! A side word may stand anywhere in a name: `L`, `Lt`, `Left`, `Links`, `G`, `Gauche`,
//! `Sin`, `Sinistra` and `R`, `Rt`, `Right`, `Rechts`, `D`, `Droit`, `Droite`, `Dex`,
//! `Dextra`. `L1` to `L4` are axillary levels, not sides (also as `L 1`); a name with two
//! different side words is not recognised.

/// Side words and the TG-263 laterality suffix they stand for.
const SIDE_WORDS: &[(&str, &str)] = &[
    ("l", "L"),
    ("lt", "L"),
    ("left", "L"),
    ("links", "L"),
    ("g", "L"),
    ("gauche", "L"),
    ("sin", "L"),
    ("sinistra", "L"),
    ("r", "R"),
    ("rt", "R"),
    ("right", "R"),
    ("rechts", "R"),
    ("d", "R"),
    ("droit", "R"),
    ("droite", "R"),
    ("dex", "R"),
    ("dextra", "R"),
];

/// Target volume prefixes (a name's first token, alone or with `p` or `n`).
const VOLUMES: &[&str] = &["ctv", "ptv", "gtv", "itv"];

/// Target sites: (name as typed, folded, tokens joined by one space; TG-263 site; default
/// level, `p` primary or `n` nodal).
const SITES: &[(&str, &str, &str)] = &[
    ("breast", "Breast", "p"),
    ("sein", "Breast", "p"),
    ("chestwall", "Chestwall", "p"),
    ("chest wall", "Chestwall", "p"),
    ("paroi", "Chestwall", "p"),
    ("thoracic wall", "Chestwall", "p"),
    ("boost", "TumorBed", "p"),
    ("tumorbed", "TumorBed", "p"),
    ("tumourbed", "TumorBed", "p"),
    ("tumor bed", "TumorBed", "p"),
    ("tumour bed", "TumorBed", "p"),
    ("lit tumoral", "TumorBed", "p"),
    ("tb", "TumorBed", "p"),
    ("l1", "L1", "n"),
    ("axilla i", "L1", "n"),
    ("axilla 1", "L1", "n"),
    ("aisselle 1", "L1", "n"),
    ("ax l1", "L1", "n"),
    ("l2", "L2", "n"),
    ("axilla ii", "L2", "n"),
    ("axilla 2", "L2", "n"),
    ("aisselle 2", "L2", "n"),
    ("ax l2", "L2", "n"),
    ("l3", "L3", "n"),
    ("axilla iii", "L3", "n"),
    ("axilla 3", "L3", "n"),
    ("aisselle 3", "L3", "n"),
    ("ax l3", "L3", "n"),
    ("l4", "L4", "n"),
    ("supraclav", "L4", "n"),
    ("supraclavicular", "L4", "n"),
    ("sus clav", "L4", "n"),
    ("susclav", "L4", "n"),
    ("scv", "L4", "n"),
    ("imn", "IMN", "n"),
    ("imc", "IMN", "n"),
    ("cmi", "IMN", "n"),
    ("internal mammary", "IMN", "n"),
];

/// Organs: (name as typed, folded, tokens joined by one space; TG-263 name; whether the
/// organ has a side, which the name then takes).
const ORGANS: &[(&str, &str, bool)] = &[
    ("heart", "Heart", false),
    ("coeur", "Heart", false),
    ("lung", "Lung", true),
    ("poumon", "Lung", true),
    ("lungs", "Lungs", false),
    ("poumons", "Lungs", false),
    ("breast", "Breast", true),
    ("sein", "Breast", true),
    ("spinalcord", "SpinalCord", false),
    ("spinal cord", "SpinalCord", false),
    ("moelle", "SpinalCord", false),
    ("cord", "SpinalCord", false),
    ("external", "External", false),
    ("body", "External", false),
    ("contour externe", "External", false),
    ("skin", "External", false),
    ("esophagus", "Esophagus", false),
    ("oesophagus", "Esophagus", false),
    ("oesophage", "Esophagus", false),
    ("thyroid", "Glnd_Thyroid", false),
    ("thyroide", "Glnd_Thyroid", false),
    ("liver", "Liver", false),
    ("foie", "Liver", false),
    ("humerus", "Humerus", true),
    ("a lad", "A_LAD", false),
    ("lad", "A_LAD", false),
];

/// Anatomy and radiotherapy planning words beyond those of [`SIDE_WORDS`], [`VOLUMES`],
/// [`SITES`] and [`ORGANS`], folded, separated by spaces: breast radiotherapy anatomy and
/// planning in English (and TG-263 tokens), then French, Dutch and German.
const MORE_WORDS: &str = "\
    areola nipple breasts mamma mammae mammary axilla axillary axillar node nodes nodal lymph ln \
    lns level levels chest wall thorax thoracic sternum sternal rib ribs clavicle clavicular \
    supraclavicular infraclavicular infraclav sclav scf icv parasternal internal interpectoral \
    rotter humeral shoulder brachial plexus brachialplexus brachialplex trachea bronchus carina \
    stomach kidney kidneys spleen spinal canal spinalcanal vertebra vertebrae outline \
    contralateral ipsilateral contra ipsi coronary artery arteries lca rca lcx cx ventricle \
    atrium pericardium mediastinum muscle pectoralis pectoral latissimus serratus minor apex \
    fossa tumor tumour bed cavity seroma scar clip clips lumpectomy mastectomy implant expander \
    prosthesis bone bones glnd glands gland esophageal thyroidal hepatic whole partial medial \
    lateral superior inferior anterior posterior sup inf ant post med lat upper lower inner \
    outer \
    ctvp ctvn ptvp ptvn gtvp gtvn itvp itvn boost sib prv opt optim optimisation optimization \
    eval evaluation dose plan planning ring rings avoid avoidance block blocking help helper aux \
    margin crop cropped expanded isodose iso isocenter isocentre hot cold spot bolus shell wire \
    marker markers couch support structure roi poi ref reference field beam tangent tangential \
    total minus plus wb pbi apbi dibh fb breath hold gy cgy fx target volume primary union sum \
    seins thoracique aisselle axillaire ganglion ganglions ganglionnaire ganglionnaires creux \
    sus sous clav claviculaire susclaviculaire sousclaviculaire mammaire interne chaine lit \
    tumoral tumorale epiniere medullaire estomac tete humerale contour externe peau corps cote \
    cotes clavicule areole mamelon controlateral controlaterale homolateral homolaterale \
    ipsilaterale surimpression complement cicatrice prothese cible niveau artere coronaire \
    interventriculaire anterieure ventricule oreillette trachee rein reins rate vertebre \
    sternale os \
    hart long longen borst borsten borstwand thoraxwand oksel okselklieren klier klieren \
    lymfeklieren supraclaviculair infraclaviculair parasternaal mammaria interna tepel tepelhof \
    huid lichaam ruggenmerg slokdarm lever schildklier maag nier nieren linker rechter \
    contralaterale litteken ribben spier borstspier kransslagader hartkamer luchtpijp wervel \
    tumorbed \
    herz lunge lungen brust brustwand brustdruse brustdruese achsel achselhohle achselhoehle \
    lymphknoten haut korper koerper aussenkontur ruckenmark rueckenmark speiserohre speiseroehre \
    schilddruse schilddruese leber magen niere oberarm oberarmkopf humeruskopf linke rechte \
    linkes rechtes tumorbett narbe brustwarze warzenhof rippe rippen brustbein schlusselbein \
    schluesselbein supraklavikular infraklavikular zielvolumen koronararterie herzkranzgefass \
    luftrohre wirbel kontralateral";

/// Lower case with diacritics folded: every letter of Latin-1 Supplement and Latin
/// Extended-A becomes ASCII (`é` → `e`, `ü` → `u`, `ß` → `ss`, `ø` → `o`, `æ` → `ae`, `œ` →
/// `oe`, `ç` → `c`, `å` → `a`, `ł` → `l`, `þ` → `th`, ...) and combining diacritical marks
/// (U+0300 to U+036F, as in decomposed text) are dropped. Other characters are only
/// lower-cased (Unicode lower case, so `İ` becomes `i`).
pub fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars().flat_map(char::to_lowercase) {
        match fold_char(c) {
            Some(f) => out.push_str(f),
            None if ('\u{0300}'..='\u{036F}').contains(&c) => {}
            None => out.push(c),
        }
    }
    out
}

/// The ASCII form of a lower-case letter of Latin-1 Supplement or Latin Extended-A.
fn fold_char(c: char) -> Option<&'static str> {
    Some(match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => "a",
        'æ' => "ae",
        'ç' | 'ć' | 'ĉ' | 'ċ' | 'č' => "c",
        'ð' | 'ď' | 'đ' => "d",
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ĕ' | 'ė' | 'ę' | 'ě' => "e",
        'ĝ' | 'ğ' | 'ġ' | 'ģ' => "g",
        'ĥ' | 'ħ' => "h",
        'ì' | 'í' | 'î' | 'ï' | 'ĩ' | 'ī' | 'ĭ' | 'į' | 'ı' => "i",
        'ĳ' => "ij",
        'ĵ' => "j",
        'ķ' | 'ĸ' => "k",
        'ĺ' | 'ļ' | 'ľ' | 'ŀ' | 'ł' => "l",
        'ñ' | 'ń' | 'ņ' | 'ň' | 'ŉ' | 'ŋ' => "n",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ŏ' | 'ő' => "o",
        'œ' => "oe",
        'ŕ' | 'ŗ' | 'ř' => "r",
        'ś' | 'ŝ' | 'ş' | 'š' | 'ſ' => "s",
        'ß' => "ss",
        'ţ' | 'ť' | 'ŧ' => "t",
        'þ' => "th",
        'ù' | 'ú' | 'û' | 'ü' | 'ũ' | 'ū' | 'ŭ' | 'ů' | 'ű' | 'ų' => "u",
        'ŵ' => "w",
        'ý' | 'ÿ' | 'ŷ' => "y",
        'ź' | 'ż' | 'ž' => "z",
        _ => return None,
    })
}

/// The laterality suffix (`L` or `R`) a folded side word stands for.
fn side_word(folded: &str) -> Option<&'static str> {
    SIDE_WORDS
        .iter()
        .find(|(w, _)| *w == folded)
        .map(|(_, s)| *s)
}

/// Whether `folded` (a token in the form [`fold`] gives, without separators) is a word of
/// anatomy, radiotherapy planning or TG-263: every word [`normalise`] recognises (side
/// words, target prefixes, site and organ words, the TG-263 names' own tokens) and common
/// breast radiotherapy words in English, French, Dutch and German (`heart`, `areola`,
/// `coeur`, `borst`, `lunge`, `ptv`, `boost`, `ring`, `opt`, `eval`, ...). A known word
/// followed by digits (`ptv50`, `ctv1`, `l2`) is one too. A token that is not in folded form
/// is folded first; one with separators (`heart lung`) is not a word.
pub fn is_structure_word(folded: &str) -> bool {
    let refolded;
    let folded = if folded
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    {
        folded
    } else {
        refolded = fold(folded);
        refolded.as_str()
    };
    let word = |w: &str| {
        side_word(w).is_some()
            || VOLUMES.contains(&w)
            || MORE_WORDS.split_whitespace().any(|t| t == w)
            || SITES
                .iter()
                .any(|(p, s, _)| p.split(' ').any(|t| t == w) || s.eq_ignore_ascii_case(w))
            || ORGANS.iter().any(|(p, o, _)| {
                p.split(' ').any(|t| t == w) || o.split('_').any(|t| t.eq_ignore_ascii_case(w))
            })
    };
    if folded.is_empty() {
        return false;
    }
    let stem = folded.trim_end_matches(|c: char| c.is_ascii_digit());
    word(folded) || (!stem.is_empty() && stem.len() < folded.len() && word(stem))
}

/// The TG-263 name of a structure from its name as typed and its RT ROI Interpreted Type
/// (`CTV`, `PTV`, `GTV`, `ORGAN`, `EXTERNAL`, ...), or `None` when the name is not
/// recognised (see the module documentation for the side words).
///
/// Targets are `CTV`/`PTV`/`GTV`/`ITV`, then `p` (primary) or `n` (nodal), the site and the
/// side: `CTV breast` → `CTVp_Breast`, `Rt CTVn L2` → `CTVn_L2_R`; a bare site word is a
/// target when the interpreted type says so (`Boost` of type PTV → `PTVp_TumorBed`). Organs
/// take a side when they have one (`Poumon Droit` → `Lung_R`); an organ without sides named
/// with one is not recognised.
pub fn normalise(name: &str, interpreted_type: Option<&str>) -> Option<String> {
    let folded = fold(name);
    let raw: Vec<&str> = folded
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .collect();
    // `L 1` .. `L 4`: an axillary level written apart, not a side.
    let mut tokens: Vec<String> = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw.get(i + 1) {
            Some(d) if raw[i] == "l" && matches!(*d, "1" | "2" | "3" | "4") => {
                tokens.push(format!("l{d}"));
                i += 2;
            }
            _ => {
                tokens.push(raw[i].to_string());
                i += 1;
            }
        }
    }
    // Laterality: side words anywhere, all naming the same side.
    let mut side: Option<&str> = None;
    let mut rest_tokens: Vec<String> = Vec::with_capacity(tokens.len());
    for t in tokens {
        match side_word(&t) {
            Some(s) if side.is_some_and(|o| o != s) => return None,
            Some(s) => side = Some(s),
            None => rest_tokens.push(t),
        }
    }
    let mut tokens = rest_tokens;
    if tokens.is_empty() {
        return None;
    }
    // Target prefix: CTV / PTV / GTV / ITV, with p (primary) or n (nodal).
    let mut volume: Option<&str> = None;
    let mut level: Option<&str> = None;
    for v in VOLUMES {
        if let Some(rest) = tokens[0].strip_prefix(*v) {
            match rest {
                "" => {}
                "p" => level = Some("p"),
                "n" => level = Some("n"),
                _ => continue,
            }
            volume = Some(*v);
            tokens.remove(0);
            break;
        }
    }
    if volume.is_some() && level.is_none() {
        match tokens.first().map(String::as_str) {
            Some("p") => level = Some("p"),
            Some("n") => level = Some("n"),
            _ => {}
        }
        if level.is_some() {
            tokens.remove(0);
        }
    }
    let rest = tokens.join(" ");
    let with_side = |base: &str| match side {
        Some(s) => format!("{base}_{s}"),
        None => base.to_string(),
    };
    let site = SITES
        .iter()
        .find(|(p, _, _)| *p == rest)
        .map(|(_, s, l)| (*s, *l));
    let target_type = match interpreted_type.map(|t| t.trim().to_uppercase()) {
        Some(t) if t == "CTV" => Some("ctv"),
        Some(t) if t == "PTV" => Some("ptv"),
        Some(t) if t == "GTV" => Some("gtv"),
        _ => None,
    };
    // A bare site word is a target only when the interpreted type says so.
    let volume = volume.or(if site.is_some() { target_type } else { None });
    if let Some(v) = volume {
        let v = v.to_uppercase();
        return match site {
            Some((s, default_level)) => Some(with_side(&format!(
                "{v}{}_{s}",
                level.unwrap_or(default_level)
            ))),
            None if rest.is_empty() => Some(with_side(&format!("{v}{}", level.unwrap_or("")))),
            None => None,
        };
    }
    match ORGANS.iter().find(|(p, _, _)| *p == rest) {
        Some((_, o, true)) => Some(with_side(o)),
        Some((_, o, false)) if side.is_none() => Some(o.to_string()),
        _ => None,
    }
}

/// [`normalise`], with the name as typed when it is not recognised.
pub fn tg263_name(name: &str, interpreted_type: Option<&str>) -> String {
    normalise(name, interpreted_type).unwrap_or_else(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tg263_names() {
        let t = |n: &str, ty: &str| tg263_name(n, Some(ty));
        assert_eq!(t("CTV breast", "CTV"), "CTVp_Breast");
        assert_eq!(t("CTVp_Breast_L", "CTV"), "CTVp_Breast_L");
        assert_eq!(t("CTV_Breast_R", "CTV"), "CTVp_Breast_R");
        assert_eq!(t("CTV_n_L1", "CTV"), "CTVn_L1");
        assert_eq!(t("CTVn_L1_L", "CTV"), "CTVn_L1_L");
        assert_eq!(t("CTV aisselle 2", "CTV"), "CTVn_L2");
        assert_eq!(t("Axilla III", "CTV"), "CTVn_L3");
        assert_eq!(t("IMC", "CTV"), "CTVn_IMN");
        assert_eq!(t("Boost", "PTV"), "PTVp_TumorBed");
        assert_eq!(t("PTV", "PTV"), "PTV");
        assert_eq!(t("PTV_ChestWall_L", "PTV"), "PTVp_Chestwall_L");
        assert_eq!(t("Heart", "ORGAN"), "Heart");
        assert_eq!(t("Coeur", "ORGAN"), "Heart");
        assert_eq!(t("Lung L", "ORGAN"), "Lung_L");
        assert_eq!(t("LUNG_R", "ORGAN"), "Lung_R");
        assert_eq!(t("Poumon G", "ORGAN"), "Lung_L");
        assert_eq!(t("BODY", "EXTERNAL"), "External");
        assert_eq!(t("Spinal cord", "ORGAN"), "SpinalCord");
        assert_eq!(t("Something odd", "ORGAN"), "Something odd");
    }

    #[test]
    fn side_words_anywhere() {
        let t = |n: &str, ty: &str| normalise(n, Some(ty));
        let some = |s: &str| Some(s.to_string());
        assert_eq!(t("Lt Lung", "ORGAN"), some("Lung_L"));
        assert_eq!(t("Left Breast", "ORGAN"), some("Breast_L"));
        assert_eq!(t("Lung Links", "ORGAN"), some("Lung_L"));
        assert_eq!(t("Poumon Droit", "ORGAN"), some("Lung_R"));
        assert_eq!(t("poumon_droite", "ORGAN"), some("Lung_R"));
        assert_eq!(t("Rechts Humerus", "ORGAN"), some("Humerus_R"));
        assert_eq!(t("Sin Lung", "ORGAN"), some("Lung_L"));
        assert_eq!(t("Lung dextra", "ORGAN"), some("Lung_R"));
        assert_eq!(t("CTV Breast Lt", "CTV"), some("CTVp_Breast_L"));
        assert_eq!(t("Rt CTVn L2", "CTV"), some("CTVn_L2_R"));
        assert_eq!(t("Right CTV_n_L1", "CTV"), some("CTVn_L1_R"));
        assert_eq!(t("Sein gauche", "CTV"), some("CTVp_Breast_L"));
        // L1 to L4 are levels, not sides, also written apart.
        assert_eq!(t("CTV_n_L4", "CTV"), some("CTVn_L4"));
        assert_eq!(t("CTV n L 3", "CTV"), some("CTVn_L3"));
        assert_eq!(t("CTV n L 3 R", "CTV"), some("CTVn_L3_R"));
        // The same side twice is one side; two sides are not recognised.
        assert_eq!(t("Lt Lung L", "ORGAN"), some("Lung_L"));
        assert_eq!(t("Lung L R", "ORGAN"), None);
        assert_eq!(t("Left CTV Breast Rt", "CTV"), None);
        assert_eq!(tg263_name("Left Lung R", Some("ORGAN")), "Left Lung R");
        // A side alone, or on an organ without sides, is not a name.
        assert_eq!(t("L", "ORGAN"), None);
        assert_eq!(t("Heart L", "ORGAN"), None);
    }

    #[test]
    fn folded_names() {
        let t = |n: &str| normalise(n, Some("ORGAN"));
        assert_eq!(t("Cœur").as_deref(), Some("Heart"));
        assert_eq!(t("CŒUR").as_deref(), Some("Heart"));
        assert_eq!(t("Thyroïde").as_deref(), Some("Glnd_Thyroid"));
        assert_eq!(t("Humérus D").as_deref(), Some("Humerus_R"));
        assert_eq!(t("Œsophage").as_deref(), Some("Esophagus"));
        // Decomposed: e + combining acute accent.
        assert_eq!(t("Hume\u{301}rus G").as_deref(), Some("Humerus_L"));
    }

    #[test]
    fn normalise_says_when_a_name_is_recognised() {
        // Recognised names equal to the TG-263 name are Some, not a string coincidence.
        assert_eq!(normalise("Heart", None).as_deref(), Some("Heart"));
        assert_eq!(normalise("Heartt", None), None);
        assert_eq!(normalise("", None), None);
        assert_eq!(normalise("__", None), None);
        // A bare site word without a target type is not a target.
        assert_eq!(normalise("Boost", Some("ORGAN")), None);
    }

    #[test]
    fn folding() {
        assert_eq!(
            fold("Éèêë ÜÖÄ ß Øø Ææ Œœ Çç Åå"),
            "eeee uoa ss oo aeae oeoe cc aa"
        );
        assert_eq!(
            fold("Łódź Þór Ĳssel İstanbul ŉ"),
            "lodz thor ijssel istanbul n"
        );
        assert_eq!(fold("ABC-12 x"), "abc-12 x");
        // Every letter of Latin-1 Supplement and Latin Extended-A becomes ASCII.
        for c in '\u{C0}'..='\u{17F}' {
            if c.is_alphabetic() {
                let f = fold(&c.to_string());
                assert!(
                    !f.is_empty() && f.chars().all(|c| c.is_ascii_lowercase()),
                    "{c:?} -> {f:?}"
                );
            }
        }
    }

    #[test]
    fn structure_words() {
        for w in [
            "heart",
            "areola",
            "breast",
            "lung",
            "ctv",
            "ptv",
            "boost",
            "l1",
            "imn",
            "left",
            "lt",
            "links",
            "rechts",
            "gauche",
            "droite",
            "sein",
            "coeur",
            "poumon",
            "axilla",
            "nodes",
            "chestwall",
            "tumorbed",
            "external",
            "body",
            "skin",
            "cord",
            "spinal",
            "esophagus",
            "thyroid",
            "liver",
            "humerus",
            "lad",
            "contralateral",
            "ipsilateral",
            "supraclav",
            "ring",
            "opt",
            "eval",
            "dose",
            "plan",
            "ptv50",
            "ctvp",
            "glnd",
            "hart",
            "borst",
            "herz",
            "lunge",
            "brust",
            "oksel",
        ] {
            assert!(is_structure_word(w), "{w}");
        }
        assert!(is_structure_word(&fold("Cœur")));
        assert!(is_structure_word(&fold("Schilddrüse")));
        assert!(is_structure_word("Heart") && is_structure_word("CŒUR"));
        for w in [
            "art",
            "ola",
            "smith",
            "dupont",
            "",
            "12",
            "heartt",
            "heart lung",
        ] {
            assert!(!is_structure_word(w), "{w}");
        }
        // Every word the normaliser recognises is a structure word, and every listed word is
        // in folded form.
        let words = SITES
            .iter()
            .map(|s| s.0)
            .chain(ORGANS.iter().map(|o| o.0))
            .flat_map(|p| p.split(' '))
            .chain(SIDE_WORDS.iter().map(|s| s.0))
            .chain(VOLUMES.iter().copied())
            .chain(MORE_WORDS.split_whitespace());
        for w in words {
            assert_eq!(fold(w), w);
            assert!(w.chars().all(|c| c.is_ascii_alphanumeric()), "{w}");
            assert!(is_structure_word(w), "{w}");
        }
    }
}
