"""Helpers the tests share (not a tier: no tests here)."""
