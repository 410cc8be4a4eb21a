DROP VIEW IF EXISTS research.rt_structure_set;
