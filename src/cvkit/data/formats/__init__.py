"""Annotation file formats shared by the tasks' data modules: Pascal VOC and COCO."""
