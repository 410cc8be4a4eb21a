//! Data element tags used by the writer (group << 16 | element), with their VR.

use super::enc::Tag;

/// (0008,0005) CS
pub(crate) const SPECIFIC_CHARACTER_SET: Tag = 0x0008_0005;
/// (0008,0008) CS
pub(crate) const IMAGE_TYPE: Tag = 0x0008_0008;
/// (0008,0012) DA
pub(crate) const INSTANCE_CREATION_DATE: Tag = 0x0008_0012;
/// (0008,0013) TM
pub(crate) const INSTANCE_CREATION_TIME: Tag = 0x0008_0013;
/// (0008,0016) UI
pub(crate) const SOP_CLASS_UID: Tag = 0x0008_0016;
/// (0008,0018) UI
pub(crate) const SOP_INSTANCE_UID: Tag = 0x0008_0018;
/// (0008,0020) DA
pub(crate) const STUDY_DATE: Tag = 0x0008_0020;
/// (0008,0021) DA
pub(crate) const SERIES_DATE: Tag = 0x0008_0021;
/// (0008,0022) DA
pub(crate) const ACQUISITION_DATE: Tag = 0x0008_0022;
/// (0008,0023) DA
pub(crate) const CONTENT_DATE: Tag = 0x0008_0023;
/// (0008,0030) TM
pub(crate) const STUDY_TIME: Tag = 0x0008_0030;
/// (0008,0031) TM
pub(crate) const SERIES_TIME: Tag = 0x0008_0031;
/// (0008,0032) TM
pub(crate) const ACQUISITION_TIME: Tag = 0x0008_0032;
/// (0008,0033) TM
pub(crate) const CONTENT_TIME: Tag = 0x0008_0033;
/// (0008,0050) SH
pub(crate) const ACCESSION_NUMBER: Tag = 0x0008_0050;
/// (0008,0060) CS
pub(crate) const MODALITY: Tag = 0x0008_0060;
/// (0008,0070) LO
pub(crate) const MANUFACTURER: Tag = 0x0008_0070;
/// (0008,0080) LO
pub(crate) const INSTITUTION_NAME: Tag = 0x0008_0080;
/// (0008,0090) PN
pub(crate) const REFERRING_PHYSICIAN_NAME: Tag = 0x0008_0090;
/// (0008,1010) SH
pub(crate) const STATION_NAME: Tag = 0x0008_1010;
/// (0008,1030) LO
pub(crate) const STUDY_DESCRIPTION: Tag = 0x0008_1030;
/// (0008,103E) LO
pub(crate) const SERIES_DESCRIPTION: Tag = 0x0008_103E;
/// (0008,1040) LO
pub(crate) const INSTITUTIONAL_DEPARTMENT_NAME: Tag = 0x0008_1040;
/// (0008,1070) PN
pub(crate) const OPERATORS_NAME: Tag = 0x0008_1070;
/// (0008,1090) LO
pub(crate) const MANUFACTURER_MODEL_NAME: Tag = 0x0008_1090;
/// (0008,1150) UI
pub(crate) const REFERENCED_SOP_CLASS_UID: Tag = 0x0008_1150;
/// (0008,1155) UI
pub(crate) const REFERENCED_SOP_INSTANCE_UID: Tag = 0x0008_1155;
/// (0010,0010) PN
pub(crate) const PATIENT_NAME: Tag = 0x0010_0010;
/// (0010,0020) LO
pub(crate) const PATIENT_ID: Tag = 0x0010_0020;
/// (0010,0021) LO
pub(crate) const ISSUER_OF_PATIENT_ID: Tag = 0x0010_0021;
/// (0010,0022) CS
pub(crate) const TYPE_OF_PATIENT_ID: Tag = 0x0010_0022;
/// (0010,0030) DA
pub(crate) const PATIENT_BIRTH_DATE: Tag = 0x0010_0030;
/// (0010,0040) CS
pub(crate) const PATIENT_SEX: Tag = 0x0010_0040;
/// (0010,1002) SQ
pub(crate) const OTHER_PATIENT_IDS_SEQUENCE: Tag = 0x0010_1002;
/// (0010,1010) AS
pub(crate) const PATIENT_AGE: Tag = 0x0010_1010;
/// (0010,1020) DS
pub(crate) const PATIENT_SIZE: Tag = 0x0010_1020;
/// (0010,1030) DS
pub(crate) const PATIENT_WEIGHT: Tag = 0x0010_1030;
/// (0018,0015) CS
pub(crate) const BODY_PART_EXAMINED: Tag = 0x0018_0015;
/// (0018,0050) DS
pub(crate) const SLICE_THICKNESS: Tag = 0x0018_0050;
/// (0018,0060) DS
pub(crate) const KVP: Tag = 0x0018_0060;
/// (0018,1000) LO
pub(crate) const DEVICE_SERIAL_NUMBER: Tag = 0x0018_1000;
/// (0018,1020) LO
pub(crate) const SOFTWARE_VERSIONS: Tag = 0x0018_1020;
/// (0018,1030) LO
pub(crate) const PROTOCOL_NAME: Tag = 0x0018_1030;
/// (0018,1210) SH
pub(crate) const CONVOLUTION_KERNEL: Tag = 0x0018_1210;
/// (0018,5100) CS
pub(crate) const PATIENT_POSITION: Tag = 0x0018_5100;
/// (0020,000D) UI
pub(crate) const STUDY_INSTANCE_UID: Tag = 0x0020_000D;
/// (0020,000E) UI
pub(crate) const SERIES_INSTANCE_UID: Tag = 0x0020_000E;
/// (0020,0010) SH
pub(crate) const STUDY_ID: Tag = 0x0020_0010;
/// (0020,0011) IS
pub(crate) const SERIES_NUMBER: Tag = 0x0020_0011;
/// (0020,0012) IS
pub(crate) const ACQUISITION_NUMBER: Tag = 0x0020_0012;
/// (0020,0013) IS
pub(crate) const INSTANCE_NUMBER: Tag = 0x0020_0013;
/// (0020,0032) DS
pub(crate) const IMAGE_POSITION_PATIENT: Tag = 0x0020_0032;
/// (0020,0037) DS
pub(crate) const IMAGE_ORIENTATION_PATIENT: Tag = 0x0020_0037;
/// (0020,0052) UI
pub(crate) const FRAME_OF_REFERENCE_UID: Tag = 0x0020_0052;
/// (0020,1040) LO
pub(crate) const POSITION_REFERENCE_INDICATOR: Tag = 0x0020_1040;
/// (0020,1041) DS
pub(crate) const SLICE_LOCATION: Tag = 0x0020_1041;
/// (0028,0002) US
pub(crate) const SAMPLES_PER_PIXEL: Tag = 0x0028_0002;
/// (0028,0004) CS
pub(crate) const PHOTOMETRIC_INTERPRETATION: Tag = 0x0028_0004;
/// (0028,0008) IS
pub(crate) const NUMBER_OF_FRAMES: Tag = 0x0028_0008;
/// (0028,0009) AT
pub(crate) const FRAME_INCREMENT_POINTER: Tag = 0x0028_0009;
/// (0028,0010) US
pub(crate) const ROWS: Tag = 0x0028_0010;
/// (0028,0011) US
pub(crate) const COLUMNS: Tag = 0x0028_0011;
/// (0028,0030) DS
pub(crate) const PIXEL_SPACING: Tag = 0x0028_0030;
/// (0028,0100) US
pub(crate) const BITS_ALLOCATED: Tag = 0x0028_0100;
/// (0028,0101) US
pub(crate) const BITS_STORED: Tag = 0x0028_0101;
/// (0028,0102) US
pub(crate) const HIGH_BIT: Tag = 0x0028_0102;
/// (0028,0103) US
pub(crate) const PIXEL_REPRESENTATION: Tag = 0x0028_0103;
/// (0028,1050) DS
pub(crate) const WINDOW_CENTER: Tag = 0x0028_1050;
/// (0028,1051) DS
pub(crate) const WINDOW_WIDTH: Tag = 0x0028_1051;
/// (0028,1052) DS
pub(crate) const RESCALE_INTERCEPT: Tag = 0x0028_1052;
/// (0028,1053) DS
pub(crate) const RESCALE_SLOPE: Tag = 0x0028_1053;
/// (0028,1054) LO
pub(crate) const RESCALE_TYPE: Tag = 0x0028_1054;
/// (3004,0002) CS
pub(crate) const DOSE_UNITS: Tag = 0x3004_0002;
/// (3004,0004) CS
pub(crate) const DOSE_TYPE: Tag = 0x3004_0004;
/// (3004,000A) CS
pub(crate) const DOSE_SUMMATION_TYPE: Tag = 0x3004_000A;
/// (3004,000C) DS
pub(crate) const GRID_FRAME_OFFSET_VECTOR: Tag = 0x3004_000C;
/// (3004,000E) DS
pub(crate) const DOSE_GRID_SCALING: Tag = 0x3004_000E;
/// (3004,0014) CS
pub(crate) const TISSUE_HETEROGENEITY_CORRECTION: Tag = 0x3004_0014;
/// (3006,0002) SH
pub(crate) const STRUCTURE_SET_LABEL: Tag = 0x3006_0002;
/// (3006,0004) LO
pub(crate) const STRUCTURE_SET_NAME: Tag = 0x3006_0004;
/// (3006,0008) DA
pub(crate) const STRUCTURE_SET_DATE: Tag = 0x3006_0008;
/// (3006,0009) TM
pub(crate) const STRUCTURE_SET_TIME: Tag = 0x3006_0009;
/// (3006,0010) SQ
pub(crate) const REFERENCED_FRAME_OF_REFERENCE_SEQUENCE: Tag = 0x3006_0010;
/// (3006,0012) SQ
pub(crate) const RT_REFERENCED_STUDY_SEQUENCE: Tag = 0x3006_0012;
/// (3006,0014) SQ
pub(crate) const RT_REFERENCED_SERIES_SEQUENCE: Tag = 0x3006_0014;
/// (3006,0016) SQ
pub(crate) const CONTOUR_IMAGE_SEQUENCE: Tag = 0x3006_0016;
/// (3006,0020) SQ
pub(crate) const STRUCTURE_SET_ROI_SEQUENCE: Tag = 0x3006_0020;
/// (3006,0022) IS
pub(crate) const ROI_NUMBER: Tag = 0x3006_0022;
/// (3006,0024) UI
pub(crate) const REFERENCED_FRAME_OF_REFERENCE_UID: Tag = 0x3006_0024;
/// (3006,0026) LO
pub(crate) const ROI_NAME: Tag = 0x3006_0026;
/// (3006,002A) IS
pub(crate) const ROI_DISPLAY_COLOR: Tag = 0x3006_002A;
/// (3006,0036) CS
pub(crate) const ROI_GENERATION_ALGORITHM: Tag = 0x3006_0036;
/// (3006,0039) SQ
pub(crate) const ROI_CONTOUR_SEQUENCE: Tag = 0x3006_0039;
/// (3006,0040) SQ
pub(crate) const CONTOUR_SEQUENCE: Tag = 0x3006_0040;
/// (3006,0042) CS
pub(crate) const CONTOUR_GEOMETRIC_TYPE: Tag = 0x3006_0042;
/// (3006,0046) IS
pub(crate) const NUMBER_OF_CONTOUR_POINTS: Tag = 0x3006_0046;
/// (3006,0048) IS
pub(crate) const CONTOUR_NUMBER: Tag = 0x3006_0048;
/// (3006,0050) DS
pub(crate) const CONTOUR_DATA: Tag = 0x3006_0050;
/// (3006,0080) SQ
pub(crate) const RT_ROI_OBSERVATIONS_SEQUENCE: Tag = 0x3006_0080;
/// (3006,0082) IS
pub(crate) const OBSERVATION_NUMBER: Tag = 0x3006_0082;
/// (3006,0084) IS
pub(crate) const REFERENCED_ROI_NUMBER: Tag = 0x3006_0084;
/// (3006,00A4) CS
pub(crate) const RT_ROI_INTERPRETED_TYPE: Tag = 0x3006_00A4;
/// (3006,00A6) PN
pub(crate) const ROI_INTERPRETER: Tag = 0x3006_00A6;
/// (300A,0002) SH
pub(crate) const RT_PLAN_LABEL: Tag = 0x300A_0002;
/// (300A,0003) LO
pub(crate) const RT_PLAN_NAME: Tag = 0x300A_0003;
/// (300A,0004) ST
pub(crate) const RT_PLAN_DESCRIPTION: Tag = 0x300A_0004;
/// (300A,0006) DA
pub(crate) const RT_PLAN_DATE: Tag = 0x300A_0006;
/// (300A,0007) TM
pub(crate) const RT_PLAN_TIME: Tag = 0x300A_0007;
/// (300A,000A) CS
pub(crate) const PLAN_INTENT: Tag = 0x300A_000A;
/// (300A,000C) CS
pub(crate) const RT_PLAN_GEOMETRY: Tag = 0x300A_000C;
/// (300A,0010) SQ
pub(crate) const DOSE_REFERENCE_SEQUENCE: Tag = 0x300A_0010;
/// (300A,0012) IS
pub(crate) const DOSE_REFERENCE_NUMBER: Tag = 0x300A_0012;
/// (300A,0013) UI
pub(crate) const DOSE_REFERENCE_UID: Tag = 0x300A_0013;
/// (300A,0014) CS
pub(crate) const DOSE_REFERENCE_STRUCTURE_TYPE: Tag = 0x300A_0014;
/// (300A,0016) LO
pub(crate) const DOSE_REFERENCE_DESCRIPTION: Tag = 0x300A_0016;
/// (300A,0020) CS
pub(crate) const DOSE_REFERENCE_TYPE: Tag = 0x300A_0020;
/// (300A,0026) DS
pub(crate) const TARGET_PRESCRIPTION_DOSE: Tag = 0x300A_0026;
/// (300A,0070) SQ
pub(crate) const FRACTION_GROUP_SEQUENCE: Tag = 0x300A_0070;
/// (300A,0071) IS
pub(crate) const FRACTION_GROUP_NUMBER: Tag = 0x300A_0071;
/// (300A,0078) IS
pub(crate) const NUMBER_OF_FRACTIONS_PLANNED: Tag = 0x300A_0078;
/// (300A,0080) IS
pub(crate) const NUMBER_OF_BEAMS: Tag = 0x300A_0080;
/// (300A,0084) DS
pub(crate) const BEAM_DOSE: Tag = 0x300A_0084;
/// (300A,0086) DS
pub(crate) const BEAM_METERSET: Tag = 0x300A_0086;
/// (300A,00A0) IS
pub(crate) const NUMBER_OF_BRACHY_APPLICATION_SETUPS: Tag = 0x300A_00A0;
/// (300A,00B0) SQ
pub(crate) const BEAM_SEQUENCE: Tag = 0x300A_00B0;
/// (300A,00B2) SH
pub(crate) const TREATMENT_MACHINE_NAME: Tag = 0x300A_00B2;
/// (300A,00B3) CS
pub(crate) const PRIMARY_DOSIMETER_UNIT: Tag = 0x300A_00B3;
/// (300A,00B4) DS
pub(crate) const SOURCE_AXIS_DISTANCE: Tag = 0x300A_00B4;
/// (300A,00B6) SQ
pub(crate) const BEAM_LIMITING_DEVICE_SEQUENCE: Tag = 0x300A_00B6;
/// (300A,00B8) CS
pub(crate) const RT_BEAM_LIMITING_DEVICE_TYPE: Tag = 0x300A_00B8;
/// (300A,00BC) IS
pub(crate) const NUMBER_OF_LEAF_JAW_PAIRS: Tag = 0x300A_00BC;
/// (300A,00C0) IS
pub(crate) const BEAM_NUMBER: Tag = 0x300A_00C0;
/// (300A,00C2) LO
pub(crate) const BEAM_NAME: Tag = 0x300A_00C2;
/// (300A,00C4) CS
pub(crate) const BEAM_TYPE: Tag = 0x300A_00C4;
/// (300A,00C6) CS
pub(crate) const RADIATION_TYPE: Tag = 0x300A_00C6;
/// (300A,00CE) CS
pub(crate) const TREATMENT_DELIVERY_TYPE: Tag = 0x300A_00CE;
/// (300A,00D0) IS
pub(crate) const NUMBER_OF_WEDGES: Tag = 0x300A_00D0;
/// (300A,00E0) IS
pub(crate) const NUMBER_OF_COMPENSATORS: Tag = 0x300A_00E0;
/// (300A,00ED) IS
pub(crate) const NUMBER_OF_BOLI: Tag = 0x300A_00ED;
/// (300A,00F0) IS
pub(crate) const NUMBER_OF_BLOCKS: Tag = 0x300A_00F0;
/// (300A,010E) DS
pub(crate) const FINAL_CUMULATIVE_METERSET_WEIGHT: Tag = 0x300A_010E;
/// (300A,0110) IS
pub(crate) const NUMBER_OF_CONTROL_POINTS: Tag = 0x300A_0110;
/// (300A,0111) SQ
pub(crate) const CONTROL_POINT_SEQUENCE: Tag = 0x300A_0111;
/// (300A,0112) IS
pub(crate) const CONTROL_POINT_INDEX: Tag = 0x300A_0112;
/// (300A,0114) DS
pub(crate) const NOMINAL_BEAM_ENERGY: Tag = 0x300A_0114;
/// (300A,011A) SQ
pub(crate) const BEAM_LIMITING_DEVICE_POSITION_SEQUENCE: Tag = 0x300A_011A;
/// (300A,011C) DS
pub(crate) const LEAF_JAW_POSITIONS: Tag = 0x300A_011C;
/// (300A,011E) DS
pub(crate) const GANTRY_ANGLE: Tag = 0x300A_011E;
/// (300A,011F) CS
pub(crate) const GANTRY_ROTATION_DIRECTION: Tag = 0x300A_011F;
/// (300A,0120) DS
pub(crate) const BEAM_LIMITING_DEVICE_ANGLE: Tag = 0x300A_0120;
/// (300A,0121) CS
pub(crate) const BEAM_LIMITING_DEVICE_ROTATION_DIRECTION: Tag = 0x300A_0121;
/// (300A,0122) DS
pub(crate) const PATIENT_SUPPORT_ANGLE: Tag = 0x300A_0122;
/// (300A,0123) CS
pub(crate) const PATIENT_SUPPORT_ROTATION_DIRECTION: Tag = 0x300A_0123;
/// (300A,0125) DS
pub(crate) const TABLE_TOP_ECCENTRIC_ANGLE: Tag = 0x300A_0125;
/// (300A,0126) CS
pub(crate) const TABLE_TOP_ECCENTRIC_ROTATION_DIRECTION: Tag = 0x300A_0126;
/// (300A,0128) DS
pub(crate) const TABLE_TOP_VERTICAL_POSITION: Tag = 0x300A_0128;
/// (300A,0129) DS
pub(crate) const TABLE_TOP_LONGITUDINAL_POSITION: Tag = 0x300A_0129;
/// (300A,012A) DS
pub(crate) const TABLE_TOP_LATERAL_POSITION: Tag = 0x300A_012A;
/// (300A,012C) DS
pub(crate) const ISOCENTER_POSITION: Tag = 0x300A_012C;
/// (300A,0130) DS
pub(crate) const SOURCE_TO_SURFACE_DISTANCE: Tag = 0x300A_0130;
/// (300A,0134) DS
pub(crate) const CUMULATIVE_METERSET_WEIGHT: Tag = 0x300A_0134;
/// (300A,0140) FL
pub(crate) const TABLE_TOP_PITCH_ANGLE: Tag = 0x300A_0140;
/// (300A,0142) CS
pub(crate) const TABLE_TOP_PITCH_ROTATION_DIRECTION: Tag = 0x300A_0142;
/// (300A,0144) FL
pub(crate) const TABLE_TOP_ROLL_ANGLE: Tag = 0x300A_0144;
/// (300A,0146) CS
pub(crate) const TABLE_TOP_ROLL_ROTATION_DIRECTION: Tag = 0x300A_0146;
/// (300A,0180) SQ
pub(crate) const PATIENT_SETUP_SEQUENCE: Tag = 0x300A_0180;
/// (300A,0182) IS
pub(crate) const PATIENT_SETUP_NUMBER: Tag = 0x300A_0182;
/// (300A,01B0) CS
pub(crate) const SETUP_TECHNIQUE: Tag = 0x300A_01B0;
/// (300C,0002) SQ
pub(crate) const REFERENCED_RT_PLAN_SEQUENCE: Tag = 0x300C_0002;
/// (300C,0004) SQ
pub(crate) const REFERENCED_BEAM_SEQUENCE: Tag = 0x300C_0004;
/// (300C,0006) IS
pub(crate) const REFERENCED_BEAM_NUMBER: Tag = 0x300C_0006;
/// (300C,0051) IS
pub(crate) const REFERENCED_DOSE_REFERENCE_NUMBER: Tag = 0x300C_0051;
/// (300C,0060) SQ
pub(crate) const REFERENCED_STRUCTURE_SET_SEQUENCE: Tag = 0x300C_0060;
/// (300C,006A) IS
pub(crate) const REFERENCED_PATIENT_SETUP_NUMBER: Tag = 0x300C_006A;
/// (300E,0002) CS
pub(crate) const APPROVAL_STATUS: Tag = 0x300E_0002;
/// (300E,0004) DA
pub(crate) const REVIEW_DATE: Tag = 0x300E_0004;
/// (300E,0005) TM
pub(crate) const REVIEW_TIME: Tag = 0x300E_0005;
/// (300E,0008) PN
pub(crate) const REVIEWER_NAME: Tag = 0x300E_0008;
/// (7FE0,0010) OW
pub(crate) const PIXEL_DATA: Tag = 0x7FE0_0010;

