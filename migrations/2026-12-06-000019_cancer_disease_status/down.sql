DROP VIEW research.disease_status;
DELETE FROM research.concept_role WHERE role IN ('disease_status_assessment', 'disease_status');
