"""cbflow: run competitive public funding rounds from one prospectus file."""

__version__ = "0.1.0"