/// The VR of a tag this writer uses.
pub(crate) fn vr(tag: Tag) -> &'static [u8; 2] {
    match tag {
        SPECIFIC_CHARACTER_SET => b"CS",
        IMAGE_TYPE => b"CS",
        INSTANCE_CREATION_DATE => b"DA",
        INSTANCE_CREATION_TIME => b"TM",
        SOP_CLASS_UID => b"UI",
        SOP_INSTANCE_UID => b"UI",
        STUDY_DATE => b"DA",
        SERIES_DATE => b"DA",
        ACQUISITION_DATE => b"DA",
        CONTENT_DATE => b"DA",
        STUDY_TIME => b"TM",
        SERIES_TIME => b"TM",
        ACQUISITION_TIME => b"TM",
        CONTENT_TIME => b"TM",
        ACCESSION_NUMBER => b"SH",
        MODALITY => b"CS",
        MANUFACTURER => b"LO",
        INSTITUTION_NAME => b"LO",
        REFERRING_PHYSICIAN_NAME => b"PN",
        STATION_NAME => b"SH",
        STUDY_DESCRIPTION => b"LO",
        SERIES_DESCRIPTION => b"LO",
        INSTITUTIONAL_DEPARTMENT_NAME => b"LO",
        OPERATORS_NAME => b"PN",
        MANUFACTURER_MODEL_NAME => b"LO",
        REFERENCED_SOP_CLASS_UID => b"UI",
        REFERENCED_SOP_INSTANCE_UID => b"UI",
        PATIENT_NAME => b"PN",
        PATIENT_ID => b"LO",
        ISSUER_OF_PATIENT_ID => b"LO",
        TYPE_OF_PATIENT_ID => b"CS",
        PATIENT_BIRTH_DATE => b"DA",
        PATIENT_SEX => b"CS",
        OTHER_PATIENT_IDS_SEQUENCE => b"SQ",
        PATIENT_AGE => b"AS",
        PATIENT_SIZE => b"DS",
        PATIENT_WEIGHT => b"DS",
        BODY_PART_EXAMINED => b"CS",
        SLICE_THICKNESS => b"DS",
        KVP => b"DS",
        DEVICE_SERIAL_NUMBER => b"LO",
        SOFTWARE_VERSIONS => b"LO",
        PROTOCOL_NAME => b"LO",
        CONVOLUTION_KERNEL => b"SH",
        PATIENT_POSITION => b"CS",
        STUDY_INSTANCE_UID => b"UI",
        SERIES_INSTANCE_UID => b"UI",
        STUDY_ID => b"SH",
        SERIES_NUMBER => b"IS",
        ACQUISITION_NUMBER => b"IS",
        INSTANCE_NUMBER => b"IS",
        IMAGE_POSITION_PATIENT => b"DS",
        IMAGE_ORIENTATION_PATIENT => b"DS",
        FRAME_OF_REFERENCE_UID => b"UI",
        POSITION_REFERENCE_INDICATOR => b"LO",
        SLICE_LOCATION => b"DS",
        SAMPLES_PER_PIXEL => b"US",
        PHOTOMETRIC_INTERPRETATION => b"CS",
        NUMBER_OF_FRAMES => b"IS",
        FRAME_INCREMENT_POINTER => b"AT",
        ROWS => b"US",
        COLUMNS => b"US",
        PIXEL_SPACING => b"DS",
        BITS_ALLOCATED => b"US",
        BITS_STORED => b"US",
        HIGH_BIT => b"US",
        PIXEL_REPRESENTATION => b"US",
        WINDOW_CENTER => b"DS",
        WINDOW_WIDTH => b"DS",
        RESCALE_INTERCEPT => b"DS",
        RESCALE_SLOPE => b"DS",
        RESCALE_TYPE => b"LO",
        DOSE_UNITS => b"CS",
        DOSE_TYPE => b"CS",
        DOSE_SUMMATION_TYPE => b"CS",
        GRID_FRAME_OFFSET_VECTOR => b"DS",
        DOSE_GRID_SCALING => b"DS",
        TISSUE_HETEROGENEITY_CORRECTION => b"CS",
        STRUCTURE_SET_LABEL => b"SH",
        STRUCTURE_SET_NAME => b"LO",
        STRUCTURE_SET_DATE => b"DA",
        STRUCTURE_SET_TIME => b"TM",
        REFERENCED_FRAME_OF_REFERENCE_SEQUENCE => b"SQ",
        RT_REFERENCED_STUDY_SEQUENCE => b"SQ",
        RT_REFERENCED_SERIES_SEQUENCE => b"SQ",
        CONTOUR_IMAGE_SEQUENCE => b"SQ",
        STRUCTURE_SET_ROI_SEQUENCE => b"SQ",
        ROI_NUMBER => b"IS",
        REFERENCED_FRAME_OF_REFERENCE_UID => b"UI",
        ROI_NAME => b"LO",
        ROI_DISPLAY_COLOR => b"IS",
        ROI_GENERATION_ALGORITHM => b"CS",
        ROI_CONTOUR_SEQUENCE => b"SQ",
        CONTOUR_SEQUENCE => b"SQ",
        CONTOUR_GEOMETRIC_TYPE => b"CS",
        NUMBER_OF_CONTOUR_POINTS => b"IS",
        CONTOUR_NUMBER => b"IS",
        CONTOUR_DATA => b"DS",
        RT_ROI_OBSERVATIONS_SEQUENCE => b"SQ",
        OBSERVATION_NUMBER => b"IS",
        REFERENCED_ROI_NUMBER => b"IS",
        RT_ROI_INTERPRETED_TYPE => b"CS",
        ROI_INTERPRETER => b"PN",
        RT_PLAN_LABEL => b"SH",
        RT_PLAN_NAME => b"LO",
        RT_PLAN_DESCRIPTION => b"ST",
        RT_PLAN_DATE => b"DA",
        RT_PLAN_TIME => b"TM",
        PLAN_INTENT => b"CS",
        RT_PLAN_GEOMETRY => b"CS",
        DOSE_REFERENCE_SEQUENCE => b"SQ",
        DOSE_REFERENCE_NUMBER => b"IS",
        DOSE_REFERENCE_UID => b"UI",
        DOSE_REFERENCE_STRUCTURE_TYPE => b"CS",
        DOSE_REFERENCE_DESCRIPTION => b"LO",
        DOSE_REFERENCE_TYPE => b"CS",
        TARGET_PRESCRIPTION_DOSE => b"DS",
        FRACTION_GROUP_SEQUENCE => b"SQ",
        FRACTION_GROUP_NUMBER => b"IS",
        NUMBER_OF_FRACTIONS_PLANNED => b"IS",
        NUMBER_OF_BEAMS => b"IS",
        BEAM_DOSE => b"DS",
        BEAM_METERSET => b"DS",
        NUMBER_OF_BRACHY_APPLICATION_SETUPS => b"IS",
        BEAM_SEQUENCE => b"SQ",
        TREATMENT_MACHINE_NAME => b"SH",
        PRIMARY_DOSIMETER_UNIT => b"CS",
        SOURCE_AXIS_DISTANCE => b"DS",
        BEAM_LIMITING_DEVICE_SEQUENCE => b"SQ",
        RT_BEAM_LIMITING_DEVICE_TYPE => b"CS",
        NUMBER_OF_LEAF_JAW_PAIRS => b"IS",
        BEAM_NUMBER => b"IS",
        BEAM_NAME => b"LO",
        BEAM_TYPE => b"CS",
        RADIATION_TYPE => b"CS",
        TREATMENT_DELIVERY_TYPE => b"CS",
        NUMBER_OF_WEDGES => b"IS",
        NUMBER_OF_COMPENSATORS => b"IS",
        NUMBER_OF_BOLI => b"IS",
        NUMBER_OF_BLOCKS => b"IS",
        FINAL_CUMULATIVE_METERSET_WEIGHT => b"DS",
        NUMBER_OF_CONTROL_POINTS => b"IS",
        CONTROL_POINT_SEQUENCE => b"SQ",
        CONTROL_POINT_INDEX => b"IS",
        NOMINAL_BEAM_ENERGY => b"DS",
        BEAM_LIMITING_DEVICE_POSITION_SEQUENCE => b"SQ",
        LEAF_JAW_POSITIONS => b"DS",
        GANTRY_ANGLE => b"DS",
        GANTRY_ROTATION_DIRECTION => b"CS",
        BEAM_LIMITING_DEVICE_ANGLE => b"DS",
        BEAM_LIMITING_DEVICE_ROTATION_DIRECTION => b"CS",
        PATIENT_SUPPORT_ANGLE => b"DS",
        PATIENT_SUPPORT_ROTATION_DIRECTION => b"CS",
        TABLE_TOP_ECCENTRIC_ANGLE => b"DS",
        TABLE_TOP_ECCENTRIC_ROTATION_DIRECTION => b"CS",
        TABLE_TOP_VERTICAL_POSITION => b"DS",
        TABLE_TOP_LONGITUDINAL_POSITION => b"DS",
        TABLE_TOP_LATERAL_POSITION => b"DS",
        ISOCENTER_POSITION => b"DS",
        SOURCE_TO_SURFACE_DISTANCE => b"DS",
        CUMULATIVE_METERSET_WEIGHT => b"DS",
        TABLE_TOP_PITCH_ANGLE => b"FL",
        TABLE_TOP_PITCH_ROTATION_DIRECTION => b"CS",
        TABLE_TOP_ROLL_ANGLE => b"FL",
        TABLE_TOP_ROLL_ROTATION_DIRECTION => b"CS",
        PATIENT_SETUP_SEQUENCE => b"SQ",
        PATIENT_SETUP_NUMBER => b"IS",
        SETUP_TECHNIQUE => b"CS",
        REFERENCED_RT_PLAN_SEQUENCE => b"SQ",
        REFERENCED_BEAM_SEQUENCE => b"SQ",
        REFERENCED_BEAM_NUMBER => b"IS",
        REFERENCED_DOSE_REFERENCE_NUMBER => b"IS",
        REFERENCED_STRUCTURE_SET_SEQUENCE => b"SQ",
        REFERENCED_PATIENT_SETUP_NUMBER => b"IS",
        APPROVAL_STATUS => b"CS",
        REVIEW_DATE => b"DA",
        REVIEW_TIME => b"TM",
        REVIEWER_NAME => b"PN",
        PIXEL_DATA => b"OW",
        _ => panic!("no VR known for tag {tag:08X}"),
    }
}
