"""Datasets, lexicons, studies, images, regions, assignments, review, import and export."""
