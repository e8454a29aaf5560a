"""Tests of the Python Client and AsyncClient against a real broker over real Redis."""
