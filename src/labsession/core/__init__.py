"""Pieces shared by all pillars: atomic writes, archives, config files, logging and progress."""
